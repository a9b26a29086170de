"""gouache's sampler equals diffusers' pipelines on the same tiny weights, seed and settings."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from pack_support import PROMPT, engine, gouache_home, shared_engine, text_to_image  # noqa: F401

from gouache.nodes.loading import load_checkpoint

NEGATIVE = "blurry, dark"
LATENT_SIDE = 8  # EmptyLatent at 64 px gives 8x8 latents
TOLERANCE = 1e-4


@functools.cache
def _loaded(folder):
    return load_checkpoint(folder)


def _pipeline(folder, scheduler):
    """A pipeline over components loaded once per module (schedulers are fresh each time)."""
    loaded = _loaded(folder)
    parts = dict(**loaded.components(), scheduler=scheduler(loaded.scheduler_config))
    if loaded.family.name == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers_latents(pipe, *, steps=4, seed=42, cfg=3.0):
    side = LATENT_SIDE * pipe.vae_scale_factor
    with torch.no_grad():
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=cfg,
                    height=side, width=side, generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="latent").images


def _gouache_latents(engine, checkpoint, **settings):
    workflow = text_to_image(checkpoint, negative=NEGATIVE, **settings)
    result = engine.run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    return result.outputs["sampler"]["latent"]["samples"]


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_euler_normal_equals_the_diffusers_pipeline(shared_engine, gouache_home, family):
    pipe = _pipeline(gouache_home / "models/checkpoints" / f"tiny-{family}", EulerDiscreteScheduler.from_config)
    expected = _diffusers_latents(pipe)
    ours = _gouache_latents(shared_engine, f"tiny-{family}")
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() <= TOLERANCE


SAMPLERS = [
    ("euler_ancestral", "normal", EulerAncestralDiscreteScheduler.from_config),
    ("heun", "normal", HeunDiscreteScheduler.from_config),
    ("dpm_2", "normal", KDPM2DiscreteScheduler.from_config),
    ("lms", "normal", LMSDiscreteScheduler.from_config),
    ("dpmpp_2m", "normal", DPMSolverMultistepScheduler.from_config),
    ("dpmpp_2m_sde", "normal",
     lambda config: DPMSolverMultistepScheduler.from_config(config, algorithm_type="sde-dpmsolver++")),
    ("ddim", "normal", DDIMScheduler.from_config),
    ("unipc", "normal", UniPCMultistepScheduler.from_config),
    ("euler", "karras", lambda config: EulerDiscreteScheduler.from_config(config, use_karras_sigmas=True)),
    ("euler", "exponential",
     lambda config: EulerDiscreteScheduler.from_config(config, use_exponential_sigmas=True)),
    ("euler", "sgm_uniform",
     lambda config: EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")),
    ("dpmpp_2m", "karras", lambda config: DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)),
]


@pytest.mark.parametrize(("sampler", "schedule", "scheduler"), SAMPLERS, ids=[f"{s}-{k}" for s, k, _ in SAMPLERS])
def test_samplers_equal_their_diffusers_scheduler(shared_engine, gouache_home, sampler, schedule, scheduler):
    pipe = _pipeline(gouache_home / "models/checkpoints/tiny-sd1", scheduler)
    expected = _diffusers_latents(pipe)
    ours = _gouache_latents(shared_engine, "tiny-sd1", sampler=sampler, scheduler=schedule)
    assert (ours - expected).abs().max().item() <= TOLERANCE


def test_denoise_equals_img2img_strength(shared_engine, gouache_home):
    start = torch.randn(1, 4, LATENT_SIDE, LATENT_SIDE, generator=torch.Generator().manual_seed(7))
    loaded = _loaded(gouache_home / "models/checkpoints/tiny-sd1")
    pipe = StableDiffusionImg2ImgPipeline(**loaded.components(),
                                          scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=start, strength=0.5, num_inference_steps=6,
                        guidance_scale=3.0, generator=torch.Generator("cpu").manual_seed(42),
                        output_type="latent").images

    workflow = text_to_image("tiny-sd1", negative=NEGATIVE, steps=6)
    workflow["nodes"]["latent"] = {"type": "RandomLatent", "inputs": {"seed": 7, "side": LATENT_SIDE}}
    workflow["nodes"]["sampler"]["inputs"]["denoise"] = 0.5
    result = shared_engine.run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    assert torch.equal(result.outputs["latent"]["latent"]["samples"], start), "the sampler changed its input"
    assert (result.outputs["sampler"]["latent"]["samples"] - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("sampler", ["dpmpp_sde", "dpm_2_ancestral", "deis", "ddpm", "lcm"])
def test_samplers_without_a_pipeline_twin_are_seed_deterministic(engine, sampler):
    def run(seed):
        engine.cache.clear()
        return _gouache_latents(engine, "tiny-sd1", steps=3, seed=seed, sampler=sampler)

    first = run(1)
    assert torch.isfinite(first).all()
    assert torch.equal(run(1), first)
    assert not torch.equal(run(2), first)
