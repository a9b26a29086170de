"""Conditioning operations: combine, concatenate, zero out, set an area, a mask or a timestep range.

A CONDITIONING is a list of entries (``gouache.nodes.types.Conditioning``); these nodes make new
ones and never change their inputs. How the sampler uses areas, masks and ranges is in
``gouache.nodes.regions``. Each node names its ComfyUI counterpart in ``docs/builtin-nodes.md``.
"""

from __future__ import annotations

from dataclasses import replace

from gouache.engine import Input, InputError, Node, Output
from gouache.nodes.support import MAX_SIDE
from gouache.nodes.regions import check_area


class ConditioningCombine(Node):
    """Both conditionings' entries in one: the sampler predicts with each and averages them by their weights."""

    type_name = "ConditioningCombine"
    category = "conditioning"
    inputs = [Input("conditioning_1", "CONDITIONING"), Input("conditioning_2", "CONDITIONING")]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning_1, conditioning_2):
        first, *others = [*conditioning_1.entries(), *conditioning_2.entries()]
        return {"conditioning": replace(first, more=tuple(others))}


class ConditioningConcat(Node):
    """Join ``conditioning_from``'s (first entry's) embeddings after each entry's of ``conditioning_to``,
    along the token axis; the pooled embedding stays ``conditioning_to``'s."""

    type_name = "ConditioningConcat"
    category = "conditioning"
    inputs = [Input("conditioning_to", "CONDITIONING"), Input("conditioning_from", "CONDITIONING")]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning_to, conditioning_from):
        import torch

        source = conditioning_from.embeds
        for entry in conditioning_to.entries():
            if entry.embeds.shape[-1] != source.shape[-1]:
                raise InputError("conditioning_from", f"its embeddings are {source.shape[-1]} wide and "
                                                      f"conditioning_to's {entry.embeds.shape[-1]}: both must come "
                                                      "from the same model's CLIP", "size_mismatch")
        return {"conditioning": conditioning_to.map_entries(lambda entry: replace(
            entry, embeds=torch.cat([entry.embeds, source.to(entry.embeds.dtype)], dim=1)))}


class ConditioningZeroOut(Node):
    """Every embedding (and pooled embedding) set to zeros: a negative that is no prompt at all."""

    type_name = "ConditioningZeroOut"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING")]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning):
        import torch

        return {"conditioning": conditioning.map_entries(lambda entry: replace(
            entry, embeds=torch.zeros_like(entry.embeds),
            pooled=torch.zeros_like(entry.pooled) if entry.pooled is not None else None))}


class ConditioningSetArea(Node):
    """Apply the conditioning only to a box of the image, in pixels (multiples of 8), at ``strength``."""

    type_name = "ConditioningSetArea"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING"),
              Input("width", "INT", default=64, min=8, max=MAX_SIDE, step=8),
              Input("height", "INT", default=64, min=8, max=MAX_SIDE, step=8),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE, step=8),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE, step=8),
              Input("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01)]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning, width, height, x, y, strength):
        area = ("pixels", float(x), float(y), float(width), float(height))
        return {"conditioning": conditioning.map_entries(
            lambda entry: replace(entry, area=area, strength=float(strength)))}


class ConditioningSetAreaPercentage(Node):
    """Apply the conditioning only to a box given as fractions of the image's width and height, at ``strength``."""

    type_name = "ConditioningSetAreaPercentage"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING"),
              Input("width", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
              Input("height", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
              Input("x", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.01),
              Input("y", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.01),
              Input("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01)]
    outputs = [Output("conditioning", "CONDITIONING")]

    def check(self, values):
        return check_area(*(values.get(name, default) for name, default in
                                        (("x", 0.0), ("y", 0.0), ("width", 1.0), ("height", 1.0))))

    def run(self, ctx, conditioning, width, height, x, y, strength):
        problems = check_area(x, y, width, height)  # linked values skip check()
        if problems:
            raise problems[0]
        area = ("fraction", float(x), float(y), float(width), float(height))
        return {"conditioning": conditioning.map_entries(
            lambda entry: replace(entry, area=area, strength=float(strength)))}


SET_COND_AREA = ("default", "mask bounds")


class ConditioningSetMask(Node):
    """Weight the conditioning by ``mask`` times ``strength``; ``mask bounds`` runs the model on the
    mask's bounding box only (ComfyUI's ``set_cond_area``)."""

    type_name = "ConditioningSetMask"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING"), Input("mask", "MASK"),
              Input("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01),
              Input("set_cond_area", "COMBO", default="default", choices=SET_COND_AREA)]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning, mask, strength, set_cond_area):
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim != 3:
            raise InputError("mask", f"expected a MASK [B,H,W], got a tensor of shape {tuple(mask.shape)}", "wrong_shape")
        return {"conditioning": conditioning.map_entries(lambda entry: replace(
            entry, mask=mask, mask_strength=float(strength), mask_bounds=set_cond_area == "mask bounds"))}


class ConditioningSetTimestepRange(Node):
    """Use the conditioning only from ``start`` to ``end`` of the schedule (fractions; 0 is the first, noisiest step)."""

    type_name = "ConditioningSetTimestepRange"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING"),
              Input("start", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.001),
              Input("end", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.001)]
    outputs = [Output("conditioning", "CONDITIONING")]

    def check(self, values):
        return _range_problems(values.get("start", 0.0), values.get("end", 1.0))

    def run(self, ctx, conditioning, start, end):
        problems = _range_problems(start, end)
        if problems:
            raise problems[0]
        return {"conditioning": conditioning.map_entries(
            lambda entry: replace(entry, timestep_range=(float(start), float(end))))}


def _range_problems(start: float, end: float) -> list[InputError]:
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and start > end:
        return [InputError("start", f"{start:g} is after end ({end:g}); start at or before the end", "out_of_order")]
    return []


CONDITIONING_NODES = [ConditioningCombine, ConditioningConcat, ConditioningZeroOut, ConditioningSetArea,
                      ConditioningSetAreaPercentage, ConditioningSetMask, ConditioningSetTimestepRange]
"""The nodes of this module, in the order the pack lists them."""
