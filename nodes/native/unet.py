"""A compact ``UNet2DConditionModel`` for Stable Diffusion 1.x/2.x-style configs, on torch alone.

It computes what diffusers' model computes (with its default ``AttnProcessor2_0``) and has the same
submodule tree and state-dict keys, so checkpoints, LoRA patches and the checkpoint converter that walk
diffusers' names work on it unchanged, and every layer is a submodule called as a module (interrupt hooks
see each one). Config values outside the subset are refused (``UnsupportedConfig``), never approximated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModuleConfig, Weights, require

__all__ = ["NativeUNet", "UNET_DEFAULTS", "UNet2DConditionOutput"]

# diffusers' ``UNet2DConditionModel.__init__`` defaults, every parameter (tests hold this to its signature).
UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "dropout": 0.0, "act_fn": "silu",
    "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": 1280, "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "attention_head_dim": 8, "num_attention_heads": None, "dual_cross_attention": False,
    "use_linear_projection": False, "class_embed_type": None, "addition_embed_type": None,
    "addition_time_embed_dim": None, "num_class_embeds": None, "upcast_attention": False,
    "resnet_time_scale_shift": "default", "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional", "time_embedding_dim": None, "time_embedding_act_fn": None,
    "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "projection_class_embeddings_input_dim": None, "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "addition_embed_type_num_heads": 64,
}

_DOWN = ("DownBlock2D", "CrossAttnDownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D")
# Keys whose only implemented value is diffusers' default (or an equivalent one).
_FIXED: dict[str, tuple[Any, ...]] = {
    "mid_block_type": ("UNetMidBlock2DCrossAttn",), "act_fn": ("silu", "swish"), "center_input_sample": (False,),
    "num_attention_heads": (None,), "mid_block_only_cross_attention": (None, False), "dual_cross_attention": (False,),
    "reverse_transformer_layers_per_block": (None,), "encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,),
    "class_embed_type": (None,), "num_class_embeds": (None,), "projection_class_embeddings_input_dim": (None,),
    "class_embeddings_concat": (False,), "addition_embed_type": (None,), "addition_time_embed_dim": (None,),
    "addition_embed_type_num_heads": (64,), "resnet_time_scale_shift": ("default",),
    "resnet_skip_time_act": (False,), "resnet_out_scale_factor": (1.0,), "time_embedding_type": ("positional",),
    "time_embedding_dim": (None,), "time_embedding_act_fn": (None,), "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,), "attention_type": ("default",), "cross_attention_norm": (None,),
}


def _ints(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check(config: ModuleConfig) -> None:
    """Refuse every value the native UNet does not implement, naming the key."""
    blocks = len(config.get("down_block_types") or ())

    def one_or_per_block(value: Any) -> bool:
        return _ints(value) or (isinstance(value, Sequence) and not isinstance(value, str)
                                and len(value) == blocks and all(_ints(v) for v in value))

    require(config, "UNet", {
        **_FIXED,
        "down_block_types": lambda v: isinstance(v, Sequence) and len(v) > 0 and all(t in _DOWN for t in v),
        "up_block_types": lambda v: isinstance(v, Sequence) and len(v) == blocks and all(t in _UP for t in v),
        "block_out_channels": lambda v: isinstance(v, Sequence) and len(v) == blocks and all(_ints(c) for c in v),
        "only_cross_attention": lambda v: v is False or (isinstance(v, Sequence) and len(v) == blocks
                                                         and not any(v)),
        "norm_num_groups": _ints,
        "attention_head_dim": one_or_per_block,
        "layers_per_block": one_or_per_block,
        "transformer_layers_per_block": one_or_per_block,
        "cross_attention_dim": one_or_per_block,
        "downsample_padding": lambda v: isinstance(v, int) and v >= 0,
        "conv_in_kernel": lambda v: _ints(v) and v % 2 == 1,
        "conv_out_kernel": lambda v: _ints(v) and v % 2 == 1,
    })


class UNet2DConditionOutput(NamedTuple):
    """The UNet's result: ``.sample``, as diffusers' output has it."""

    sample: torch.Tensor


class Timesteps(nn.Module):
    """Sinusoidal timestep features (``time_proj``; no weights)."""

    def __init__(self, channels: int, flip_sin_to_cos: bool, shift: float):
        super().__init__()
        self.channels, self.flip_sin_to_cos, self.shift = channels, flip_sin_to_cos, shift

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        angles = timesteps[:, None].float() * torch.exp(exponent / (half - self.shift))[None, :]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)] if self.flip_sin_to_cos
                        else [torch.sin(angles), torch.cos(angles)], dim=-1)
        return F.pad(emb, (0, 1)) if self.channels % 2 else emb


class TimestepEmbedding(nn.Module):
    """Two linear layers with an activation between: the timestep features to the blocks' embedding."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice with the time embedding added between, and a 1x1 shortcut when widths change."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float, dropout: float, scale: float = 1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.output_scale_factor = scale

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Attention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention``; self-attention when ``context`` is None.

    ``upcast_attention`` (SD 2.x: half-precision scores overflow) needs no code of its own here: torch's SDPA
    kernels, its math fallback included, compute the scores and softmax of half-precision inputs in fp32.
    diffusers' ``AttnProcessor2_0`` relies on the same, so the numbers stay diffusers' own.
    """

    def __init__(self, dim: int, context_dim: int | None, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        batch = x.shape[0]
        q, k, v = (t.view(batch, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[3])
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    """A linear layer to twice the width, one half gating the other through GELU."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU to four times the width and back (``net.0``, ``net.1`` dropout, ``net.2``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention on the text, feed-forward; each pre-normed and residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, None, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """A feature map in and out of a stack of transformer blocks (1x1 convs, or linear layers for SD 2.x)."""

    def __init__(self, channels: int, heads: int, context_dim: int, depth: int, groups: int, linear: bool):
        super().__init__()
        head_dim = channels // heads  # diffusers' rounding: the inner width may fall short of ``channels``
        inner = heads * head_dim
        self.linear = linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, channels) if linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        if self.linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        if not self.linear:
            h = self.proj_out(h)
        return h + x


class Downsample2D(nn.Module):
    """A stride-2 3x3 conv; padding 0 pads right and bottom only, as diffusers does."""

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample2D(nn.Module):
    """Nearest-neighbour doubling (or to ``size``, for odd latent sizes) and a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") if size is None else \
            F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)


def _transformers(cross: bool, count: int, channels: int, heads: int, context: int, depth: int, config: ModuleConfig
                  ) -> nn.ModuleList | None:
    if not cross:
        return None
    return nn.ModuleList([Transformer2DModel(channels, heads, context, depth, config.norm_num_groups,
                                             config.use_linear_projection)
                          for _ in range(count)])


class DownBlock(nn.Module):
    """``DownBlock2D`` or, with ``cross``, ``CrossAttnDownBlock2D``: resnets (each followed by a transformer)
    and a downsampler; returns the output and every intermediate the up path takes as a skip."""

    def __init__(self, cross: bool, cin: int, cout: int, temb: int, layers: int, heads: int, context: int,
                 depth: int, add_downsample: bool, config: ModuleConfig):
        super().__init__()
        self.has_cross_attention = cross
        attentions = _transformers(cross, layers, cout, heads, context, depth, config)
        if attentions is not None:  # DownBlock2D has no ``attentions`` at all
            self.attentions = attentions
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, temb, config.norm_num_groups,
                                                    config.norm_eps, config.dropout) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout, config.downsample_padding)]) if add_downsample \
            else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips: tuple[torch.Tensor, ...] = ()
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.has_cross_attention:
                x = self.attentions[i](x, context)
            skips += (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips += (x,)
        return x, skips


class UpBlock(nn.Module):
    """``UpBlock2D`` or, with ``cross``, ``CrossAttnUpBlock2D``: resnets on the input joined with a skip
    (each followed by a transformer), then an upsampler."""

    def __init__(self, cross: bool, skip_in: int, prev: int, cout: int, temb: int, layers: int, heads: int,
                 context: int, depth: int, add_upsample: bool, config: ModuleConfig):
        super().__init__()
        self.has_cross_attention = cross
        attentions = _transformers(cross, layers, cout, heads, context, depth, config)
        if attentions is not None:
            self.attentions = attentions
        self.resnets = nn.ModuleList([
            ResnetBlock2D((prev if i == 0 else cout) + (skip_in if i == layers - 1 else cout), cout, temb,
                          config.norm_num_groups, config.norm_eps, config.dropout) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: tuple[torch.Tensor, ...], temb: torch.Tensor, context: torch.Tensor,
                size: Sequence[int] | None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1 - i]], dim=1), temb)
            if self.has_cross_attention:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x


class UNetMidBlock2DCrossAttn(nn.Module):
    """Resnet, transformer, resnet at the lowest resolution."""

    def __init__(self, channels: int, temb: int, heads: int, context: int, depth: int, config: ModuleConfig):
        super().__init__()
        self.has_cross_attention = True
        self.attentions = _transformers(True, 1, channels, heads, context, depth, config)
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb, config.norm_num_groups, config.norm_eps,
                                                    config.dropout, config.mid_block_scale_factor) for _ in range(2)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class NativeUNet(Weights, nn.Module):
    """diffusers' ``UNet2DConditionModel`` for Stable Diffusion 1.x/2.x configs (see the module docstring).

    ``config`` is the stored ``config.json`` dict; missing keys take diffusers' defaults. The module starts
    in eval mode (it is built for inference; ``train()`` switches the resnets' dropout on as usual).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = c = ModuleConfig.of(config, UNET_DEFAULTS)
        _check(c)
        blocks = len(c.down_block_types)

        def per_block(value: Any) -> list[Any]:
            return list(value) if isinstance(value, Sequence) else [value] * blocks

        # diffusers reads ``attention_head_dim`` as the number of heads (its issue 2011); each block's head
        # width is its channels // heads, and the up path takes the heads reversed.
        heads, layers = per_block(c.attention_head_dim), per_block(c.layers_per_block)
        contexts, depths = per_block(c.cross_attention_dim), per_block(c.transformer_layers_per_block)
        channels = list(c.block_out_channels)
        temb = channels[0] * 4

        self.conv_in = nn.Conv2d(c.in_channels, channels[0], c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2)
        self.time_proj = Timesteps(channels[0], c.flip_sin_to_cos, c.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList([
            DownBlock(kind == "CrossAttnDownBlock2D", channels[max(i - 1, 0)], channels[i], temb, layers[i], heads[i],
                      contexts[i], depths[i], i < blocks - 1, c) for i, kind in enumerate(c.down_block_types)])
        self.up_blocks = nn.ModuleList()
        self.mid_block = UNetMidBlock2DCrossAttn(channels[-1], temb, heads[-1], contexts[-1], depths[-1], c)
        back = channels[::-1]
        for i, kind in enumerate(c.up_block_types):
            self.up_blocks.append(UpBlock(
                kind == "CrossAttnUpBlock2D", back[min(i + 1, blocks - 1)], back[max(i - 1, 0)], back[i], temb,
                layers[::-1][i] + 1, heads[::-1][i], contexts[::-1][i], depths[::-1][i], i < blocks - 1, c))
        self.num_upsamplers = blocks - 1
        self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, channels[0], eps=c.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], c.out_channels, c.conv_out_kernel, padding=(c.conv_out_kernel - 1) // 2)
        self.eval()

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int, encoder_hidden_states: torch.Tensor,
                class_labels: torch.Tensor | None = None, timestep_cond: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cross_attention_kwargs: dict[str, Any] | None = None,
                added_cond_kwargs: dict[str, Any] | None = None,
                down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None,
                down_intrablock_additional_residuals: Sequence[torch.Tensor] | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                return_dict: bool = True) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Predict the noise (or v) for ``sample`` at ``timestep`` given the text states, with diffusers'
        arguments; ControlNet residuals are added to the skips and the mid block's output as diffusers adds
        them. Arguments for features this UNet lacks raise ``ValueError`` naming them."""
        unused = {"class_labels": class_labels, "timestep_cond": timestep_cond, "attention_mask": attention_mask,
                  "encoder_attention_mask": encoder_attention_mask,
                  "down_intrablock_additional_residuals": down_intrablock_additional_residuals}
        for name, value in {**unused, "cross_attention_kwargs": cross_attention_kwargs or None,
                            "added_cond_kwargs": added_cond_kwargs or None}.items():
            if value is not None:
                raise ValueError(f"gouache's native UNet does not take {name}; load this model with diffusers "
                                 "(\"modules\": \"diffusers\")")
        if (down_block_additional_residuals is None) != (mid_block_additional_residual is None):
            raise ValueError("ControlNet residuals come as down_block_additional_residuals and "
                             "mid_block_additional_residual together (T2I-Adapter residuals are not supported)")

        temb = self.time_embedding(self.time_proj(self._timesteps(timestep, sample)).to(sample.dtype))
        context = encoder_hidden_states
        x = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (x,)
        for down in self.down_blocks:
            x, found = down(x, temb, context)
            skips += found
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(f"down_block_additional_residuals has {len(down_block_additional_residuals)} "
                                 f"tensors and this UNet {len(skips)} skip connections")
            skips = tuple(skip + extra for skip, extra in zip(skips, down_block_additional_residuals))
        x = self.mid_block(x, temb, context)
        if mid_block_additional_residual is not None:
            x = x + mid_block_additional_residual

        # A latent side not divisible by 2**upsamplers: each upsampler matches its skip's size instead.
        odd = any(side % 2 ** self.num_upsamplers for side in sample.shape[-2:])
        for i, up in enumerate(self.up_blocks):
            count = len(up.resnets)
            found, skips = skips[-count:], skips[:-count]
            size = skips[-1].shape[2:] if odd and i < len(self.up_blocks) - 1 else None
            x = up(x, found, temb, context, size)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return UNet2DConditionOutput(x) if return_dict else (x,)

    @staticmethod
    def _timesteps(timestep: torch.Tensor | float | int, sample: torch.Tensor) -> torch.Tensor:
        """``timestep`` as a 1-d tensor over the batch (a number or one value is repeated), as diffusers does."""
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            if sample.device.type in ("mps", "npu", "neuron"):  # no 64-bit types there
                dtype = torch.float32 if dtype == torch.float64 else torch.int32
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        elif timestep.ndim == 0:
            timestep = timestep[None]
        return timestep.to(sample.device).expand(sample.shape[0])
