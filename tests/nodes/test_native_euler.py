"""gouache's native Euler sampler gives diffusers' ``EulerDiscreteScheduler``'s numbers bit for bit: schedules,
scaled inputs, steps (with churn), windows and noising, for every config it accepts; it refuses the rest, and
importing it pulls in neither diffusers nor scipy."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from gouache.nodes.native import UnsupportedConfig
from gouache.nodes.native.euler import DEFAULTS, NativeEulerDiscrete, covers
from gouache.nodes.schedulers import SCHEDULES, make_scheduler, step_kwargs

NODES = Path(__file__).resolve().parents[2] / "nodes"
STORED = {
    "tiny": json.loads((NODES / "embedded/weights/gouache-tiny/scheduler/scheduler_config.json").read_text()),
    "sd1": json.loads((NODES / "configs/sd1/scheduler/scheduler_config.json").read_text()),
    "sd2": json.loads((NODES / "configs/sd2/scheduler/scheduler_config.json").read_text()),  # v-prediction
    "sdxl": json.loads((NODES / "configs/sdxl/scheduler/scheduler_config.json").read_text()),
}
SD1 = STORED["sd1"]
CONFIGS = {
    **STORED,
    "linspace": {**SD1, "timestep_spacing": "linspace", "steps_offset": 0},
    "trailing": {**SD1, "timestep_spacing": "trailing"},
    "karras": {**SD1, "use_karras_sigmas": True},
    "karras_linspace": {**SD1, "use_karras_sigmas": True, "timestep_spacing": "linspace"},
    "karras_trailing_v": {**STORED["sd2"], "use_karras_sigmas": True, "timestep_spacing": "trailing"},
    "karras_bounds": {**SD1, "use_karras_sigmas": True, "sigma_min": 0.1, "sigma_max": 10.0},
    "karras_zero_min": {**SD1, "use_karras_sigmas": True, "sigma_min": 0},
    "zero_snr_v": {**STORED["sd2"], "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
    "zero_snr_karras": {**SD1, "rescale_betas_zero_snr": True, "use_karras_sigmas": True},
    "sigma_min_final": {**SD1, "final_sigmas_type": "sigma_min"},
    "sigma_min_final_karras": {**SD1, "final_sigmas_type": "sigma_min", "use_karras_sigmas": True},
    "linear_betas": {"beta_schedule": "linear", "num_train_timesteps": 1000},
    "cosine_betas": {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "leading", "steps_offset": 1},
    "trained_betas": {"trained_betas": [0.0001 + 0.0002 * i for i in range(100)], "num_train_timesteps": 100,
                      "beta_schedule": "unknown"},
    "sample_prediction": {**SD1, "prediction_type": "sample"},
    "short_training": {**SD1, "num_train_timesteps": 500, "timestep_spacing": "trailing"},
}
STEP_COUNTS = (1, 2, 3, 20, 50)
UNSUPPORTED = {
    "use_exponential_sigmas": True,
    "use_beta_sigmas": True,
    "interpolation_type": "log_linear",
    "timestep_type": "continuous",
    "beta_schedule": "sigmoid",
    "prediction_type": "flow_prediction",
    "timestep_spacing": "uniform",
    "final_sigmas_type": "last",
}


def fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for the UNet, depending on the input and the timestep."""
    return 0.1 * x + t / 1000


def _pair(config: dict, steps: int, device: str = "cpu") -> tuple[EulerDiscreteScheduler, NativeEulerDiscrete]:
    reference, native = EulerDiscreteScheduler.from_config(config), NativeEulerDiscrete.from_config(config)
    reference.set_timesteps(steps, device=device)
    native.set_timesteps(steps, device=device)
    return reference, native


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.device == b.device
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # bit for bit (a zero sigma_min gives NaN)


def _latent(seed: int, device: str = "cpu") -> torch.Tensor:
    return torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(seed)).to(device)


def _run(scheduler, latents: torch.Tensor, timesteps: torch.Tensor, **step: object) -> list[torch.Tensor]:
    """Every scaled model input, step output and x0 estimate along ``timesteps``."""
    seen = []
    for t in timesteps:
        scaled = scheduler.scale_model_input(latents, t)
        output = scheduler.step(fake_model(scaled, t), t, latents, **step)
        latents = output.prev_sample
        seen += [scaled, output.prev_sample, output.pred_original_sample]
    return seen


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_schedule_and_loop_match_diffusers(name: str, steps: int) -> None:
    reference, native = _pair(CONFIGS[name], steps)
    for attribute in ("timesteps", "sigmas", "init_noise_sigma", "alphas_cumprod", "betas"):
        _same(getattr(native, attribute), getattr(reference, attribute))
    assert len(native.timesteps) == steps and native.order == reference.order == 1
    start = _latent(0) * reference.init_noise_sigma
    for mine, theirs in zip(_run(native, start, native.timesteps), _run(reference, start, reference.timesteps),
                            strict=True):
        _same(mine, theirs)
    for key, value in dict(reference.config).items():  # the config reads the same (diffusers' own notes aside)
        if key not in ("_use_default_values", "_diffusers_version"):
            assert native.config[key] == value, key


@pytest.mark.parametrize("name", ["tiny", "sd2", "karras", "zero_snr_v", "sigma_min_final", "trailing"])
@pytest.mark.parametrize("start", [1, 7, 19])
def test_windows_noising_and_masks_match_diffusers(name: str, start: int) -> None:
    """A window begun at ``start`` as the sampling loop runs it: noised with add_noise, then inpainting's re-noising
    of the kept region after each step (add_noise once the step index is set)."""
    reference, native = _pair(CONFIGS[name], 20)
    clean, noise = _latent(1), _latent(2)
    outputs = []
    for scheduler in (reference, native):
        timesteps = scheduler.timesteps[start:]
        scheduler.set_begin_index(start)
        latents = scheduler.add_noise(clean, noise, timesteps[:1].repeat(clean.shape[0]))
        seen = [latents]
        for index, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(latents, t)
            latents = scheduler.step(fake_model(scaled, t), t, latents, return_dict=False)[0]
            seen += [scaled, latents]
            if index < len(timesteps) - 1:
                seen.append(scheduler.add_noise(clean, noise, timesteps[index + 1:index + 2]))
        outputs.append(seen)
    for theirs, mine in zip(*outputs, strict=True):
        _same(mine, theirs)


@pytest.mark.parametrize("name", ["tiny", "sd2", "linspace"])
def test_noising_by_timestep_without_begin_index_matches_diffusers(name: str) -> None:
    """img2img without set_begin_index: the first step finds its timestep in the schedule (second of repeats)."""
    for steps in (1, 20, 50):
        reference, native = _pair(CONFIGS[name], steps)
        clean, noise = _latent(3), _latent(4)
        for start in {0, steps // 2, steps - 1}:
            timesteps = native.timesteps[start:start + 1].repeat(clean.shape[0])
            _same(native.add_noise(clean, noise, timesteps), reference.add_noise(clean, noise, timesteps))
        for mine, theirs in zip(_run(native, clean, native.timesteps[steps // 2:]),
                                _run(reference, clean, reference.timesteps[steps // 2:]), strict=True):
            _same(mine, theirs)
        assert native.step_index == reference.step_index


@pytest.mark.parametrize("name", ["tiny", "sd2", "karras", "sample_prediction"])
def test_churn_draws_the_same_noise_as_diffusers(name: str) -> None:
    reference, native = _pair(CONFIGS[name], 20)
    start = _latent(5) * reference.init_noise_sigma
    churn = {"s_churn": 4.0, "s_tmin": 0.5, "s_tmax": 8.0, "s_noise": 1.003}
    mine = _run(native, start, native.timesteps, generator=torch.Generator().manual_seed(7), **churn)
    theirs = _run(reference, start, reference.timesteps, generator=torch.Generator().manual_seed(7), **churn)
    for a, b in zip(mine, theirs, strict=True):
        _same(a, b)
    plain = _pair(CONFIGS[name], 20)[1]
    assert not torch.equal(mine[-2], _run(plain, start, plain.timesteps)[-2])  # the churn did act


def test_steps_return_what_the_sampling_loop_reads() -> None:
    native = NativeEulerDiscrete.from_config(STORED["tiny"])
    native.set_timesteps(4)
    assert "generator" in step_kwargs(native, torch.Generator())
    assert list(inspect.signature(native.step).parameters) == list(inspect.signature(
        EulerDiscreteScheduler.step).parameters)[1:]
    x = _latent(6)
    t = native.timesteps[0]
    as_output = native.step(fake_model(x, t), t, x)
    native.set_timesteps(4)
    as_tuple = native.step(fake_model(x, t), t, x, return_dict=False)
    _same(as_output.prev_sample, as_tuple[0])
    _same(as_output.pred_original_sample, as_tuple[1])
    assert native.config.prediction_type == "epsilon" and native.config["_class_name"] == "EulerDiscreteScheduler"
    with pytest.raises(ValueError, match="timesteps"):
        native.step(x, 3, x)
    half = native.step(x.half(), t, x).prev_sample
    assert half.dtype == torch.float16


def test_parameters_are_diffusers_euler_parameters() -> None:
    """Every parameter of the installed diffusers' Euler is implemented or refused: a new one fails here."""
    params = inspect.signature(EulerDiscreteScheduler.__init__).parameters
    assert {name: param.default for name, param in params.items() if name != "self"} == DEFAULTS


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("model", STORED)
def test_make_scheduler_configs_are_covered_exactly_when_implemented(model: str, schedule: str) -> None:
    sched = make_scheduler(STORED[model], "euler", schedule, 0)
    config = dict(sched.config)
    assert covers(config) is (schedule not in ("exponential", "beta"))
    if not covers(config):
        with pytest.raises(UnsupportedConfig, match=f"use_{schedule}_sigmas=True"):
            NativeEulerDiscrete.from_config(config)
        return
    for steps in (1, 20):
        native = NativeEulerDiscrete.from_config(config)
        native.set_timesteps(steps)
        sched.set_timesteps(steps)
        _same(native.timesteps, sched.timesteps)
        _same(native.sigmas, sched.sigmas)
        _same(native.init_noise_sigma, sched.init_noise_sigma)
        start = _latent(8) * sched.init_noise_sigma
        for mine, theirs in zip(_run(native, start, native.timesteps), _run(sched, start, sched.timesteps),
                                strict=True):
            _same(mine, theirs)


@pytest.mark.parametrize(("key", "value"), UNSUPPORTED.items())
def test_unimplemented_configs_are_refused_by_name(key: str, value: object) -> None:
    config = {**SD1, key: value}
    assert not covers(config)
    with pytest.raises(UnsupportedConfig, match=f"{key}={value!r}"):
        NativeEulerDiscrete.from_config(config)


@pytest.mark.parametrize("config", [{"trained_betas": [0.1] * 10}, {"trained_betas": "0.1"},
                                    {"sigma_min": "small", "use_karras_sigmas": True}, {"steps_offset": 0.5},
                                    {"num_train_timesteps": None}])
def test_malformed_configs_are_refused(config: dict) -> None:
    assert not covers({**SD1, **config})


def test_import_pulls_in_neither_diffusers_nor_scipy() -> None:
    code = ("import sys, gouache.nodes.native.euler as e; e.NativeEulerDiscrete.from_config({}).set_timesteps(3); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'scipy', 'transformers'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"
