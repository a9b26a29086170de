"""SD 3.x and Flux.1 through workflows, as a user wires them: a full checkpoint, or split files.

Each result equals the diffusers pipeline's on the same tiny weights (the pipelines are run by
``test_flow_families``); here the same numbers must come out of the engine, whichever way the
model's parts were loaded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import tiny_flow_models as tiny
from test_comfy_sampling import K
from test_flow_families import NEGATIVE, PROMPT, pipeline_latents

from gouache.engine import Engine
from gouache.nodes import flow_prompt
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


# -- ComfyUI's convention ---------------------------------------------------------------------------
# The references below are written from ComfyUI's formulas: ModelSamplingDiscreteFlow (SD 3.x: shift 3,
# timestep 1000 * sigma, table sigma(i / 1000)), ModelSamplingFlux (Flux.1 dev: e^mu / (e^mu + 1/t - 1),
# mu 1.15, timestep sigma, table of 10,000), and CONST (x0 = x - sigma * v; noised = sigma * n + (1 - sigma) * x0).


def _discrete_flow(t: np.ndarray, shift: float) -> np.ndarray:
    return shift * t / (1 + (shift - 1) * t)


def _flux_shift(t: np.ndarray, mu: float) -> np.ndarray:
    return math.exp(mu) / (math.exp(mu) + 1 / t - 1)


def _expected_levels(name: str, schedule: str, steps: int, shift: float | None = None) -> list[float]:
    """ComfyUI's schedules on the flow tables, in float64 from the formulas."""
    if name == "sd3":
        count, scale, curve = 1000, 1000.0, lambda t: _discrete_flow(t, 3.0 if shift is None else shift)
    else:
        count, scale, curve = 10000, 1.0, lambda t: _flux_shift(t, 1.15 if shift is None else math.log(shift))
    table = curve(np.arange(1, count + 1) / count)
    low, high = table[0], table[-1]
    if schedule == "normal":
        levels = curve(np.linspace(high * scale, low * scale, steps) / scale)
    elif schedule == "sgm_uniform":
        levels = curve(np.linspace(high * scale, low * scale, steps + 1)[:-1] / scale)
    elif schedule == "simple":
        levels = np.array([table[-(1 + int(i * count / steps))] for i in range(steps)])
    elif schedule == "karras":
        ramp = np.linspace(0, 1, steps)
        levels = (high ** (1 / 7) + ramp * (low ** (1 / 7) - high ** (1 / 7))) ** 7
    elif schedule == "exponential":
        levels = np.exp(np.linspace(math.log(high), math.log(low), steps))
    else:
        raise AssertionError(schedule)
    return [float(level) for level in levels] + [0.0]


def _schedule_graph(name: str, schedule: str, steps: int, shift: float | None = None) -> dict:
    model = {"node": "ckpt", "output": "model"}
    nodes = {"ckpt": {"type": "CheckpointLoader", "inputs": {"name": f"tiny-{name}.safetensors"}}}
    if shift is not None:
        nodes["shift"] = {"type": "FlowShift", "inputs": {"model": model, "shift": shift}}
        model = {"node": "shift", "output": "model"}
    nodes["sigmas"] = {"type": "ScheduleSigmas", "inputs": {"model": model, "scheduler": schedule, "steps": steps,
                                                            "convention": "comfyui"}}
    return {"format": "gouache/1", "nodes": nodes}


@pytest.mark.parametrize("name", ["sd3", "flux"])
@pytest.mark.parametrize("schedule", ["normal", "sgm_uniform", "simple", "karras", "exponential"])
def test_comfyui_schedules_on_flow_models_follow_comfyuis_tables(flow_engine, name, schedule):
    result = flow_engine.run(_schedule_graph(name, schedule, 6), outputs=["sigmas"])
    assert result.ok, result.error
    got = result.outputs["sigmas"]["sigmas"].sigmas
    np.testing.assert_allclose(got, _expected_levels(name, schedule, 6), atol=2e-6, rtol=0)


@pytest.mark.parametrize("name, shift", [("sd3", 6.0), ("flux", 2.0)])
def test_flow_shift_sets_comfyuis_shift(flow_engine, name, shift):
    """FlowShift is ComfyUI's ModelSamplingSD3 shift, and for Flux.1 dev e^mu of ModelSamplingFlux."""
    result = flow_engine.run(_schedule_graph(name, "normal", 5, shift), outputs=["sigmas"])
    assert result.ok, result.error
    np.testing.assert_allclose(result.outputs["sigmas"]["sigmas"].sigmas, _expected_levels(name, "normal", 5, shift),
                               atol=2e-6, rtol=0)


def _flow_denoiser(loaded, cfg: float, guidance: float):
    """ComfyUI's CONST denoiser over the tiny transformer, for k-diffusion (one sigma per batch item)."""
    family = loaded.family.name
    with torch.no_grad():
        conds = [flow_prompt.encode(loaded, text, "cpu") for text in (PROMPT, NEGATIVE)]

    def velocity(x: torch.Tensor, sigma: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        if family == "sd3":
            return loaded.denoiser(hidden_states=x, timestep=sigma.reshape(1) * 1000, encoder_hidden_states=embeds,
                                   pooled_projections=pooled, return_dict=False)[0]
        rows, cols = x.shape[-2] // 2, x.shape[-1] // 2
        ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(rows).float(), torch.arange(cols).float(),
                                         indexing="ij"), dim=-1).reshape(-1, 3)
        tokens = x.reshape(1, 16, rows, 2, cols, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, rows * cols, 64)
        out = loaded.denoiser(hidden_states=tokens, timestep=sigma.reshape(1), encoder_hidden_states=embeds,
                              pooled_projections=pooled, img_ids=ids, txt_ids=torch.zeros(embeds.shape[1], 3),
                              guidance=torch.full([1], guidance), return_dict=False)[0]
        return out.reshape(1, rows, cols, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(x.shape)

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v = velocity(x, sigma, *conds[0])
            if cfg != 1.0:
                uncond = velocity(x, sigma, *conds[1])
                v = uncond + cfg * (v - uncond)
        return x - sigma.reshape(-1, 1, 1, 1) * v

    return model


@pytest.mark.parametrize("name, cfg, guidance, sampler, schedule", [
    ("sd3", 2.5, None, "euler", "normal"), ("sd3", 2.5, None, "dpmpp_2m", "sgm_uniform"),
    ("flux", 1.0, 2.0, "euler", "simple"), ("flux", 1.0, 2.0, "dpmpp_2m", "normal")])
def test_comfyui_convention_on_flow_models_equals_k_diffusion(flow_engine, flow_home, name, cfg, guidance, sampler,
                                                               schedule):
    loaded, _ = flow_home[1][name]
    graph = _checkpoint_graph(name, cfg=cfg, guidance=guidance)
    graph["nodes"]["sampler"]["inputs"].update(sampler_name=sampler, scheduler=schedule, convention="comfyui")
    ours = _latents(flow_engine, graph)

    # ComfyUI's levels in float32, as ScheduleSigmas gives them (held to the formulas above)
    levels = flow_engine.run(_schedule_graph(name, schedule, STEPS), outputs=["sigmas"]).outputs["sigmas"]["sigmas"]
    sigmas = torch.tensor(levels.sigmas, dtype=torch.float32)
    np.testing.assert_allclose(sigmas, _expected_levels(name, schedule, STEPS), atol=2e-6, rtol=0)
    noise = torch.randn((1, 16, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    x = sigmas[0] * noise + (1 - sigmas[0]) * torch.zeros_like(noise)  # ComfyUI's CONST noise scaling
    denoise = _flow_denoiser(loaded, cfg, guidance or 3.5)
    expected = getattr(K, f"sample_{sampler}")(denoise, x, sigmas, disable=True)
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() <= 1e-5
    if (sampler, schedule) == ("euler", "normal") or name == "flux":
        gouache_run = _latents(flow_engine, _checkpoint_graph(name, cfg=cfg, guidance=guidance))
        if name == "sd3":  # diffusers spaces SD 3's steps as ComfyUI's normal schedule does
            assert (gouache_run - expected).abs().max().item() <= 1e-5
        else:  # the pipeline shifts Flux.1 dev for the image's size, ComfyUI by its fixed mu
            assert (gouache_run - expected).abs().max().item() > 1e-3


def test_comfyui_convention_refuses_samplers_it_does_not_follow_on_flow_models(flow_engine):
    graph = _checkpoint_graph("sd3", cfg=2.5, guidance=None)
    graph["nodes"]["sampler"]["inputs"].update(sampler_name="euler_ancestral", convention="comfyui")
    result = flow_engine.run(graph, outputs=["sampler"])
    assert not result.ok
    assert "euler_ancestral" in str(result.error) and "dpmpp_2m" in str(result.error)


def test_comfyui_convention_on_a_flow_model_split_in_two_takes_the_steps_of_one_run(flow_engine):
    """KSamplerAdvanced's hand-over: the first part's leftover latent is divided by 1 - sigma (ComfyUI's
    inverse noise scaling) and the second part's noising without noise multiplies it back."""
    whole = _checkpoint_graph("sd3", cfg=2.5, guidance=None)
    whole["nodes"]["sampler"]["inputs"].update(sampler_name="euler", convention="comfyui")
    expected = _latents(flow_engine, whole)

    split = _checkpoint_graph("sd3", cfg=2.5, guidance=None)
    first = split["nodes"].pop("sampler")["inputs"]
    common = {key: first[key] for key in ("model", "positive", "negative", "steps", "cfg")}
    common.update(noise_seed=SEED, sampler_name="euler", scheduler="normal", convention="comfyui")
    split["nodes"]["first"] = {"type": "SamplerAdvanced", "inputs": {
        **common, "latent": first["latent"], "add_noise": "enable", "start_at_step": 0, "end_at_step": 2,
        "return_with_leftover_noise": "enable"}}
    split["nodes"]["sampler"] = {"type": "SamplerAdvanced", "inputs": {
        **common, "latent": {"node": "first", "output": "latent"}, "add_noise": "disable", "start_at_step": 2,
        "end_at_step": STEPS, "return_with_leftover_noise": "disable"}}
    leftover = flow_engine.run(split, outputs=["first"]).outputs["first"]["latent"]["samples"]
    assert leftover.abs().max() > 1.0  # still noisy, in ComfyUI's scaling
    torch.testing.assert_close(_latents(flow_engine, split), expected, atol=1e-5, rtol=0)


def test_comfyuis_table_for_flux_schnell_is_the_unshifted_flow_at_timestep_sigma(tmp_path):
    """ComfyUI samples schnell (no guidance layer) on ModelSamplingDiscreteFlow with shift 1 and multiplier 1."""
    from gouache.nodes.comfy_sigmas import comfy_table, schedule_sigmas

    loaded = load_checkpoint(tiny.build_flux_folder(tmp_path / "schnell", guidance=False))
    table = comfy_table(loaded)
    assert float(table.timestep(torch.tensor(0.25))) == 0.25
    expected = [float(level) for level in np.linspace(1.0, 0.001, 4)] + [0.0]
    np.testing.assert_allclose(schedule_sigmas(table, "normal", 4), expected, atol=1e-6, rtol=0)
    # normal ends at the sigma of the timestep of the table's smallest sigma: shifted twice, as ComfyUI's
    shifted = schedule_sigmas(comfy_table(loaded, {"shift": 3.0}), "normal", 2)
    assert shifted[1] == pytest.approx(_discrete_flow(_discrete_flow(np.float64(0.001), 3.0), 3.0), abs=1e-6)
