"""Rename SD 3.x (MMDiT) and Flux.1 transformer weights between the original layout and diffusers'.

The original layouts are what Stability's SD 3.x files (``joint_blocks.*``) and Black Forest Labs'
Flux files (``double_blocks.*``, ``single_blocks.*``) hold, bare or under ComfyUI's
``model.diffusion_model.`` prefix. One table per family drives both directions, so what
``to_original`` writes is exactly what ``to_diffusers`` reads.

diffusers ships the original -> diffusers direction too, but its Flux converter assumes the full
model's width (3072) when it splits the single blocks' fused projection; here every split size is
read from the tensors, so fine-tunes, pruned models and the tiny test models convert alike. The
tests check this table against diffusers' converters (values for SD 3, key names and shapes for Flux).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from .errors import ModelLoadError

Kind = Literal["same", "fused", "swap"]
"""``same``: renamed only; ``fused``: one original tensor is several diffusers tensors concatenated
along dim 0 (q, k, v, ...); ``swap``: the two halves (shift, scale) are stored the other way round."""


@dataclass(frozen=True)
class Rule:
    """One original module and the diffusers module(s) it becomes, for every parameter it has."""

    original: str
    diffusers: tuple[str, ...]
    kind: Kind = "same"
    params: tuple[tuple[str, str], ...] = (("weight", "weight"), ("bias", "bias"))
    """(original parameter name, diffusers parameter name) pairs; RMS norms store ``scale`` in Flux files."""


_SCALE = (("scale", "weight"),)
_WEIGHT = (("weight", "weight"),)
_TENSOR = (("", ""),)  # a bare tensor, not a module's parameter


def _key(module: str, param: str) -> str:
    return f"{module}.{param}" if param else module


def _sd3_block(i: int, last: bool, attn2: bool, qk_norm: bool) -> list[Rule]:
    x, c, d = f"joint_blocks.{i}.x_block", f"joint_blocks.{i}.context_block", f"transformer_blocks.{i}"
    rules = [
        Rule(f"{x}.attn.qkv", (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"), "fused"),
        Rule(f"{c}.attn.qkv", (f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"), "fused"),
        Rule(f"{x}.attn.proj", (f"{d}.attn.to_out.0",)),
        Rule(f"{x}.adaLN_modulation.1", (f"{d}.norm1.linear",)),
        # The last block only feeds the image stream: its context modulation has shift and scale
        # only, stored (shift, scale) where diffusers' AdaLayerNormContinuous reads (scale, shift).
        Rule(f"{c}.adaLN_modulation.1", (f"{d}.norm1_context.linear",), "swap" if last else "same"),
        Rule(f"{x}.mlp.fc1", (f"{d}.ff.net.0.proj",)),
        Rule(f"{x}.mlp.fc2", (f"{d}.ff.net.2",)),
    ]
    if not last:
        rules += [
            Rule(f"{c}.attn.proj", (f"{d}.attn.to_add_out",)),
            Rule(f"{c}.mlp.fc1", (f"{d}.ff_context.net.0.proj",)),
            Rule(f"{c}.mlp.fc2", (f"{d}.ff_context.net.2",)),
        ]
    if qk_norm:
        rules += [
            Rule(f"{x}.attn.ln_q", (f"{d}.attn.norm_q",), params=_WEIGHT),
            Rule(f"{x}.attn.ln_k", (f"{d}.attn.norm_k",), params=_WEIGHT),
            Rule(f"{c}.attn.ln_q", (f"{d}.attn.norm_added_q",), params=_WEIGHT),
            Rule(f"{c}.attn.ln_k", (f"{d}.attn.norm_added_k",), params=_WEIGHT),
        ]
    if attn2:  # SD 3.5 medium's second self-attention on the image stream (MMDiT-X)
        rules += [
            Rule(f"{x}.attn2.qkv", (f"{d}.attn2.to_q", f"{d}.attn2.to_k", f"{d}.attn2.to_v"), "fused"),
            Rule(f"{x}.attn2.proj", (f"{d}.attn2.to_out.0",)),
        ]
        if qk_norm:
            rules += [
                Rule(f"{x}.attn2.ln_q", (f"{d}.attn2.norm_q",), params=_WEIGHT),
                Rule(f"{x}.attn2.ln_k", (f"{d}.attn2.norm_k",), params=_WEIGHT),
            ]
    return rules


def sd3_rules(num_layers: int, dual_attention_layers: tuple[int, ...], qk_norm: bool) -> list[Rule]:
    """The SD 3.x table for a model with ``num_layers`` joint blocks."""
    rules = [
        Rule("pos_embed", ("pos_embed.pos_embed",), params=_TENSOR),
        Rule("x_embedder.proj", ("pos_embed.proj",)),
        Rule("t_embedder.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("t_embedder.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("y_embedder.mlp.0", ("time_text_embed.text_embedder.linear_1",)),
        Rule("y_embedder.mlp.2", ("time_text_embed.text_embedder.linear_2",)),
        Rule("context_embedder", ("context_embedder",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), "swap"),
    ]
    for i in range(num_layers):
        rules += _sd3_block(i, i == num_layers - 1, i in dual_attention_layers, qk_norm)
    return rules


def flux_rules(num_layers: int, num_single_layers: int, guidance: bool) -> list[Rule]:
    """The Flux.1 table for ``num_layers`` double-stream and ``num_single_layers`` single-stream blocks."""
    rules = [
        Rule("img_in", ("x_embedder",)),
        Rule("txt_in", ("context_embedder",)),
        Rule("time_in.in_layer", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("time_in.out_layer", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
        Rule("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), "swap"),
    ]
    if guidance:
        rules += [
            Rule("guidance_in.in_layer", ("time_text_embed.guidance_embedder.linear_1",)),
            Rule("guidance_in.out_layer", ("time_text_embed.guidance_embedder.linear_2",)),
        ]
    for i in range(num_layers):
        o, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        rules += [
            Rule(f"{o}.img_mod.lin", (f"{d}.norm1.linear",)),
            Rule(f"{o}.txt_mod.lin", (f"{d}.norm1_context.linear",)),
            Rule(f"{o}.img_attn.qkv", (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"), "fused"),
            Rule(f"{o}.txt_attn.qkv", (f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"), "fused"),
            Rule(f"{o}.img_attn.norm.query_norm", (f"{d}.attn.norm_q",), params=_SCALE),
            Rule(f"{o}.img_attn.norm.key_norm", (f"{d}.attn.norm_k",), params=_SCALE),
            Rule(f"{o}.txt_attn.norm.query_norm", (f"{d}.attn.norm_added_q",), params=_SCALE),
            Rule(f"{o}.txt_attn.norm.key_norm", (f"{d}.attn.norm_added_k",), params=_SCALE),
            Rule(f"{o}.img_attn.proj", (f"{d}.attn.to_out.0",)),
            Rule(f"{o}.txt_attn.proj", (f"{d}.attn.to_add_out",)),
            Rule(f"{o}.img_mlp.0", (f"{d}.ff.net.0.proj",)),
            Rule(f"{o}.img_mlp.2", (f"{d}.ff.net.2",)),
            Rule(f"{o}.txt_mlp.0", (f"{d}.ff_context.net.0.proj",)),
            Rule(f"{o}.txt_mlp.2", (f"{d}.ff_context.net.2",)),
        ]
    for i in range(num_single_layers):
        o, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        rules += [
            Rule(f"{o}.modulation.lin", (f"{d}.norm.linear",)),
            # q, k, v and the MLP's input projection in one matrix; its split is read from the shapes.
            Rule(f"{o}.linear1", (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"), "fused"),
            Rule(f"{o}.norm.query_norm", (f"{d}.attn.norm_q",), params=_SCALE),
            Rule(f"{o}.norm.key_norm", (f"{d}.attn.norm_k",), params=_SCALE),
            Rule(f"{o}.linear2", (f"{d}.proj_out",)),
        ]
    return rules


def _swap(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _split_sizes(rule: Rule, weight: torch.Tensor) -> list[int]:
    """How a fused tensor splits: equal thirds for q, k, v; for Flux's ``linear1`` q, k, v are each
    as wide as the block's input and the MLP takes the rest."""
    parts = len(rule.diffusers)
    if parts == 3:
        return [weight.shape[0] // 3] * 3
    width = weight.shape[1]
    return [width, width, width, weight.shape[0] - 3 * width]


def to_diffusers(state_dict: Mapping[str, torch.Tensor], rules: list[Rule], what: str) -> dict[str, torch.Tensor]:
    """Convert an original-layout transformer state dict; every tensor must land somewhere.

    Raises ``ModelLoadError`` naming the tensors the table does not know and those it expects but
    the file lacks. Tensors are views or the file's own tensors where possible (no copies, dtype kept).
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for rule in rules:
        weight_key = _key(rule.original, rule.params[0][0])
        for original_param, diffusers_param in rule.params:
            key = _key(rule.original, original_param)
            if key not in state_dict:
                missing.append(key)
                continue
            tensor = state_dict[key]
            used.add(key)
            if rule.kind == "fused":
                sizes = _split_sizes(rule, state_dict[weight_key]) if weight_key in state_dict else None
                if sizes is None or sum(sizes) != tensor.shape[0] or min(sizes) <= 0:
                    raise ModelLoadError(f"{what}: {key} of shape {tuple(tensor.shape)} cannot be split into "
                                         f"{', '.join(rule.diffusers)}")
                for name, piece in zip(rule.diffusers, tensor.split(sizes, dim=0)):
                    out[_key(name, diffusers_param)] = piece
            elif rule.kind == "swap":
                out[_key(rule.diffusers[0], diffusers_param)] = _swap(tensor)
            else:
                out[_key(rule.diffusers[0], diffusers_param)] = tensor
    unknown = sorted(set(state_dict) - used)
    if unknown:
        raise ModelLoadError(f"{what}: {len(unknown)} tensors fit no part of the model (first: {', '.join(unknown[:5])}); "
                             "the file holds more than this loader knows, or another model")
    if missing:
        raise ModelLoadError(f"{what}: {len(missing)} tensors are missing (first: {', '.join(missing[:5])}); "
                             "the file is incomplete")
    return out


def to_original(state_dict: Mapping[str, torch.Tensor], rules: list[Rule]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_diffusers`: diffusers names in, original names out."""
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        for original_param, diffusers_param in rule.params:
            keys = [_key(name, diffusers_param) for name in rule.diffusers]
            if not all(key in state_dict for key in keys):
                continue
            tensors = [state_dict[key] for key in keys]
            tensor = torch.cat(tensors, dim=0) if rule.kind == "fused" else tensors[0]
            out[_key(rule.original, original_param)] = _swap(tensor) if rule.kind == "swap" else tensor
    return out


def count_blocks(keys: Mapping[str, object] | list[str], prefix: str) -> int:
    """How many ``prefix.N.*`` blocks the keys hold (highest N + 1; 0 if none)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    numbers = [int(m.group(1)) for key in keys if (m := pattern.match(key))]
    return max(numbers) + 1 if numbers else 0
