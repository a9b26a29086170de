"""ComfyUI's convention (issue 15, "same seed, same picture"): its initial noise, sigma schedules and samplers.

The reference is the ``k-diffusion`` package (ComfyUI's samplers are k-diffusion's): each of our samplers
runs on the same sigmas, noise and denoiser as its ``k_diffusion.sampling.sample_*``; UniPC, which
k-diffusion lacks, against diffusers' ``UniPCMultistepScheduler``. The schedules k-diffusion has
(karras, exponential, and the discrete model's own spacing, ComfyUI's ``normal``) come from it; the
others are written here from ComfyUI's formulas. End to end, a ComfyUI API workflow run on gouache-tiny
gives the latent that k-diffusion's sampler gives over the same UNet in a ``CompVisDenoiser``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pack_support import gouache_home, shared_engine, text_to_image  # noqa: F401
from test_controlnet import _workflow as _controlnet_workflow
from test_controlnet import engine as controlnet_engine  # noqa: F401
from test_controlnet import home  # noqa: F401

from gouache.engine import Engine
from gouache.nodes import kdiffusion_samplers as ours
from gouache.nodes.comfy_sampling import comfy_noise
from gouache.nodes.comfy_sigmas import DiscreteSigmas, basic_scheduler_sigmas, ksampler_sigmas, schedule_sigmas, window

FILES = Path(__file__).parent / "comfy_files"
SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
SEED = 1234
TABLE = DiscreteSigmas.from_config(SD)
# torchsde warns when a query sits at its interval's (rounded) end, as k-diffusion's own tree does here
pytestmark = pytest.mark.filterwarnings("ignore:Should have t:UserWarning")


def _k_diffusion_module(name: str):
    """A module of the k-diffusion package. Its ``__init__`` imports the package's training and evaluation
    stack (CLIP, clean-fid), and CLIP needs setuptools' ``pkg_resources``, gone from setuptools 81; the
    samplers need none of it, so the package is entered without running its ``__init__``."""
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
    return importlib.import_module(f"k_diffusion.{name}")


K = _k_diffusion_module("sampling")
WEIGHTS = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 0.3


def toy(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A nonlinear denoiser; k-diffusion passes one sigma per batch item, ours one for the batch."""
    s = torch.as_tensor(sigma).reshape(-1)[0]
    return torch.tanh(torch.einsum("ij,bjhw->bihw", WEIGHTS, x)) / (1 + s) + x * 0.1 / (1 + s ** 2)


def _levels(schedule: str = "karras", steps: int = 8) -> torch.Tensor:
    return torch.tensor(schedule_sigmas(TABLE, schedule, steps))


def _start(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sigmas[0]


def _ours(name: str, x: torch.Tensor, sigmas: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    return ours.SAMPLERS[name](toy, x.clone(), sigmas, seed, lambda *step: None)


def _close(got: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-5) -> None:
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= tolerance


@pytest.mark.parametrize("schedule", ["karras", "normal"])
@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "lms", "dpmpp_2m"])
def test_each_deterministic_sampler_takes_k_diffusions_steps(name, schedule):
    sigmas = _levels(schedule)
    x = _start(sigmas)
    expected = getattr(K, f"sample_{name}")(toy, x.clone(), sigmas, disable=True)
    _close(_ours(name, x, sigmas), expected)


def test_ddim_is_euler_as_comfyui_runs_it():
    sigmas = _levels("normal")
    x = _start(sigmas)
    _close(_ours("ddim", x, sigmas), K.sample_euler(toy, x.clone(), sigmas, disable=True))


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral"])
def test_ancestral_samplers_draw_their_step_noise_from_a_generator_seeded_with_the_seed(name):
    # ComfyUI seeds a generator on the latent's device with the seed; on the CPU that is the stream
    # k-diffusion's default noise sampler (torch.randn_like) reads after torch.manual_seed(seed).
    sigmas = _levels()
    x = _start(sigmas)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        expected = getattr(K, f"sample_{name}")(toy, x.clone(), sigmas, disable=True)
    _close(_ours(name, x, sigmas), expected)
    assert (_ours(name, x, sigmas, seed=SEED + 1) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "dpmpp_sde", "dpmpp_3m_sde"])
def test_sde_samplers_read_a_brownian_tree_with_the_seed_as_its_entropy(name):
    sigmas = _levels()
    x = _start(sigmas)
    tree = K.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=SEED)
    expected = getattr(K, f"sample_{name}")(toy, x.clone(), sigmas, disable=True, noise_sampler=tree)
    _close(_ours(name, x, sigmas), expected)
    assert (_ours(name, x, sigmas, seed=SEED + 1) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_takes_the_steps_of_diffusers_unipc(variant):
    # k-diffusion has no UniPC; diffusers' UniPCMultistepScheduler is the same method (order 3, lower
    # orders first and last, corrector after every step but the last) in variance-preserving latents.
    import diffusers

    scheduler = diffusers.UniPCMultistepScheduler(**SD, solver_order=3, solver_type=variant, predict_x0=True,
                                                  lower_order_final=True, final_sigmas_type="sigma_min")
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.float()
    x = _start(sigmas)
    latents = x / (1 + sigmas[0] ** 2) ** 0.5
    for index, t in enumerate(scheduler.timesteps):
        scaled = latents * (1 + sigmas[index] ** 2) ** 0.5
        eps = (scaled - toy(scaled, sigmas[index])) / sigmas[index]
        latents = scheduler.step(eps, t, latents).prev_sample
    expected = latents * (1 + sigmas[-1] ** 2) ** 0.5
    _close(_ours("unipc" if variant == "bh1" else "unipc_bh2", x, sigmas), expected)


def test_every_sampler_reports_each_step_with_its_estimate():
    sigmas = _levels(steps=5)
    for name, sampler in ours.SAMPLERS.items():
        seen = []
        sampler(toy, _start(sigmas), sigmas, SEED, lambda step, x, x0: seen.append((step, x0.shape)))
        assert [step for step, _ in seen] == list(range(5)), name


def test_the_schedule_names_of_validation_are_the_samplers_and_schedules_that_exist():
    from gouache.nodes.comfy_sigmas import SCHEDULES
    from gouache.nodes.schedulers import COMFY_SAMPLERS, COMFY_SCHEDULES

    assert set(COMFY_SAMPLERS) == set(ours.SAMPLERS) and COMFY_SCHEDULES == SCHEDULES


# --- sigmas ---------------------------------------------------------------------------------------------


def test_the_table_is_sd_s_discrete_sigmas_computed_in_float64():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1 - betas)
    expected = np.sqrt((1 - alphas_cumprod) / alphas_cumprod).astype(np.float32)
    np.testing.assert_allclose(TABLE.sigmas.numpy(), expected, rtol=1e-6)
    assert TABLE.timestep(torch.tensor(TABLE.sigma_max)) == 999 and TABLE.timestep(torch.tensor(0.5)) == int(
        np.abs(np.log(expected) - math.log(0.5)).argmin())


@pytest.mark.parametrize("steps", [1, 4, 9, 30])
def test_karras_and_exponential_are_k_diffusions(steps):
    for schedule, expected in (("karras", K.get_sigmas_karras), ("exponential", K.get_sigmas_exponential)):
        assert torch.equal(_levels(schedule, steps), expected(steps, TABLE.sigma_min, TABLE.sigma_max)), schedule


@pytest.mark.parametrize("steps", [1, 4, 9, 30])
def test_normal_is_the_discrete_models_own_spacing_in_k_diffusion(steps):
    schedule = _k_diffusion_module("external").DiscreteSchedule(TABLE.sigmas, quantize=False)
    torch.testing.assert_close(_levels("normal", steps), schedule.get_sigmas(steps), rtol=1e-6, atol=0)


def _interpolated(t: float) -> float:
    low, high = math.floor(t), math.ceil(t)
    logs = TABLE.sigmas.double().log().numpy()
    return math.exp((1 - (t - low)) * logs[low] + (t - low) * logs[high])


@pytest.mark.parametrize("steps", [1, 4, 9, 30])
def test_sgm_uniform_simple_ddim_uniform_and_beta_follow_comfyuis_formulas(steps):
    table = TABLE.sigmas.tolist()
    # sgm_uniform: steps + 1 timesteps evenly from 999 to 0, the last dropped
    sgm = [_interpolated(t) for t in np.linspace(999, 0, steps + 1)[:-1]] + [0.0]
    np.testing.assert_allclose(_levels("sgm_uniform", steps).numpy(), sgm, rtol=1e-5)
    # simple: every (1000 / steps)-th entry from the top
    assert _levels("simple", steps).tolist() == [table[999 - int(i * 1000 / steps)] for i in range(steps)] + [0.0]
    # ddim_uniform: every (1000 // steps)-th entry from index 1 up, reversed
    assert _levels("ddim_uniform", steps).tolist() == [table[i] for i in range(1, 1000, 1000 // steps)][::-1] + [0.0]
    # beta: entries at the Beta(0.6, 0.6) quantiles of 1 - i / steps, repeats dropped
    from scipy.stats import beta

    picks = [int(t) for t in np.rint(beta.ppf(1 - np.arange(steps) / steps, 0.6, 0.6) * 999)]
    picks = [t for i, t in enumerate(picks) if i == 0 or t != picks[i - 1]]
    assert _levels("beta", steps).tolist() == [table[t] for t in picks] + [0.0]


def test_kl_optimal_and_linear_quadratic_follow_comfyuis_formulas():
    low, high = math.atan(TABLE.sigma_min), math.atan(TABLE.sigma_max)
    kl = [math.tan(high + (low - high) * k / 3) for k in range(4)] + [0.0]
    np.testing.assert_allclose(_levels("kl_optimal", 4).numpy(), kl, rtol=1e-5)
    # Mochi's ramp for 4 steps: linear 0, 0.0125; quadratic 0.025, 0.275; then 1, all as 1 - ramp
    ramp = np.array([1.0, 0.9875, 0.975, 0.725, 0.0], dtype=np.float32)
    np.testing.assert_allclose(_levels("linear_quadratic", 4).numpy(), ramp * TABLE.sigma_max, rtol=1e-6)
    assert _levels("linear_quadratic", 1).tolist() == [TABLE.sigma_max, 0.0]


def test_percent_is_the_inverse_of_comfyuis_percent_to_sigma():
    for percent in (0.0, 0.25, 1 / 3, 0.8, 1.0):
        sigma = float(TABLE.sigma(torch.tensor((1 - percent) * 999)))  # ComfyUI's percent_to_sigma
        assert math.isclose(TABLE.percent(sigma), percent, abs_tol=1e-5)


def test_ksampler_windows_follow_comfyuis_rules():
    full = schedule_sigmas(TABLE, "karras", 8)
    # denoise: the last steps + 1 levels of an int(steps / denoise)-step schedule
    assert ksampler_sigmas(TABLE, "euler", "karras", 4, 0.5) == full[-5:]
    assert basic_scheduler_sigmas(TABLE, "karras", 4, 0.5) == full[-5:]
    assert basic_scheduler_sigmas(TABLE, "karras", 4, 0.0) == []
    # DPM-2 and UniPC compute one step more and drop the last level above 0
    longer = schedule_sigmas(TABLE, "karras", 9)
    assert ksampler_sigmas(TABLE, "dpm_2", "karras", 8, 1.0) == longer[:-2] + [0.0]
    # KSamplerAdvanced: up to end_at_step (its level 0 with force_full_denoise), from start_at_step
    assert window(full, 2, 5, True) == full[2:5] + [0.0]
    assert window(full, 2, 5, False) == full[2:6]
    assert window(full, 8, None, True) is None and window(full, 0, 100, True) == full


# --- noise ----------------------------------------------------------------------------------------------


def test_the_initial_noise_is_comfyuis_cpu_randn_from_the_seed():
    shape = (2, 4, 8, 8)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)  # ComfyUI's prepare_noise
        expected = torch.randn(shape)
        torch.manual_seed(SEED)  # a latent carrying batch_index [2, 0]: one item at a time up to 2
        items = [torch.randn((1, *shape[1:])) for _ in range(3)]
    assert torch.equal(comfy_noise(shape, SEED), expected)
    assert torch.equal(comfy_noise(shape, SEED, [2, 0]), torch.cat([items[2], items[0]]))


# --- end to end -----------------------------------------------------------------------------------------


class _CompVisModel(torch.nn.Module):
    """What k-diffusion's CompVis wrappers call: ``alphas_cumprod`` and ``apply_model(x, t)``, here the
    UNet with classifier-free guidance over a negative and a positive conditioning."""

    def __init__(self, unet, positive, negative, cfg: float, config: dict, pixels: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, 1000, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.unet, self.cfg = unet, cfg
        self.hidden = torch.cat([negative.embeds, positive.embeds]).to(unet.dtype)
        self.added = None
        if positive.pooled is not None:  # SDXL: pooled embeddings and size ids (no crop, target = the image)
            height, width = pixels
            self.added = {"text_embeds": torch.cat([negative.pooled, positive.pooled]).to(unet.dtype),
                          "time_ids": torch.tensor([[height, width, 0, 0, height, width]] * 2, dtype=unet.dtype)}

    def apply_model(self, x, t, cond=None):
        both = self.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=self.hidden,
                         added_cond_kwargs=self.added).sample.float()
        uncond, cond_ = both.chunk(2)
        return uncond + self.cfg * (cond_ - uncond)


def _comfy_scaled(wrapper, v: bool):
    """k-diffusion's CompVis ``wrapper`` with the arithmetic of ComfyUI's ``calculate_input`` and
    ``calculate_denoised``: it divides by ``sqrt(sigma^2 + 1)`` where k-diffusion multiplies by the reciprocal,
    the same number up to float32 rounding, which the UNet carries into the result (about 3e-5 after 4 steps
    on gouache-tiny)."""

    class ComfyScaled(wrapper):
        def forward(self, input, sigma, **kwargs):
            s = sigma.reshape(-1, *([1] * (input.ndim - 1)))
            if v:
                out = self.get_v(input / (s ** 2 + 1) ** 0.5, self.sigma_to_t(sigma), **kwargs)
                return input / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5
            return input - self.get_eps(input / (s ** 2 + 1) ** 0.5, self.sigma_to_t(sigma), **kwargs) * s

    return ComfyScaled


def _k_diffusion_run(unet, positive, negative, cfg, config, sampler, scheduler, steps, seed, shape, pixels=(0, 0)):
    external = _k_diffusion_module("external")
    model = _CompVisModel(unet, positive, negative, cfg, config, pixels)
    if config.get("prediction_type") == "v_prediction":
        wrapper = _comfy_scaled(external.CompVisVDenoiser, v=True)
    else:
        wrapper = _comfy_scaled(external.CompVisDenoiser, v=False)
    denoiser = wrapper(model, quantize=True).float()  # ComfyUI: the nearest table entry, table in float32
    if scheduler == "karras":
        sigmas = K.get_sigmas_karras(steps, float(denoiser.sigma_min), float(denoiser.sigma_max))
    else:
        sigmas = denoiser.get_sigmas(steps)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        x = torch.randn(shape) * (1 + sigmas[0] ** 2) ** 0.5  # at the model's largest sigma: ComfyUI's scaling
        extra = {"extra_args": {"cond": None}, "disable": True}
        if sampler in ("dpmpp_2m_sde", "dpmpp_sde", "dpmpp_3m_sde"):
            extra["noise_sampler"] = K.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed)
        torch.manual_seed(seed)  # the ancestral samplers' stream, as ComfyUI seeds it on the CPU
        return getattr(K, f"sample_{sampler}")(denoiser, x, sigmas, **extra)


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory) -> Engine:
    return Engine(home=tmp_path_factory.mktemp("home"))


@pytest.mark.parametrize(("sampler", "scheduler"), [("euler", "normal"), ("dpmpp_2m", "karras"),
                                                    ("euler_ancestral", "normal"), ("dpmpp_2m_sde", "karras")])
def test_a_comfyui_workflow_on_gouache_tiny_draws_what_k_diffusion_draws_over_the_same_unet(tiny_engine, sampler,
                                                                                             scheduler):
    prompt = json.loads((FILES / "default_api_tiny.json").read_text())
    prompt["3"]["inputs"].update(sampler_name=sampler, scheduler=scheduler, steps=4, seed=SEED)
    result = tiny_engine.run(prompt, outputs=["3", "4", "6", "7", "9"])
    assert result.ok, result.error
    assert result.images["9"]
    latent = result.outputs["3"]["latent"]["samples"]
    loaded = result.outputs["4"]["model"].checkpoint.loaded
    expected = _k_diffusion_run(loaded.denoiser, result.outputs["6"]["conditioning"],
                                result.outputs["7"]["conditioning"], prompt["3"]["inputs"]["cfg"],
                                loaded.scheduler_config, sampler, scheduler, 4, SEED, tuple(latent.shape))
    # the image is the VAE's decoding of this latent, so equal latents are the same picture
    _close(latent, expected, 1e-6)


def test_an_sdxl_model_in_comfyuis_convention_draws_what_k_diffusion_draws(shared_engine):
    from gouache.nodes.latent import vae_scale_factor

    workflow = _comfy(text_to_image("tiny-sdxl", steps=3, seed=SEED, cfg=4.0, sampler="dpmpp_2m", scheduler="karras"))
    result = shared_engine.run(workflow, outputs=["sampler", "checkpoint", "positive", "negative"])
    assert result.ok, result.error
    loaded = result.outputs["checkpoint"]["model"].checkpoint.loaded
    latent = result.outputs["sampler"]["latent"]["samples"]
    cell = vae_scale_factor(loaded.vae)
    expected = _k_diffusion_run(loaded.denoiser, result.outputs["positive"]["conditioning"],
                                result.outputs["negative"]["conditioning"], 4.0, loaded.scheduler_config, "dpmpp_2m",
                                "karras", 3, SEED, tuple(latent.shape), (latent.shape[-2] * cell, latent.shape[-1] * cell))
    _close(latent, expected, 1e-6)


def test_a_v_prediction_model_follows_comfyuis_v_denoiser(shared_engine):
    workflow = text_to_image("tiny-sd2", steps=4, seed=SEED, cfg=3.0, sampler="heun", scheduler="karras")
    workflow["nodes"]["sampler"]["inputs"]["convention"] = "comfyui"
    result = shared_engine.run(workflow, outputs=["sampler", "checkpoint", "positive", "negative"])
    assert result.ok, result.error
    loaded = result.outputs["checkpoint"]["model"].checkpoint.loaded
    assert loaded.scheduler_config["prediction_type"] == "v_prediction"
    latent = result.outputs["sampler"]["latent"]["samples"]
    expected = _k_diffusion_run(loaded.denoiser, result.outputs["positive"]["conditioning"],
                                result.outputs["negative"]["conditioning"], 3.0, loaded.scheduler_config, "heun",
                                "karras", 4, SEED, tuple(latent.shape))
    _close(latent, expected, 1e-6)


# --- through workflows: choosing the convention, the split form, windows, masks -------------------------


def _link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def _comfy(workflow: dict, **inputs) -> dict:
    workflow["nodes"]["sampler"]["inputs"].update(convention="comfyui", **inputs)
    return workflow


def _latent(engine, workflow: dict, node: str = "sampler", output: str = "latent") -> torch.Tensor:
    result = engine.run(workflow, outputs=[node])
    assert result.ok, result.error
    return result.outputs[node][output]["samples"]


def test_the_convention_changes_the_picture_only_when_chosen(shared_engine):
    gouache = _latent(shared_engine, text_to_image(steps=4))
    assert torch.equal(_latent(shared_engine, text_to_image(steps=4)), gouache)
    comfy = _latent(shared_engine, _comfy(text_to_image(steps=4)))
    assert (comfy - gouache).abs().max() > 1e-3


@pytest.mark.parametrize(("convention", "sampler", "scheduler", "wrong", "says"), [
    ("gouache", "dpmpp_3m_sde", "normal", "sampler_name", "runs only in ComfyUI's convention"),
    ("gouache", "euler", "simple", "scheduler", "exists only in ComfyUI's convention"),
    ("comfyui", "deis", "normal", "sampler_name", "has no ComfyUI-convention version"),
])
def test_a_name_the_convention_lacks_is_refused_naming_the_input(shared_engine, convention, sampler, scheduler,
                                                                  wrong, says):
    workflow = text_to_image(sampler=sampler, scheduler=scheduler)
    workflow["nodes"]["sampler"]["inputs"]["convention"] = convention
    valid, problems = shared_engine.check(workflow)
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("sampler", wrong, "unsupported_combination")]
    assert says in problems[0].message


def _custom(workflow: dict, *, scheduler: str = "karras", steps: int = 4, denoise: float = 1.0,
            split: int | None = None, noise_convention: str = "comfyui") -> dict:
    """The split form of ``workflow``'s sampler: RandomNoise, ScheduleSigmas, SamplerSelect, CFGGuider,
    SamplerCustom (two of them, the second without added noise, when ``split`` is given)."""
    nodes = workflow["nodes"]
    given = nodes["sampler"]["inputs"]
    nodes["noise"] = {"type": "RandomNoise", "inputs": {"noise_seed": given["seed"], "convention": noise_convention}}
    nodes["sigmas"] = {"type": "ScheduleSigmas", "inputs": {"model": _link("checkpoint", "model"),
                                                            "scheduler": scheduler, "steps": steps,
                                                            "denoise": denoise, "convention": "comfyui"}}
    nodes["select"] = {"type": "SamplerSelect", "inputs": {"sampler_name": given["sampler_name"]}}
    nodes["guider"] = {"type": "CFGGuider", "inputs": {"model": _link("checkpoint", "model"),
                                                       "positive": _link("positive", "conditioning"),
                                                       "negative": _link("negative", "conditioning"),
                                                       "cfg": given["cfg"]}}
    sigmas = _link("sigmas", "sigmas")
    if split is not None:
        nodes["split"] = {"type": "SplitSigmas", "inputs": {"sigmas": sigmas, "step": split}}
        sigmas = _link("split", "high_sigmas")
    nodes["custom"] = {"type": "SamplerCustom", "inputs": {"noise": _link("noise", "noise"),
                                                           "guider": _link("guider", "guider"),
                                                           "sampler": _link("select", "sampler"),
                                                           "sigmas": sigmas, "latent": given["latent"]}}
    if split is not None:
        nodes["quiet"] = {"type": "DisableNoise", "inputs": {}}
        nodes["rest"] = {"type": "SamplerCustom", "inputs": {"noise": _link("quiet", "noise"),
                                                             "guider": _link("guider", "guider"),
                                                             "sampler": _link("select", "sampler"),
                                                             "sigmas": _link("split", "low_sigmas"),
                                                             "latent": _link("custom", "latent")}}
    return workflow


@pytest.mark.parametrize("denoise", [1.0, 0.5])
def test_the_split_form_in_comfyuis_convention_equals_its_ksampler(shared_engine, denoise):
    # As in ComfyUI: SamplerCustomAdvanced on BasicScheduler's sigmas runs KSampler's steps, denoise included
    # (the last 4 levels of an 8-step schedule); a SplitSigmas in two parts is the same Euler run.
    whole = _latent(shared_engine, _comfy(text_to_image(steps=4, scheduler="karras"), denoise=denoise))
    custom = _latent(shared_engine, _custom(text_to_image(steps=4, scheduler="karras"), denoise=denoise), "custom")
    assert torch.equal(custom, whole)
    parts = _latent(shared_engine, _custom(text_to_image(steps=4, scheduler="karras"), denoise=denoise, split=2),
                    "rest")
    _close(parts, whole)


def test_the_sigmas_of_comfyuis_convention_are_the_levels_themselves(shared_engine):
    workflow = _custom(text_to_image(steps=4), scheduler="simple", split=1)
    result = shared_engine.run(workflow, outputs=["sigmas", "split", "checkpoint"])
    assert result.ok, result.error
    table = DiscreteSigmas.from_config(result.outputs["checkpoint"]["model"].checkpoint.loaded.scheduler_config)
    sigmas = result.outputs["sigmas"]["sigmas"]
    assert sigmas.convention == "comfyui" and list(sigmas.sigmas) == schedule_sigmas(table, "simple", 4)
    high, low = result.outputs["split"]["high_sigmas"], result.outputs["split"]["low_sigmas"]
    assert high.sigmas == sigmas.sigmas[:2] and low.sigmas == sigmas.sigmas[1:]


def test_noise_of_the_other_convention_is_refused_naming_the_noise(shared_engine):
    result = shared_engine.run(_custom(text_to_image(steps=2), noise_convention="gouache"), outputs=["custom"])
    assert not result.ok
    assert result.error.input == "noise" and "RandomNoise and ScheduleSigmas" in result.error.message


def test_base_then_refiner_in_comfyuis_convention_equals_one_run(shared_engine):
    # KSamplerAdvanced's windows: 0..2 with leftover noise, then 2..4 without adding noise (ComfyUI's
    # sigmas[:3] and sigmas[2:]); Euler keeps no history, so the parts are the one run.
    workflow = _comfy(text_to_image(steps=4, scheduler="karras"))
    whole = _latent(shared_engine, workflow)
    nodes = workflow["nodes"]
    base = {key: value for key, value in nodes["sampler"]["inputs"].items() if key not in ("seed", "denoise")}
    nodes["base"] = {"type": "SamplerAdvanced", "inputs": {**base, "add_noise": "enable", "noise_seed": 42,
                                                           "start_at_step": 0, "end_at_step": 2,
                                                           "return_with_leftover_noise": "enable"}}
    nodes["refiner"] = {"type": "SamplerAdvanced", "inputs": {**base, "latent": _link("base", "latent"),
                                                              "add_noise": "disable", "noise_seed": 42,
                                                              "start_at_step": 2, "end_at_step": 4,
                                                              "return_with_leftover_noise": "disable"}}
    _close(_latent(shared_engine, workflow, "refiner"), whole)


def test_a_noise_mask_keeps_the_latent_outside_it(shared_engine, gouache_home):
    from PIL import Image

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 64))  # transparent left half: repaint it, keep the right
    image.save(gouache_home / "input" / "left-half.png")
    workflow = _comfy(text_to_image(steps=3), denoise=0.8)
    nodes = workflow["nodes"]
    nodes["latent"] = {"type": "RandomLatent", "inputs": {"seed": 3, "side": 8}}
    nodes["mask"] = {"type": "LoadImage", "inputs": {"image": "left-half.png"}}
    nodes["masked"] = {"type": "SetLatentNoiseMask", "inputs": {"latent": _link("latent", "latent"),
                                                                "mask": _link("mask", "mask")}}
    nodes["sampler"]["inputs"]["latent"] = _link("masked", "latent")
    for sampler in ("euler", "ddim"):
        nodes["sampler"]["inputs"]["sampler_name"] = sampler
        result = shared_engine.run(workflow, outputs=["sampler", "latent"])
        assert result.ok, result.error
        start, out = result.outputs["latent"]["latent"]["samples"], result.outputs["sampler"]["latent"]["samples"]
        _close(out[..., 4:], start[..., 4:])
        assert (out[..., :4] - start[..., :4]).abs().max() > 1e-2


def test_the_importer_chooses_comfyuis_convention_and_export_leaves_it_out(tiny_engine):
    from gouache.nodes.interop.comfy import convert_api
    from gouache.nodes.interop.comfy_export import export_api

    workflow, problems = convert_api(json.loads((FILES / "advanced_api.json").read_text()))
    assert problems == []
    by_type = {entry["type"]: entry["inputs"].get("convention") for entry in workflow["nodes"].values()
               if entry["type"] in ("SamplerAdvanced", "RandomNoise", "ScheduleSigmas")}
    assert by_type == {"SamplerAdvanced": "comfyui", "RandomNoise": "comfyui", "ScheduleSigmas": "comfyui"}
    workflow, problems = convert_api(json.loads((FILES / "default_api_tiny.json").read_text()))
    assert problems == [] and workflow["nodes"]["3"]["inputs"]["convention"] == "comfyui"
    back, problems = export_api(workflow, tiny_engine.registry)
    assert problems == [] and back["3"]["class_type"] == "KSampler" and "convention" not in back["3"]["inputs"]


def test_controlnets_act_in_comfyuis_convention_over_their_share_of_the_timesteps(controlnet_engine):
    def run(nets):
        workflow = _controlnet_workflow("sd1", nets=nets)
        workflow["nodes"]["sampler"]["inputs"]["convention"] = "comfyui"
        return _latent(controlnet_engine, workflow)

    # ComfyUI switches a ControlNet by where the sigma lies among the timesteps (0 the largest, 1 the
    # smallest): 4 normal steps sit at timesteps 999, 666, 333 and 0, i.e. 0, 1/3, 2/3 and 1
    full, plain = run((("cn-sd1", 1.0, 0.0, 1.0),)), run((("cn-sd1", 0.0, 0.0, 1.0),))
    assert (full - plain).abs().max() > 1e-3
    _close(run((("cn-sd1", 1.0, 0.4, 0.6),)), plain, 1e-6)  # no step between 0.4 and 0.6
    second = run((("cn-sd1", 1.0, 0.3, 0.4),))
    assert (second - plain).abs().max() > 1e-4 and (second - full).abs().max() > 1e-4
    assert (run((("cn-sd1", 1.0, 0.9, 1.0),)) - plain).abs().max() > 0  # the last step, at 1


def test_timestep_ranges_in_comfyuis_convention_compare_where_the_sigma_lies(shared_engine):
    # as for ControlNets: 4 normal steps sit at 0, 1/3, 2/3 and 1 of the timesteps
    def run(start, end):
        workflow = _comfy(text_to_image(steps=4))
        nodes = workflow["nodes"]
        nodes["other"] = {"type": "TextEncode", "inputs": {"clip": _link("checkpoint", "clip"),
                                                           "text": "a small green star"}}
        nodes["ranged"] = {"type": "ConditioningSetTimestepRange", "inputs": {
            "conditioning": _link("other", "conditioning"), "start": start, "end": end}}
        nodes["both"] = {"type": "ConditioningCombine", "inputs": {
            "conditioning_1": _link("positive", "conditioning"), "conditioning_2": _link("ranged", "conditioning")}}
        nodes["sampler"]["inputs"]["positive"] = _link("both", "conditioning")
        return _latent(shared_engine, workflow)

    alone = _latent(shared_engine, _comfy(text_to_image(steps=4)))
    scale = alone.abs().max().item()  # the regional path sums in another order: equal to float rounding
    _close(run(0.4, 0.6), alone, 1e-6 * scale)  # no step between 0.4 and 0.6: the second prompt never acts
    assert (run(0.3, 0.4) - alone).abs().max() > 1e-3 * scale
