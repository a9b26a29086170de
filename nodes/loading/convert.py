"""Write diffusers modules back into the original single-file layout (CompVis LDM / Stability SGM).

This is the inverse of diffusers' single-file conversion (``diffusers.loaders.single_file_utils``):
``load_checkpoint`` reads what ``diffusers_to_original`` writes. The block structure is read from the
modules themselves, never assumed to be Stable Diffusion's, so tiny test models and the embedded
model convert like the real ones. Every diffusers tensor must land somewhere; a leftover is an error,
so an unfamiliar module is reported instead of silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from gouache.nodes.families import FAMILIES, UNET_PREFIX, VAE_PREFIX, Family

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


class _Mover:
    """Moves tensors from a diffusers state dict to original keys and remembers what is left."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
        self.left = {key: value.detach() for key, value in state_dict.items()}
        self.out: dict[str, torch.Tensor] = {}
        self.sources: dict[str, str] = {}
        """Each original key and the diffusers key it came from."""
        self.what = what

    def move(
        self,
        source: str,
        target: str,
        rename: Mapping[str, str] | None = None,
        reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Move every ``source.<rest>`` to ``target.<rest>``, renaming the start of ``rest`` by ``rename``."""
        for key in [k for k in self.left if k.startswith(source + ".")]:
            rest = key[len(source) + 1 :]
            for old, new in (rename or {}).items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            value = self.left.pop(key)
            self.out[f"{target}.{rest}"] = reshape(value) if reshape else value
            self.sources[f"{target}.{rest}"] = key

    def finish(self) -> dict[str, torch.Tensor]:
        """Return the converted tensors; raise if any diffusers tensor found no place."""
        if self.left:
            names = ", ".join(sorted(self.left)[:10])
            raise ValueError(
                f"{self.what}: {len(self.left)} tensors have no place in the original layout ({names}); "
                "this module has parts Stable Diffusion checkpoints do not"
            )
        return self.out


def _layers_per_block(blocks: nn.ModuleList, extra: int, what: str) -> int:
    """Return the common resnet count of ``blocks`` minus ``extra``; the LDM numbering needs one count."""
    counts = {len(block.resnets) for block in blocks}
    if len(counts) != 1:
        raise ValueError(f"{what}: blocks have different resnet counts {sorted(counts)}; LDM numbering needs one")
    return counts.pop() - extra


def unet_to_original(unet: nn.Module) -> dict[str, torch.Tensor]:
    """Return a ``UNet2DConditionModel``'s weights in LDM ``openaimodel.UNetModel`` keys (no prefix)."""
    return _unet_mover(unet).finish()


def unet_original_names(unet: nn.Module) -> dict[str, str]:
    """Each LDM key of ``unet``'s weights (no prefix) and the module's own key it holds."""
    mover = _unet_mover(unet)
    mover.finish()
    return mover.sources


def _unet_mover(unet: nn.Module) -> _Mover:
    mover = _Mover(unet.state_dict(), "UNet")
    for source, target in _UNET_TOP.items():
        mover.move(source, target)

    down_blocks = unet.down_blocks
    per_block = _layers_per_block(down_blocks, 0, "UNet down blocks")
    index = 1  # input_blocks.0 is conv_in
    for b, block in enumerate(down_blocks):
        attentions = getattr(block, "attentions", None)
        for layer in range(per_block):
            mover.move(f"down_blocks.{b}.resnets.{layer}", f"input_blocks.{index}.0", _UNET_RESNET)
            if attentions is not None:
                mover.move(f"down_blocks.{b}.attentions.{layer}", f"input_blocks.{index}.1")
            index += 1
        has_down = block.downsamplers is not None
        # diffusers numbers input blocks assuming every block but the last halves the resolution.
        if has_down != (b < len(down_blocks) - 1):
            raise ValueError(f"UNet down block {b}: only the last block may lack a downsampler")
        if has_down:
            mover.move(f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{index}.0.op")
            index += 1

    mid = unet.mid_block
    if mid is not None:
        if len(mid.resnets) != 2 or len(getattr(mid, "attentions", ())) != 1:
            raise ValueError("UNet mid block: expected resnet, attention, resnet as in Stable Diffusion")
        mover.move("mid_block.resnets.0", "middle_block.0", _UNET_RESNET)
        mover.move("mid_block.attentions.0", "middle_block.1")
        mover.move("mid_block.resnets.1", "middle_block.2", _UNET_RESNET)

    up_blocks = unet.up_blocks
    per_up_block = _layers_per_block(up_blocks, 0, "UNet up blocks")
    if per_up_block != per_block + 1:
        raise ValueError(f"UNet up blocks have {per_up_block} resnets each; expected layers_per_block + 1")
    index = 0
    for b, block in enumerate(up_blocks):
        attentions = getattr(block, "attentions", None)
        for layer in range(per_up_block):
            mover.move(f"up_blocks.{b}.resnets.{layer}", f"output_blocks.{index}.0", _UNET_RESNET)
            if attentions is not None:
                mover.move(f"up_blocks.{b}.attentions.{layer}", f"output_blocks.{index}.1")
            if layer == per_up_block - 1 and block.upsamplers is not None:
                slot = 2 if attentions is not None else 1
                mover.move(f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{index}.{slot}.conv")
            index += 1
    return mover


def _as_conv1x1(tensor: torch.Tensor) -> torch.Tensor:
    # The LDM autoencoder's attention uses 1x1 convolutions where diffusers uses linear layers.
    return tensor.reshape(*tensor.shape, 1, 1) if tensor.ndim == 2 else tensor


def vae_to_original(vae: nn.Module) -> dict[str, torch.Tensor]:
    """Return an ``AutoencoderKL``'s weights in LDM ``AutoencoderKL`` keys (no prefix)."""
    return _vae_mover(vae).finish()


def vae_original_names(vae: nn.Module) -> dict[str, str]:
    """Each LDM key of ``vae``'s weights (no prefix) and the module's own key it holds (the attention's
    linear weights are 1x1 convolutions there)."""
    mover = _vae_mover(vae)
    mover.finish()
    return mover.sources


def _vae_mover(vae: nn.Module) -> _Mover:
    mover = _Mover(vae.state_dict(), "VAE")
    for source, target in _VAE_TOP.items():
        mover.move(source, target)
    for b, block in enumerate(vae.encoder.down_blocks):
        for r in range(len(block.resnets)):
            mover.move(f"encoder.down_blocks.{b}.resnets.{r}", f"encoder.down.{b}.block.{r}", _VAE_RESNET)
        mover.move(f"encoder.down_blocks.{b}.downsamplers.0.conv", f"encoder.down.{b}.downsample.conv")
    count = len(vae.decoder.up_blocks)
    for b, block in enumerate(vae.decoder.up_blocks):
        # The decoder's up blocks are numbered from the lowest resolution in diffusers, the highest in LDM.
        ldm = count - 1 - b
        for r in range(len(block.resnets)):
            mover.move(f"decoder.up_blocks.{b}.resnets.{r}", f"decoder.up.{ldm}.block.{r}", _VAE_RESNET)
        mover.move(f"decoder.up_blocks.{b}.upsamplers.0.conv", f"decoder.up.{ldm}.upsample.conv")
    for part in ("encoder", "decoder"):
        mover.move(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", _VAE_RESNET)
        mover.move(f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", _VAE_RESNET)
        mover.move(f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTENTION, _as_conv1x1)
    return mover


def _text_state_dict(text_encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Return a CLIP text model's weights with the ``text_model.`` prefix transformers 4 used everywhere."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        if key == "text_projection.weight" or key.startswith("text_model."):
            out[key] = value.detach()
        else:  # transformers >= 5.6 flattened CLIPTextModel
            out["text_model." + key] = value.detach()
    return out


def clip_to_original(text_encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Return a ``CLIPTextModel``'s weights as SD 1.x / SDXL's first encoder store them (no prefix)."""
    return {k: v for k, v in _text_state_dict(text_encoder).items() if k != "text_projection.weight"}


def clip_to_open_clip(text_encoder: nn.Module, *, identity_final_block: bool = False) -> dict[str, torch.Tensor]:
    """Return a CLIP text model's weights in OpenCLIP's ``TextTransformer`` keys (no prefix).

    ``identity_final_block`` appends one residual block whose output projections are zero, so it
    passes its input through unchanged. SD 2.x checkpoints hold OpenCLIP's full 24 blocks but use the
    output of the 23rd; diffusers keeps 23 and drops the last on loading. Appending a pass-through
    block restores that shape, and any consumer, whether it reads the last or the penultimate block,
    sees what the diffusers model computes.
    """
    mover = _Mover(_text_state_dict(text_encoder), "text encoder")
    mover.move("text_model.embeddings.token_embedding", "token_embedding")
    mover.move("text_model.final_layer_norm", "ln_final")
    out = mover.out
    out["positional_embedding"] = mover.left.pop("text_model.embeddings.position_embedding.weight")
    if "text_projection.weight" in mover.left:
        out["text_projection"] = mover.left.pop("text_projection.weight").T.contiguous()
    mover.left.pop("text_model.embeddings.position_ids", None)  # a buffer of 0..76, rebuilt on load

    layers = text_encoder.config.num_hidden_layers
    for i in range(layers):
        source, target = f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}"
        for kind in ("weight", "bias"):
            parts = [mover.left.pop(f"{source}.self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{target}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
        mover.move(source, target, _OPEN_CLIP_LAYER)
    if identity_final_block:
        template = {k: v for k, v in out.items() if k.startswith(f"transformer.resblocks.{layers - 1}.")}
        for key, value in template.items():
            new_key = key.replace(f"resblocks.{layers - 1}.", f"resblocks.{layers}.")
            is_norm_scale = ".ln_" in key and key.endswith(".weight")
            out[new_key] = torch.ones_like(value) if is_norm_scale else torch.zeros_like(value)
    return mover.finish()


def _prefixed(prefix: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state_dict.items()}


def diffusers_to_original(
    unet: nn.Module,
    vae: nn.Module,
    text_encoder: nn.Module,
    text_encoder_2: nn.Module | None = None,
    family: Family | str = "sd1",
) -> dict[str, torch.Tensor]:
    """Return one original-layout state dict holding all components of a ``family`` checkpoint.

    Keys: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE) and each text encoder under
    its family's ``original_prefix`` in its ``layout``: transformers' CLIP keys (``clip``) or OpenCLIP's
    (``open_clip``). An OpenCLIP encoder whose family reads its last layer (SD 2.x) gets back the final
    block diffusers drops on loading, as a pass-through. Tensors keep their dtype and may share memory
    with the modules; save them with safetensors as they are.
    """
    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        family = FAMILIES[family]
    modules = [m for m in (text_encoder, text_encoder_2) if m is not None]
    if len(modules) != len(family.encoders):
        raise ValueError(f"{family.label} has {len(family.encoders)} text encoder(s); got {len(modules)}")
    out = _prefixed(UNET_PREFIX, unet_to_original(unet))
    out.update(_prefixed(VAE_PREFIX, vae_to_original(vae)))
    for spec, module in zip(family.encoders, modules):
        if spec.layout == "clip":
            converted = clip_to_original(module)
        elif spec.layout == "open_clip":
            converted = clip_to_open_clip(module, identity_final_block=spec.hidden == "last")
        else:
            raise ValueError(f"{family.label}: no original-layout writer for {spec.layout!r} text encoders")
        out.update(_prefixed(spec.original_prefix, converted))
    return out
