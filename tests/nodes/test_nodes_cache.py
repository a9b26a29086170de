"""Caching the pack's values and models: disk codecs for tensors and CONDITIONING, models in RAM within budget."""

from __future__ import annotations

import pytest
import torch
from pack_support import fixture_pack, gouache_home, text_to_image  # noqa: F401

from gouache.engine import Engine, cache_device, cache_size
from gouache.engine.disk_cache import decode_entry, encode_entry
from gouache.nodes import cache_types  # noqa: F401  (what the built-in pack imports: the registrations)
from gouache.nodes.model_manager import RESOURCE_KEY
from gouache.nodes.types import Conditioning


def round_trip(value):
    outputs, _ = decode_entry("k", encode_entry("k", {"v": value}, {}))
    return outputs["v"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool])
def test_tensors_round_trip_exactly_with_their_dtype_and_shape(dtype):
    tensor = (torch.randn(2, 3, 5) * 4).to(dtype)
    back = round_trip(tensor[:, 1:])  # a non-contiguous view is stored as its values
    assert back.dtype == dtype and back.shape == (2, 2, 5) and torch.equal(back, tensor[:, 1:])
    assert round_trip(torch.nn.Parameter(torch.ones(3), requires_grad=False)).tolist() == [1.0, 1.0, 1.0]


def test_conditioning_and_latents_round_trip():
    conditioning = Conditioning(torch.randn(1, 77, 8), torch.randn(1, 4), ((64, 64), (0, 0), (64, 64)), "a cat", 3.5)
    back = round_trip(conditioning)
    assert isinstance(back, Conditioning) and torch.equal(back.embeds, conditioning.embeds)
    assert torch.equal(back.pooled, conditioning.pooled)
    assert (back.size, back.text, back.guidance) == (conditioning.size, "a cat", 3.5)
    latent = {"samples": torch.randn(1, 4, 8, 8), "noise_mask": torch.rand(1, 1, 64, 64)}
    back = round_trip(latent)
    assert set(back) == {"samples", "noise_mask"} and all(torch.equal(back[k], latent[k]) for k in latent)
    assert round_trip(Conditioning(torch.zeros(1, 77, 8))).pooled is None


def test_sizes_and_devices_of_the_pack_s_values():
    conditioning = Conditioning(torch.zeros(1, 77, 8), torch.zeros(1, 4))
    assert cache_size(conditioning) == (77 * 8 + 4) * 4
    assert cache_device(conditioning) is None and cache_device({"samples": torch.zeros(1)}) is None


def test_models_beyond_the_budget_are_let_go_and_load_again_when_used(gouache_home):
    # A budget of one byte: only what the current run uses is kept.
    engine = Engine(home=gouache_home, packs={"fixtures": fixture_pack}, model_cache_bytes=1)
    first = engine.run(text_to_image("tiny-sd1", steps=2))
    assert first.ok, first.error
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    [sd1] = manager.held()
    assert engine.run(text_to_image("tiny-sd2", steps=2)).ok
    assert manager.held() == [name for name in manager.held() if name != sd1] and manager.evictions == 1
    loads = manager.loads
    # The output cache still holds sd1's handles; using them loads the file again, with the same result.
    again = engine.run(text_to_image("tiny-sd1", steps=2))
    assert again.executed == [] and manager.loads == loads  # nothing needed the model
    reseeded = engine.run(text_to_image("tiny-sd1", steps=2, seed=7), outputs=["sampler"])
    assert reseeded.ok and manager.loads == loads + 1 and sd1 in manager.held()
    fresh = Engine(home=gouache_home, packs={"fixtures": fixture_pack}).run(
        text_to_image("tiny-sd1", steps=2, seed=7), outputs=["sampler"])
    assert torch.equal(reseeded.outputs["sampler"]["latent"]["samples"], fresh.outputs["sampler"]["latent"]["samples"])


def test_what_the_current_run_uses_is_never_let_go(gouache_home):
    engine = Engine(home=gouache_home, packs={"fixtures": fixture_pack}, model_cache_bytes=1)
    workflow = text_to_image("tiny-sd1", steps=2)
    workflow["nodes"]["lora"] = {"type": "LoraLoader", "inputs": {
        "model": {"node": "checkpoint", "output": "model"}, "clip": {"node": "checkpoint", "output": "clip"},
        "name": "tiny-kohya.safetensors", "strength_model": 1.0, "strength_clip": 1.0}}
    for node, name in (("sampler", "model"), ("positive", "clip"), ("negative", "clip")):
        workflow["nodes"][node]["inputs"][name] = {"node": "lora", "output": name}
    result = engine.run(workflow)
    assert result.ok, result.error
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    assert len(manager.held()) == 2 and manager.loads == 2 and manager.evictions == 0
    assert manager.held_bytes > manager.budget_bytes  # over budget, since this run needed both


def test_the_default_model_budget_keeps_models_between_runs(gouache_home):
    engine = Engine(home=gouache_home, packs={"fixtures": fixture_pack})
    assert engine.run(text_to_image("tiny-sd1", steps=2)).ok
    assert engine.run(text_to_image("tiny-sd2", steps=2)).ok
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    assert len(manager.held()) == 2 and manager.evictions == 0
