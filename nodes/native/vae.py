"""The Stable Diffusion VAE (diffusers' ``AutoencoderKL``) in plain torch.

Same submodule names, state-dict keys and numbers as diffusers for ``DownEncoderBlock2D`` /
``UpDecoderBlock2D`` configs, so ``nodes/loading/convert.py`` and ``nodes/tiled_vae.py``, which walk the
layers by name, work on either. Every layer is a submodule called as a module, so the interrupt hooks of
``nodes/interrupt.py`` see each one. ``scaling_factor``, ``shift_factor``, ``latents_mean`` / ``latents_std``,
``force_upcast`` and ``sample_size`` are only stored: gouache's nodes apply them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import UnsupportedConfig
from .config import ModuleConfig, Weights, require

__all__ = ["NativeAutoencoderKL", "DiagonalGaussian", "EncoderOutput", "DecoderOutput"]

# diffusers' AutoencoderKL.__init__ defaults, filled in where the stored config lacks a key
DEFAULTS: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D"], "block_out_channels": [64], "layers_per_block": 1, "act_fn": "silu",
    "latent_channels": 4, "norm_num_groups": 32, "sample_size": 32, "scaling_factor": 0.18215, "shift_factor": None,
    "latents_mean": None, "latents_std": None, "force_upcast": True, "use_quant_conv": True,
    "use_post_quant_conv": True, "mid_block_add_attention": True,
}
_EPS = 1e-6  # every GroupNorm of diffusers' VAE


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numbers_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, Sequence) and not isinstance(value, str) and all(map(_number, value)))


def _check(config: ModuleConfig) -> None:
    """Refuse every key and value this module does not compute as diffusers does."""
    for key, value in config.items():
        if not key.startswith("_") and key not in DEFAULTS:
            raise UnsupportedConfig(f"VAE config {key}={value!r} is not implemented by gouache's native modules; "
                                    "load this model with diffusers (\"modules\": \"diffusers\")")
    channels = config.get("block_out_channels")
    levels = len(channels) if isinstance(channels, Sequence) else -1

    def blocks(name: str) -> Any:
        return lambda types: isinstance(types, Sequence) and len(types) == levels and all(t == name for t in types)

    require(config, "VAE", {
        "block_out_channels": lambda value: isinstance(value, Sequence) and len(value) > 0 and all(map(_count, value)),
        "norm_num_groups": lambda value: _count(value) and all(c % value == 0 for c in channels),  # GroupNorm's rule
        "down_block_types": blocks("DownEncoderBlock2D"),
        "up_block_types": blocks("UpDecoderBlock2D"),
        "act_fn": ("silu", "swish"),  # both are SiLU in diffusers
        "in_channels": _count, "out_channels": _count, "latent_channels": _count, "layers_per_block": _count,
        "use_quant_conv": (True, False), "use_post_quant_conv": (True, False), "mid_block_add_attention": (True, False),
        "force_upcast": (True, False),
        "scaling_factor": _number, "shift_factor": lambda value: value is None or _number(value),
        "latents_mean": _numbers_or_none, "latents_std": _numbers_or_none,
        "sample_size": lambda value: _count(value) or (isinstance(value, Sequence) and all(map(_count, value))),
    })


class ResnetBlock2D(nn.Module):
    """diffusers' ``ResnetBlock2D`` as a VAE uses it: no time embedding, no resampling, pre-norm."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.output_scale_factor = 1.0
        self.upsample = self.downsample = self.time_emb_proj = None  # read by nodes/tiled_vae.py
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=_EPS)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.conv1(self.nonlinearity(self.norm1(x)))
        hidden = self.conv2(self.dropout(self.nonlinearity(self.norm2(hidden))))
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (shortcut + hidden) / self.output_scale_factor


class Attention(nn.Module):
    """The mid block's single-head self-attention over pixels, with its own GroupNorm and a residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.heads, self.rescale_output_factor, self.residual_connection = 1, 1.0, True
        self.group_norm = nn.GroupNorm(groups, channels, eps=_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        hidden = self.group_norm(x.view(batch, channels, height * width)).transpose(1, 2)
        q, k, v = (proj(hidden).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        hidden = F.scaled_dot_product_attention(q, k, v).squeeze(1).to(q.dtype)
        hidden = self.to_out[1](self.to_out[0](hidden))
        return (hidden.transpose(1, 2).reshape(batch, channels, height, width) + x) / self.rescale_output_factor


class UNetMidBlock2D(nn.Module):
    """Resnet, attention (or none: ``mid_block_add_attention``), resnet."""

    def __init__(self, channels: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.add_attention = attention
        self.attentions = nn.ModuleList([Attention(channels, groups) if attention else None])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            if attention is not None:
                x = attention(x)
            x = resnet(x)
        return x


class Downsample2D(nn.Module):
    """Pad right and bottom by one, then a 3x3 convolution of stride 2 (the encoder's ``padding=0`` form)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = self.out_channels = channels
        self.use_conv, self.padding, self.norm = True, 0, None  # read by nodes/tiled_vae.py
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = self.out_channels = channels
        self.use_conv, self.use_conv_transpose, self.interpolate, self.norm = True, False, True, None
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        # Large batches or outputs need a contiguous input for the nearest kernel (as diffusers works around).
        if x.shape[0] >= 64 or x.numel() * 2 > 2**31:
            x = x.contiguous()
        if output_size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        return self.conv(x)


def _resnets(in_channels: int, out_channels: int, layers: int, groups: int) -> nn.ModuleList:
    """A block's resnets; the first changes the channel count."""
    return nn.ModuleList([ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups)
                          for i in range(layers)])


class DownEncoderBlock2D(nn.Module):
    """Resnets, then a downsampler unless the block is the last."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, downsample: bool) -> None:
        super().__init__()
        self.resnets = _resnets(in_channels, out_channels, layers, groups)
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for downsampler in self.downsamplers or ():
            x = downsampler(x)
        return x


class UpDecoderBlock2D(nn.Module):
    """Resnets, then an upsampler unless the block is the last."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, upsample: bool) -> None:
        super().__init__()
        self.resnets = _resnets(in_channels, out_channels, layers, groups)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for upsampler in self.upsamplers or ():
            x = upsampler(x)
        return x


class Encoder(nn.Module):
    """Image to the latent Gaussian's mean and log-variance (``2 * latent_channels`` channels)."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        channels, groups = list(config.block_out_channels), config.norm_num_groups
        self.layers_per_block = config.layers_per_block
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            DownEncoderBlock2D(channels[max(i - 1, 0)], width, config.layers_per_block, groups, i < len(channels) - 1)
            for i, width in enumerate(channels)])
        self.mid_block = UNetMidBlock2D(channels[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=_EPS)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    """Latent to image; the up blocks run from the lowest resolution, each with one resnet more than down."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        channels, groups = list(reversed(config.block_out_channels)), config.norm_num_groups
        self.layers_per_block = config.layers_per_block
        self.conv_in = nn.Conv2d(config.latent_channels, channels[0], 3, padding=1)
        self.up_blocks = nn.ModuleList([
            UpDecoderBlock2D(channels[max(i - 1, 0)], width, config.layers_per_block + 1, groups, i < len(channels) - 1)
            for i, width in enumerate(channels)])
        self.mid_block = UNetMidBlock2D(channels[0], groups, config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=_EPS)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[-1], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, latent_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if latent_embeds is not None:
            raise ValueError("gouache's native VAE decoder has no spatial norm to take latent_embeds")
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


def _randn(shape: torch.Size, generator: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise drawn as diffusers' ``randn_tensor`` draws it, so a seeded draw matches.

    A CPU generator draws on the CPU whatever the target device; a list of generators draws one item each.
    """
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    source = (generator[0] if isinstance(generator, list) else generator).device if generator is not None else device
    if source.type != device.type and source.type != "cpu":
        raise ValueError(f"cannot draw a {device} tensor from a generator on {source}")
    draw_on = device if generator is None or source.type != "cpu" else torch.device("cpu")
    if isinstance(generator, list):
        one = (1, *shape[1:])
        return torch.cat([torch.randn(one, generator=generator[i], device=draw_on, dtype=dtype)
                          for i in range(shape[0])]).to(device)
    return torch.randn(shape, generator=generator, device=draw_on, dtype=dtype).to(device)


class DiagonalGaussian:
    """The encoder's latent distribution: mean and log-variance (clamped to [-30, 20], as diffusers)."""

    def __init__(self, parameters: torch.Tensor) -> None:
        self.parameters = parameters
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        """The most likely latent (the mean)."""
        return self.mean

    def sample(self, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """A latent drawn from the distribution, the noise drawn as diffusers draws it."""
        noise = _randn(self.mean.shape, generator, self.parameters.device, self.parameters.dtype)
        return self.mean + self.std * noise


@dataclass
class EncoderOutput:
    """What ``encode`` returns with ``return_dict=True``."""

    latent_dist: DiagonalGaussian


@dataclass
class DecoderOutput:
    """What ``decode`` returns with ``return_dict=True``."""

    sample: torch.Tensor


class NativeAutoencoderKL(Weights, nn.Module):
    """diffusers' ``AutoencoderKL`` for ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` configs.

    ``config`` is the stored ``config.json`` (``_``-keys kept); missing keys take diffusers' defaults, and a
    key or value outside what is implemented raises ``UnsupportedConfig``.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = ModuleConfig.of(config, DEFAULTS)
        _check(self.config)
        latent = self.config.latent_channels
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1) if self.config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if self.config.use_post_quant_conv else None
        self.eval()  # as diffusers' from_pretrained leaves it

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> EncoderOutput | tuple[DiagonalGaussian]:
        """Images [B,C,H,W] in -1..1 to their latent distribution."""
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        posterior = DiagonalGaussian(moments)
        return EncoderOutput(posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        """Unscaled latents [B,latent_channels,h,w] to images in about -1..1."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        images = self.decoder(z)
        return DecoderOutput(images) if return_dict else (images,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True,
                generator: torch.Generator | None = None) -> DecoderOutput | tuple[torch.Tensor]:
        """Encode and decode (the posterior's mode, or a draw from it)."""
        posterior = self.encode(sample).latent_dist
        return self.decode(posterior.sample(generator) if sample_posterior else posterior.mode(), return_dict)
