"""SD 3.x and Flux.1 through workflows, as a user wires them: a full checkpoint, or split files.

Each result equals the diffusers pipeline's on the same tiny weights (the pipelines are run by
``test_flow_families``); here the same numbers must come out of the engine, whichever way the
model's parts were loaded.
"""

from __future__ import annotations

import pytest
import torch
import tiny_flow_models as tiny
from test_flow_families import NEGATIVE, PROMPT, pipeline_latents

from gouache.engine import Engine
from gouache.nodes.loading import load_checkpoint

STEPS, SEED = 4, 42


@pytest.fixture(scope="module")
def flow_home(tmp_path_factory):
    """A home holding tiny SD 3.x and Flux.1 models: single files and split files, in ComfyUI's folders."""
    home = tmp_path_factory.mktemp("flow_home")
    models = {}
    for name, build in (("sd3", tiny.build_sd3_folder), ("flux", tiny.build_flux_folder)):
        loaded = load_checkpoint(build(home / "build" / name))
        tiny.write_checkpoint(loaded, home / "models" / "checkpoints" / f"tiny-{name}.safetensors")
        files = tiny.write_split(loaded, home / "models")
        models[name] = (loaded, files)
    return home, models


@pytest.fixture(scope="module")
def flow_engine(flow_home):
    return Engine(home=flow_home[0])


def _graph(model: dict, clip: dict, vae: dict, *, cfg: float, guidance: float | None) -> dict:
    link = lambda node, output: {"node": node, "output": output}  # noqa: E731
    nodes = {
        "positive": {"type": "TextEncode", "inputs": {"clip": clip, "text": PROMPT}},
        "negative": {"type": "TextEncode", "inputs": {"clip": clip, "text": NEGATIVE}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": 64, "height": 64}},
        "sampler": {"type": "Sampler", "inputs": {
            "model": model, "positive": link("positive", "conditioning"), "negative": link("negative", "conditioning"),
            "latent": link("latent", "latent"), "seed": SEED, "steps": STEPS, "cfg": cfg}},
        "decode": {"type": "VAEDecode", "inputs": {"latent": link("sampler", "latent"), "vae": vae}},
    }
    if guidance is not None:
        nodes["guided"] = {"type": "FluxGuidance", "inputs": {"conditioning": link("positive", "conditioning"),
                                                              "guidance": guidance}}
        nodes["sampler"]["inputs"]["positive"] = link("guided", "conditioning")
    return {"format": "gouache/1", "nodes": nodes}


def _checkpoint_graph(name: str, **settings) -> dict:
    graph = _graph({"node": "ckpt", "output": "model"}, {"node": "ckpt", "output": "clip"},
                   {"node": "ckpt", "output": "vae"}, **settings)
    graph["nodes"]["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": f"tiny-{name}.safetensors"}}
    return graph


def _split_graph(name: str, files: dict, **settings) -> dict:
    graph = _graph({"node": "unet", "output": "model"}, {"node": "clips", "output": "clip"},
                   {"node": "vae", "output": "vae"}, **settings)
    encoders = [files[slot].name for slot in ("text_encoder", "text_encoder_2", "text_encoder_3") if slot in files]
    graph["nodes"].update({
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": files["diffusion_model"].name}},
        # Given in reverse: files are matched to encoders by what they hold, not by their order.
        "clips": {"type": "TextEncoderLoader", "inputs": {
            "family": name, **{f"text_encoder_{i + 1}": file for i, file in enumerate(reversed(encoders))}}},
        "vae": {"type": "VAELoader", "inputs": {"name": files["vae"].name, "family": name}},
    })
    return graph


def _latents(engine: Engine, graph: dict) -> torch.Tensor:
    result = engine.run(graph, outputs=["decode"])
    assert result.ok, result.error
    assert result.outputs["decode"]["image"].shape == (1, 64, 64, 3)
    return result.outputs["sampler"]["latent"]["samples"]


@pytest.mark.parametrize("name, cfg, guidance", [("sd3", 2.5, None), ("flux", 1.0, 2.0)])
def test_a_checkpoint_and_its_split_files_render_what_the_pipeline_does(flow_engine, flow_home, name, cfg, guidance):
    loaded, files = flow_home[1][name]
    expected = pipeline_latents(loaded, cfg=cfg, steps=STEPS, seed=SEED, guidance=guidance or 3.5)
    from_checkpoint = _latents(flow_engine, _checkpoint_graph(name, cfg=cfg, guidance=guidance))
    from_split = _latents(flow_engine, _split_graph(name, files, cfg=cfg, guidance=guidance))
    torch.testing.assert_close(from_checkpoint, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(from_split, expected, atol=1e-4, rtol=0)


def test_the_wrong_number_of_text_encoder_files_is_refused_before_anything_runs(flow_engine, flow_home):
    _, files = flow_home[1]["sd3"]
    graph = _split_graph("sd3", files, cfg=2.5, guidance=None)
    del graph["nodes"]["clips"]["inputs"]["text_encoder_3"]
    valid, problems = flow_engine.check(graph)
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("clips", "text_encoder_3", "wrong_count")]


def test_flow_shift_changes_the_result(flow_engine, flow_home):
    graph = _checkpoint_graph("sd3", cfg=2.5, guidance=None)
    plain = _latents(flow_engine, graph)
    graph["nodes"]["shift"] = {"type": "FlowShift", "inputs": {"model": {"node": "ckpt", "output": "model"},
                                                               "shift": 6.0}}
    graph["nodes"]["sampler"]["inputs"]["model"] = {"node": "shift", "output": "model"}
    assert not torch.allclose(_latents(flow_engine, graph), plain)


def test_gouache_models_names_the_family_of_flow_files(flow_engine):
    found = {kind: {entry.name: entry.info for entry in flow_engine.models.list(kind)}
             for kind in ("checkpoints", "diffusion_models")}
    assert found["checkpoints"]["tiny-flux.safetensors"]["family"] == "flux"
    assert found["checkpoints"]["tiny-sd3.safetensors"]["family"] == "sd3"
    assert {info["family"] for info in found["diffusion_models"].values()} == {"sd3", "flux"}
