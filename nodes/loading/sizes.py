"""Read an original-layout single file's architecture off its tensors' shapes (SD 1.x, 2.x, XL).

So shrunk, distilled or custom-sized checkpoints and 9-channel inpainting UNets load without a config
folder of their own: channel counts, blocks per level, which levels attend, transformer depth,
cross-attention width, projection kind, input and output channels, the text encoders' widths and
depths, the VAE's levels and latent channels all come from the weights. What shapes cannot show keeps
the family's convention from its shipped config: normalisation groups (32), attention heads (SD 1.x: 8
heads; SD 2.x and XL: 64 channels per head; CLIP: 64 channels per head), activations.

Reads names and shapes only (``value.shape``), so it needs no torch itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gouache.nodes.families import UNET_PREFIX, VAE_PREFIX, Family, TextEncoder

HEAD_WIDTH = 64
"""Channels per attention head where a family counts heads by width (SD 2.x, XL, every CLIP)."""


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state_dict.get(key)
    return tuple(value.shape) if value is not None else None


def _count(keys: set[str], pattern: str) -> int:
    """How many distinct indices ``{n}`` in ``pattern`` (a regex with one group) the keys hold."""
    found = {int(m.group(1)) for key in keys if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def unet_sizes(state_dict: Mapping[str, Any], family: Family, shipped: Mapping[str, Any],
               pooled_width: int | None = None) -> dict[str, Any]:
    """``UNet2DConditionModel`` config values read from an original-layout UNet (under ``model.diffusion_model.``)."""
    p = UNET_PREFIX
    keys = set(state_dict)
    first = _shape(state_dict, f"{p}input_blocks.0.0.weight")
    if first is None:
        return {}
    levels: list[list[int]] = [[]]  # per level, the input blocks holding its res blocks
    index = 1
    while True:
        if f"{p}input_blocks.{index}.0.op.weight" in keys or f"{p}input_blocks.{index}.0.op.bias" in keys:
            levels.append([])
        elif f"{p}input_blocks.{index}.0.in_layers.0.weight" in keys:
            levels[-1].append(index)
        else:
            break
        index += 1
    levels = [level for level in levels if level]
    if not levels:
        return {}
    channels = [_shape(state_dict, f"{p}input_blocks.{level[0]}.0.out_layers.3.weight")[0] for level in levels]
    attends = [f"{p}input_blocks.{level[0]}.1.proj_in.weight" in keys for level in levels]
    depths = [_count(keys, re.escape(f"{p}input_blocks.{level[0]}.1.transformer_blocks.") + r"(\d+)\.") or 1
              for level in levels]
    sizes: dict[str, Any] = {
        "in_channels": first[1],
        "out_channels": _shape(state_dict, f"{p}out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": len(levels[0]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)],
    }
    attending = next((level for level, a in zip(levels, attends) if a), None)
    if attending is not None:
        block = f"{p}input_blocks.{attending[0]}.1."
        sizes["use_linear_projection"] = len(_shape(state_dict, f"{block}proj_in.weight")) == 2
        sizes["cross_attention_dim"] = _shape(state_dict, f"{block}transformer_blocks.0.attn2.to_k.weight")[1]
    if "transformer_layers_per_block" in shipped or any(depth != 1 for depth in depths):
        sizes["transformer_layers_per_block"] = depths
    heads = shipped.get("attention_head_dim")
    if isinstance(heads, list) or (isinstance(heads, int) and any(c % heads for c in channels)):
        sizes["attention_head_dim"] = [max(1, c // HEAD_WIDTH) for c in channels]
    label = _shape(state_dict, f"{p}label_emb.0.0.weight")
    if label is not None and family.size_conditioning:
        sizes["projection_class_embeddings_input_dim"] = label[1]
        if pooled_width is not None and (label[1] - pooled_width) % 6 == 0:
            sizes["addition_time_embed_dim"] = (label[1] - pooled_width) // 6
    return sizes


def vae_sizes(state_dict: Mapping[str, Any], prefix: str = VAE_PREFIX) -> dict[str, Any]:
    """``AutoencoderKL`` config values read from an original-layout VAE (under ``prefix``)."""
    keys = set(state_dict)
    levels = _count(keys, re.escape(f"{prefix}encoder.down.") + r"(\d+)\.")
    conv_in = _shape(state_dict, f"{prefix}encoder.conv_in.weight")
    quant = _shape(state_dict, f"{prefix}quant_conv.weight") or _shape(state_dict, f"{prefix}encoder.conv_out.weight")
    if not levels or conv_in is None or quant is None:
        return {}
    return {
        "in_channels": conv_in[1],
        "out_channels": _shape(state_dict, f"{prefix}decoder.conv_out.weight")[0],
        "latent_channels": quant[0] // 2,
        "block_out_channels": [_shape(state_dict, f"{prefix}encoder.down.{i}.block.0.conv1.weight")[0]
                               for i in range(levels)],
        "layers_per_block": _count(keys, re.escape(f"{prefix}encoder.down.0.block.") + r"(\d+)\."),
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
    }


def text_encoder_sizes(state_dict: Mapping[str, Any], spec: TextEncoder) -> dict[str, Any]:
    """``CLIPTextConfig`` values read from one encoder of an original-layout file (``spec.original_prefix``)."""
    keys = set(state_dict)
    p = spec.original_prefix
    if spec.layout == "clip":
        embedding = _shape(state_dict, f"{p}text_model.embeddings.token_embedding.weight")
        positions = _shape(state_dict, f"{p}text_model.embeddings.position_embedding.weight")
        layers = _count(keys, re.escape(f"{p}text_model.encoder.layers.") + r"(\d+)\.")
        fc1 = _shape(state_dict, f"{p}text_model.encoder.layers.0.mlp.fc1.weight")
        projection = _shape(state_dict, f"{p}text_projection.weight")
        projection_dim = projection[0] if projection else None
    elif spec.layout == "open_clip":
        embedding = _shape(state_dict, f"{p}token_embedding.weight")
        positions = _shape(state_dict, f"{p}positional_embedding")
        # A family that reads OpenCLIP's penultimate layer through the final norm (SD 2.x) is described,
        # as diffusers describes it, by a text model without the last block.
        layers = _count(keys, re.escape(f"{p}transformer.resblocks.") + r"(\d+)\.") - (spec.hidden == "last")
        fc1 = _shape(state_dict, f"{p}transformer.resblocks.0.mlp.c_fc.weight")
        projection = _shape(state_dict, f"{p}text_projection")
        projection_dim = projection[1] if projection else None
    else:
        return {}
    if embedding is None or fc1 is None or layers < 1:
        return {}
    sizes = {"vocab_size": embedding[0], "hidden_size": embedding[1], "intermediate_size": fc1[0],
             "num_hidden_layers": layers, "num_attention_heads": max(1, embedding[1] // HEAD_WIDTH)}
    if positions is not None:
        sizes["max_position_embeddings"] = positions[0]
    if projection_dim is not None:
        sizes["projection_dim"] = projection_dim
    return sizes
