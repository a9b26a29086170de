"""Sampling in parts: SamplerAdvanced and the split form (RandomNoise, ScheduleSigmas, SamplerSelect, CFGGuider,
SamplerCustom) run the same loop as Sampler; a base run with leftover noise continued without added noise
equals one run of the whole schedule."""

from __future__ import annotations

import pytest
import torch
from pack_support import gouache_home, shared_engine, text_to_image  # noqa: F401
from test_flow_workflows import _checkpoint_graph, flow_engine, flow_home  # noqa: F401

STEPS = 6
CFG = 3.0


def _link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def _advanced(latent: dict, *, start: int, end: int, add_noise: str, leftover: str, sampler: str = "euler",
              steps: int = STEPS) -> dict:
    return {"type": "SamplerAdvanced", "inputs": {
        "model": _link("checkpoint", "model"), "positive": _link("positive", "conditioning"),
        "negative": _link("negative", "conditioning"), "latent": latent, "add_noise": add_noise, "noise_seed": 42,
        "steps": steps, "cfg": CFG, "sampler_name": sampler, "scheduler": "normal", "start_at_step": start,
        "end_at_step": end, "return_with_leftover_noise": leftover}}


def _run(engine, workflow: dict, node: str) -> torch.Tensor:
    result = engine.run(workflow, outputs=[node])
    assert result.ok, result.error
    return result.outputs[node]["latent"]["samples"]


def _full(engine, sampler: str) -> torch.Tensor:
    return _run(engine, text_to_image("tiny-sd1", steps=STEPS, sampler=sampler), "sampler")


def _split(engine, sampler: str, k: int, *, second: str | None = None) -> torch.Tensor:
    workflow = text_to_image("tiny-sd1", steps=STEPS, sampler=sampler)
    nodes = workflow["nodes"]
    nodes["base"] = _advanced(_link("latent", "latent"), start=0, end=k, add_noise="enable", leftover="enable",
                              sampler=sampler)
    nodes["refiner"] = _advanced(_link("base", "latent"), start=k, end=STEPS, add_noise="disable", leftover="disable",
                                 sampler=second or sampler)
    return _run(engine, workflow, "refiner")


def test_the_whole_schedule_through_sampler_advanced_equals_sampler(shared_engine):
    workflow = text_to_image("tiny-sd1", steps=STEPS, sampler="dpmpp_2m")
    workflow["nodes"]["advanced"] = _advanced(_link("latent", "latent"), start=0, end=STEPS, add_noise="enable",
                                              leftover="disable", sampler="dpmpp_2m")
    result = shared_engine.run(workflow, outputs=["sampler", "advanced"])
    assert result.ok, result.error
    assert torch.equal(result.outputs["advanced"]["latent"]["samples"], result.outputs["sampler"]["latent"]["samples"])


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_base_then_refiner_equals_one_run_for_single_step_samplers(shared_engine, sampler):
    # Euler and Heun keep no history across steps: the split takes exactly the steps of the whole run.
    full = _full(shared_engine, sampler)
    for k in (2, 3):
        assert (_split(shared_engine, sampler, k) - full).abs().max().item() <= 1e-5


def test_a_multistep_sampler_restarts_its_history_at_the_split(shared_engine):
    # DPM++ 2M's first step after the split is first order (its history is empty, as in ComfyUI): close to
    # one run, not equal; a split at 0 or at the end is the one run exactly.
    full = _full(shared_engine, "dpmpp_2m")
    split = _split(shared_engine, "dpmpp_2m", 3)
    difference = (split - full).abs().max().item()
    assert 0 < difference < 0.1 * full.abs().max().item()
    assert (_split(shared_engine, "dpmpp_2m", STEPS) - full).abs().max().item() <= 1e-5


def test_a_refiner_may_use_another_sampler(shared_engine):
    # The leftover latent is handed over in the k-diffusion scaling, so a variance-preserving sampler
    # (DDIM) can go on from Euler's: the result stays close to an Euler run of the whole schedule.
    full = _full(shared_engine, "euler")
    mixed = _split(shared_engine, "euler", 4, second="ddim")
    assert (mixed - full).abs().max().item() < 0.1 * full.abs().max().item()


def test_stopping_early_without_leftover_noise_returns_the_clean_estimate(shared_engine):
    # Euler from x (at sigma_2) with the model's noise estimate e: leftover x + (sigma_3 - sigma_2) e,
    # clean x - sigma_2 e (ComfyUI's force_full_denoise: the last step goes to sigma 0).
    workflow = text_to_image("tiny-sd1", steps=STEPS)
    nodes = workflow["nodes"]
    nodes["before"] = _advanced(_link("latent", "latent"), start=0, end=2, add_noise="enable", leftover="enable")
    nodes["clean"] = _advanced(_link("latent", "latent"), start=0, end=3, add_noise="enable", leftover="disable")
    nodes["noisy"] = _advanced(_link("latent", "latent"), start=0, end=3, add_noise="enable", leftover="enable")
    nodes["sigmas"] = {"type": "ScheduleSigmas", "inputs": {
        "model": _link("checkpoint", "model"), "scheduler": "normal", "steps": STEPS, "denoise": 1.0}}
    result = shared_engine.run(workflow, outputs=["before", "clean", "noisy", "sigmas"])
    assert result.ok, result.error
    before, clean, noisy = (result.outputs[name]["latent"]["samples"] for name in ("before", "clean", "noisy"))
    sigma_2, sigma_3 = result.outputs["sigmas"]["sigmas"].sigmas[2:4]
    estimate = (noisy - before) / (sigma_3 - sigma_2)
    assert (clean - (before - sigma_2 * estimate)).abs().max().item() <= 1e-4 * before.abs().max().item()


@pytest.mark.parametrize(("start", "end", "steps", "input_name"), [(4, 2, 6, "start_at_step"), (0, 8, 6, "end_at_step")])
def test_a_window_outside_the_schedule_is_a_validation_problem(shared_engine, start, end, steps, input_name):
    workflow = text_to_image("tiny-sd1", steps=STEPS)
    workflow["nodes"]["advanced"] = _advanced(_link("latent", "latent"), start=start, end=end, add_noise="enable",
                                              leftover="disable", steps=steps)
    valid, problems = shared_engine.check(workflow)
    assert not valid
    assert [(p.node, p.input) for p in problems] == [("advanced", input_name)]


def _custom(workflow: dict, *, sampler: str, denoise: float = 1.0, split: int | None = None) -> None:
    nodes = workflow["nodes"]
    nodes["noise"] = {"type": "RandomNoise", "inputs": {"noise_seed": 42}}
    nodes["sigmas"] = {"type": "ScheduleSigmas", "inputs": {
        "model": _link("checkpoint", "model"), "scheduler": "normal", "steps": STEPS, "denoise": denoise}}
    nodes["choice"] = {"type": "SamplerSelect", "inputs": {"sampler_name": sampler}}
    nodes["guider"] = {"type": "CFGGuider", "inputs": {
        "model": _link("checkpoint", "model"), "positive": _link("positive", "conditioning"),
        "negative": _link("negative", "conditioning"), "cfg": CFG}}
    parts = {"noise": _link("noise", "noise"), "guider": _link("guider", "guider"),
             "sampler": _link("choice", "sampler")}
    if split is None:
        nodes["custom"] = {"type": "SamplerCustom", "inputs": {
            **parts, "sigmas": _link("sigmas", "sigmas"), "latent": _link("latent", "latent")}}
        return
    nodes["split"] = {"type": "SplitSigmas", "inputs": {"sigmas": _link("sigmas", "sigmas"), "step": split}}
    nodes["off"] = {"type": "DisableNoise", "inputs": {}}
    nodes["high"] = {"type": "SamplerCustom", "inputs": {
        **parts, "sigmas": _link("split", "high_sigmas"), "latent": _link("latent", "latent")}}
    nodes["custom"] = {"type": "SamplerCustom", "inputs": {
        **parts, "noise": _link("off", "noise"), "sigmas": _link("split", "low_sigmas"), "latent": _link("high", "latent")}}


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_sampler_custom_equals_sampler_exactly(shared_engine, sampler):
    workflow = text_to_image("tiny-sd1", steps=STEPS, sampler=sampler)
    _custom(workflow, sampler=sampler)
    result = shared_engine.run(workflow, outputs=["sampler", "custom"])
    assert result.ok, result.error
    assert torch.equal(result.outputs["custom"]["latent"]["samples"], result.outputs["sampler"]["latent"]["samples"])


def test_sampler_custom_with_denoise_equals_sampler_with_denoise(shared_engine):
    workflow = text_to_image("tiny-sd1", steps=STEPS)
    workflow["nodes"]["latent"] = {"type": "RandomLatent", "inputs": {"seed": 7, "side": 8}}
    workflow["nodes"]["sampler"]["inputs"]["denoise"] = 0.5
    _custom(workflow, sampler="euler", denoise=0.5)
    result = shared_engine.run(workflow, outputs=["sampler", "custom", "sigmas"])
    assert result.ok, result.error
    assert torch.equal(result.outputs["custom"]["latent"]["samples"], result.outputs["sampler"]["latent"]["samples"])
    sigmas = result.outputs["sigmas"]["sigmas"]
    assert (sigmas.start, sigmas.end, len(sigmas.sigmas)) == (3, STEPS, 4)


def test_split_sigmas_high_then_low_equals_one_run(shared_engine):
    full = _full(shared_engine, "euler")
    workflow = text_to_image("tiny-sd1", steps=STEPS)
    _custom(workflow, sampler="euler", split=2)
    assert (_run(shared_engine, workflow, "custom") - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_flow_models_split_like_the_unet_families(flow_engine, family):
    # FlowMatchEuler keeps no history: base 0..2 with leftover noise, then 2..4 without noise, is one run.
    workflow = _checkpoint_graph(family, cfg=2.0, guidance=None)
    nodes = workflow["nodes"]
    model, positive, negative = nodes["sampler"]["inputs"]["model"], _link("positive", "conditioning"), \
        _link("negative", "conditioning")
    steps = nodes["sampler"]["inputs"]["steps"]
    for name, latent, start, end, add_noise, leftover in (("base", _link("latent", "latent"), 0, 2, "enable", "enable"),
                                                          ("refiner", _link("base", "latent"), 2, steps, "disable",
                                                           "disable")):
        nodes[name] = _advanced(latent, start=start, end=end, add_noise=add_noise, leftover=leftover, steps=steps)
        nodes[name]["inputs"].update(model=model, positive=positive, negative=negative, cfg=2.0)
    result = flow_engine.run(workflow, outputs=["sampler", "refiner"])
    assert result.ok, result.error
    full = result.outputs["sampler"]["latent"]["samples"]
    assert (result.outputs["refiner"]["latent"]["samples"] - full).abs().max().item() <= 1e-5


def test_denoised_output_is_the_last_step_s_clean_estimate(shared_engine):
    workflow = text_to_image("tiny-sd1", steps=STEPS)
    _custom(workflow, sampler="euler", split=3)
    workflow["nodes"]["clean"] = _advanced(_link("latent", "latent"), start=0, end=3, add_noise="enable",
                                           leftover="disable")
    result = shared_engine.run(workflow, outputs=["high", "custom", "clean"])
    assert result.ok, result.error
    # Stopping at step 3 with leftover noise, the estimate is what stopping there fully denoised returns.
    assert torch.equal(result.outputs["high"]["denoised_output"]["samples"], result.outputs["clean"]["latent"]["samples"])
    # Ending at noise 0 (Euler's last step goes to x0), the estimate is the result.
    final = result.outputs["custom"]
    assert (final["denoised_output"]["samples"] - final["latent"]["samples"]).abs().max().item() <= 1e-5
