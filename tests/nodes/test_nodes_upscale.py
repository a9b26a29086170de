"""Model upscaling through spandrel: tiles with overlap equal the whole image, sizes are as asked."""

from __future__ import annotations

import torch
from pack_support import gouache_home, shared_engine  # noqa: F401


def _workflow(tile_size, overlap=8, width=40, height=24):
    return {"format": "gouache/1", "nodes": {
        "load": {"type": "LoadImage", "inputs": {"image": "example.png"}},
        "small": {"type": "ImageScale", "inputs": {"image": {"node": "load", "output": "image"},
                                                   "method": "area", "width": width, "height": height}},
        "upscaler": {"type": "UpscaleModelLoader", "inputs": {"name": "tiny-2x.safetensors"}},
        "upscale": {"type": "UpscaleWithModel", "inputs": {"image": {"node": "small", "output": "image"},
                                                           "upscale_model": {"node": "upscaler",
                                                                             "output": "upscale_model"},
                                                           "tile_size": tile_size, "overlap": overlap}},
    }}


def _upscaled(engine, **kwargs):
    result = engine.run(_workflow(**kwargs), outputs=["upscale"])
    assert result.ok, result.error
    return result.outputs["upscale"]["image"]


def test_tiled_equals_untiled_and_size_is_scaled(shared_engine):
    whole = _upscaled(shared_engine, tile_size=0)
    tiled = _upscaled(shared_engine, tile_size=16, overlap=8)
    assert whole.shape == tiled.shape == (1, 48, 80, 3)
    assert (whole - tiled).abs().max().item() < 1e-5


def test_upscaler_loader_rejects_a_file_that_is_no_model(shared_engine, gouache_home):
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(2)}, str(gouache_home / "models/upscale_models/broken.safetensors"))
    workflow = _workflow(tile_size=0)
    workflow["nodes"]["upscaler"]["inputs"]["name"] = "broken.safetensors"
    result = shared_engine.run(workflow, outputs=["upscale"])
    assert result.status == "failed" and result.error.node == "upscaler"
    assert (result.error.input, result.error.code) == ("name", "unreadable")
    assert result.error.message.startswith("broken.safetensors: spandrel cannot load it")


def test_an_interrupt_stops_a_whole_image_upscale_inside_the_model(shared_engine):
    from pack_support import run_interrupted_at

    # A size no other test asks for, so the node is not already in the shared engine's cache.
    workflow = _workflow(tile_size=0, width=36, height=20)
    result = run_interrupted_at(shared_engine, workflow, "upscale", ["upscale"])
    assert result.status == "interrupted" and "upscale" not in result.executed
    again = shared_engine.run(workflow, outputs=["upscale"])  # the hooks are gone: it runs to the end
    assert again.ok and again.executed == ["upscale"]
    assert again.outputs["upscale"]["image"].shape == (1, 40, 72, 3)
