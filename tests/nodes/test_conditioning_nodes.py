"""Conditioning operations: entries combined by area, mask and strength weights as ComfyUI's calc_cond_batch does;
concatenate, zero out, timestep ranges; a plain prompt is sampled as before; bad boxes and ranges name their input."""

from __future__ import annotations

import pytest
import torch
from pack_support import gouache_home, shared_engine, text_to_image  # noqa: F401
from test_nodes_cache import round_trip

from gouache.engine import InputError
from gouache.nodes.conditioning_nodes import (
    ConditioningCombine,
    ConditioningConcat,
    ConditioningSetArea,
    ConditioningSetAreaPercentage,
    ConditioningSetMask,
    ConditioningSetTimestepRange,
    ConditioningZeroOut,
)
from gouache.nodes.regions import active, combine, matching_areas, resolve
from gouache.nodes.types import Conditioning

# The regional path runs the prompts one by one (batches of 1, not the pipelines' batch of 2): float rounding only.
CLOSE = 1e-4


def run(node, **inputs):
    return node().run(None, **inputs)["conditioning"]


def prompt(value: float = 0.0, tokens: int = 77) -> Conditioning:
    return Conditioning(torch.full((1, tokens, 8), value), torch.full((1, 4), value))


def test_combine_keeps_every_entry_and_changes_neither_input():
    a, b = prompt(1.0), prompt(2.0)
    both = run(ConditioningCombine, conditioning_1=a, conditioning_2=run(ConditioningCombine, conditioning_1=b,
                                                                         conditioning_2=a))
    assert [entry.embeds[0, 0, 0].item() for entry in both.entries()] == [1.0, 2.0, 1.0]
    assert not both.plain and a.plain and a.more == () and b.more == ()
    back = round_trip(both)
    assert [entry.embeds[0, 0, 0].item() for entry in back.entries()] == [1.0, 2.0, 1.0]


def test_concat_joins_tokens_and_zero_out_zeroes_everything():
    joined = run(ConditioningConcat, conditioning_to=prompt(1.0), conditioning_from=prompt(2.0, tokens=154))
    assert joined.embeds.shape == (1, 231, 8) and joined.embeds[0, 77:].eq(2.0).all()
    assert joined.pooled.eq(1.0).all(), "the pooled embedding stays conditioning_to's"
    with pytest.raises(InputError) as error:
        run(ConditioningConcat, conditioning_to=prompt(), conditioning_from=Conditioning(torch.zeros(1, 77, 16)))
    assert error.value.input == "conditioning_from"
    zero = run(ConditioningZeroOut, conditioning=prompt(3.0))
    assert zero.embeds.eq(0).all() and zero.pooled.eq(0).all() and zero.plain


def test_areas_weigh_predictions_with_feathered_edges_inside_the_image():
    everywhere = prompt(0.0)
    right = run(ConditioningSetArea, conditioning=prompt(3.0), width=128, height=256, x=128, y=0, strength=2.0)
    top = run(ConditioningSetAreaPercentage, conditioning=prompt(6.0), width=1.0, height=0.25, x=0.0, y=0.0,
              strength=1.0)
    cond = run(ConditioningCombine, conditioning_1=everywhere, conditioning_2=right)
    regions = resolve(cond, "positive", (1, 4, 32, 32), 8, "cpu")
    assert [(r.top, r.left, r.bottom, r.right) for r in regions] == [(0, 0, 32, 32), (0, 16, 32, 32)]
    assert [(r.top, r.left, r.bottom, r.right) for r in resolve(top, "positive", (1, 4, 32, 32), 8, "cpu")] == [
        (0, 0, 8, 32)]
    # Each entry "predicts" its embedding's value: the result is the weighted average of 0 and 3. The area's
    # weight rises from 2/8 at its left edge (inside the image) to 2 eight cells in; no fade at the image's edge.
    out = combine(regions, torch.zeros(1, 4, 32, 32), 500.0, 1000,
                  lambda entry, crop, cells: torch.full_like(crop, entry.embeds[0, 0, 0].item()))
    assert out[0, 0, 5, 15].item() == 0.0
    assert out[0, 0, 5, 16].item() == pytest.approx(3 * 0.25 / 1.25)
    assert out[0, 0, 5, 23].item() == pytest.approx(3 * 2 / 3) and out[0, 0, 0, 31].item() == pytest.approx(2.0)


def test_masks_weigh_predictions_and_mask_bounds_crop_the_model_input():
    mask = torch.zeros(1, 64, 64)
    mask[:, 8:24, 16:40] = 1.0
    masked = run(ConditioningSetMask, conditioning=prompt(2.0), mask=mask, strength=0.5, set_cond_area="mask bounds")
    cond = run(ConditioningCombine, conditioning_1=prompt(0.0), conditioning_2=masked)
    regions = resolve(cond, "positive", (1, 4, 8, 8), 8, "cpu")
    # The box starts at the mask's first cell and is at least 8 cells a side, cut at the image's edge.
    assert (regions[1].top, regions[1].left, regions[1].bottom, regions[1].right) == (1, 2, 8, 8)
    out = combine(regions, torch.zeros(1, 4, 8, 8), 10.0, 1000,
                  lambda entry, crop, cells: torch.full_like(crop, entry.embeds[0, 0, 0].item()))
    assert out[0, 0, 2, 3].item() == pytest.approx(2.0 * 0.5 / 1.5) and out[0, 0, 7, 7].item() == 0.0
    assert out[0, 0, 0, 0].item() == 0.0


def test_the_other_side_gets_an_entry_on_each_area_it_lacks():
    # As ComfyUI's create_cond_with_same_area_if_none: the negative is weighed like the positive in its area.
    area = run(ConditioningSetArea, conditioning=prompt(1.0), width=128, height=128, x=0, y=0, strength=0.5)
    positive = resolve(run(ConditioningCombine, conditioning_1=prompt(2.0), conditioning_2=area), "positive",
                       (1, 4, 32, 32), 8, "cpu")
    negative = resolve(prompt(-1.0), "negative", (1, 4, 32, 32), 8, "cpu")
    (copy,) = matching_areas(positive, negative)
    assert (copy.top, copy.left, copy.bottom, copy.right) == (0, 0, 16, 16) and copy.weight is positive[1].weight
    assert copy.entry.embeds[0, 0, 0].item() == -1.0 and copy.entry.strength == 0.5
    assert matching_areas(negative, positive) == [], "the negative has no area"
    assert matching_areas(positive, positive + [copy]) == [], "an entry with that area exists"


def test_timestep_ranges_select_the_entries_of_each_step():
    early = run(ConditioningSetTimestepRange, conditioning=prompt(), start=0.0, end=0.5)
    assert active(early, 999, 1000) and active(early, 500, 1000) and not active(early, 400, 1000)
    late = run(ConditioningSetTimestepRange, conditioning=prompt(), start=0.5, end=1.0)
    assert not active(late, 600, 1000) and active(late, 0, 1000)
    # Where no entry is active the prediction is 0, as in ComfyUI.
    out = combine(resolve(late, "positive", (1, 4, 8, 8), 8, "cpu"), torch.zeros(1, 4, 8, 8), 900.0, 1000,
                  lambda entry, crop, cells: torch.ones_like(crop))
    assert out.eq(0).all()


def test_bad_boxes_and_ranges_are_refused_naming_the_input():
    assert [p.input for p in ConditioningSetAreaPercentage().check({"x": 0.6, "width": 0.5, "y": 0.5,
                                                                    "height": 0.6})] == ["width", "height"]
    assert [p.input for p in ConditioningSetTimestepRange().check({"start": 0.8, "end": 0.2})] == ["start"]
    outside = run(ConditioningSetArea, conditioning=prompt(), width=64, height=64, x=32, y=0, strength=1.0)
    with pytest.raises(InputError) as error:
        resolve(outside, "negative", (1, 4, 8, 8), 8, "cpu")
    assert (error.value.input, error.value.code) == ("negative", "outside_image")


def _encode(nodes: dict, name: str, text: str) -> None:
    nodes[name] = {"type": "TextEncode", "inputs": {"clip": {"node": "checkpoint", "output": "clip"}, "text": text}}


def _wire(nodes: dict, name: str, node_type: str, source: str, **inputs) -> None:
    nodes[name] = {"type": node_type, "inputs": {"conditioning": {"node": source, "output": "conditioning"}, **inputs}}


def _sample(engine, workflow: dict) -> torch.Tensor:
    result = engine.run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    return result.outputs["sampler"]["latent"]["samples"]


def test_whole_image_entries_give_the_plain_prompt_s_result(shared_engine):
    workflow = text_to_image("tiny-sd1", negative="blurry")
    plain = _sample(shared_engine, workflow)
    nodes = workflow["nodes"]
    _wire(nodes, "full_area", "ConditioningSetAreaPercentage", "positive", width=1.0, height=1.0, x=0.0, y=0.0,
          strength=0.7)
    _wire(nodes, "ranged", "ConditioningSetTimestepRange", "full_area", start=0.0, end=1.0)
    nodes["both"] = {"type": "ConditioningCombine", "inputs": {
        "conditioning_1": {"node": "ranged", "output": "conditioning"},
        "conditioning_2": {"node": "positive", "output": "conditioning"}}}
    nodes["sampler"]["inputs"]["positive"] = {"node": "both", "output": "conditioning"}
    assert (_sample(shared_engine, workflow) - plain).abs().max().item() <= CLOSE * plain.abs().max().item()


def test_regional_prompts_run_through_the_engine(shared_engine):
    workflow = text_to_image("tiny-sd1")
    plain = _sample(shared_engine, workflow)
    nodes = workflow["nodes"]
    _encode(nodes, "green", "a green square")
    _wire(nodes, "left", "ConditioningSetArea", "green", width=32, height=64, x=0, y=0, strength=1.0)
    nodes["regional"] = {"type": "ConditioningCombine", "inputs": {
        "conditioning_1": {"node": "positive", "output": "conditioning"},
        "conditioning_2": {"node": "left", "output": "conditioning"}}}
    _wire(nodes, "concat_base", "ConditioningZeroOut", "negative")
    nodes["sampler"]["inputs"]["positive"] = {"node": "regional", "output": "conditioning"}
    nodes["sampler"]["inputs"]["negative"] = {"node": "concat_base", "output": "conditioning"}
    regional = _sample(shared_engine, workflow)
    assert regional.shape == plain.shape and not torch.equal(regional, plain)
    _wire(nodes, "outside", "ConditioningSetArea", "green", width=64, height=64, x=32, y=0, strength=1.0)
    nodes["regional"]["inputs"]["conditioning_2"] = {"node": "outside", "output": "conditioning"}
    result = shared_engine.run(workflow, outputs=["sampler"])
    assert not result.ok and (result.error.node, result.error.input, result.error.code) == (
        "sampler", "positive", "outside_image")


def test_a_start_after_the_end_is_a_validation_problem(shared_engine):
    workflow = text_to_image("tiny-sd1")
    _wire(workflow["nodes"], "ranged", "ConditioningSetTimestepRange", "positive", start=0.9, end=0.1)
    valid, problems = shared_engine.check(workflow)
    assert not valid and [(p.node, p.input) for p in problems] == [("ranged", "start")]


def test_sdxl_entries_carry_their_pooled_embedding_and_size(shared_engine):
    workflow = text_to_image("tiny-sdxl")
    plain = _sample(shared_engine, workflow)
    nodes = workflow["nodes"]
    _wire(nodes, "top", "ConditioningSetAreaPercentage", "positive", width=1.0, height=0.5, x=0.0, y=0.0,
          strength=1.0)
    mask = {"type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    nodes["solid"] = mask
    nodes["masked"] = {"type": "ConditioningSetMask", "inputs": {
        "conditioning": {"node": "negative", "output": "conditioning"}, "mask": {"node": "solid", "output": "mask"},
        "strength": 1.0, "set_cond_area": "default"}}
    nodes["both"] = {"type": "ConditioningCombine", "inputs": {
        "conditioning_1": {"node": "positive", "output": "conditioning"},
        "conditioning_2": {"node": "top", "output": "conditioning"}}}
    nodes["sampler"]["inputs"]["positive"] = {"node": "both", "output": "conditioning"}
    nodes["sampler"]["inputs"]["negative"] = {"node": "masked", "output": "conditioning"}
    regional = _sample(shared_engine, workflow)
    assert regional.shape == plain.shape and torch.isfinite(regional).all() and not torch.equal(regional, plain)
