"""Sampling in parts: the advanced sampler and the split form (noise, sigmas, sampler, guider -> one sampler).

Every node here ends in ``gouache.nodes.sampling.sample``, the loop ``Sampler`` runs: a window of
steps of one schedule, with or without added noise, returned with or without its leftover noise. So
a base model running steps ``0..k`` with leftover noise and a refiner going on from ``k`` without
adding noise share one schedule, and ``SamplerCustom`` with the settings of a ``Sampler`` gives its
result exactly. ComfyUI's equivalents: ``KSamplerAdvanced``, ``SamplerCustomAdvanced`` and its parts.

In the split form the convention (``nodes/schedulers.py``) is chosen where the numbers are made:
``ScheduleSigmas`` (ComfyUI's SIGMAS are the levels themselves) and ``RandomNoise``; ``SamplerCustom``
follows its sigmas and refuses noise of the other convention.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gouache.engine import Input, InputError, Node, Output
from gouache.nodes.schedulers import (
    CFG_INPUT,
    CONVENTION_INPUT,
    SAMPLER_INPUT,
    SCHEDULE_INPUT,
    STEPS_INPUT,
    combination_check,
    combination_problem,
    sampler_inputs,
)
from gouache.nodes.support import MAX_SEED, manager_of
from gouache.nodes.types import Guider, NoiseSource, SamplerChoice, SigmaWindow

ENABLE = ("enable", "disable")


def window_problems(steps: Any, start: Any, end: Any) -> list[InputError]:
    """Why ``start_at_step`` / ``end_at_step`` do not make a window of a ``steps``-step schedule."""
    problems = []
    if isinstance(start, int) and isinstance(end, int) and start > end:
        problems.append(InputError("start_at_step", f"{start} is after end_at_step ({end}); start at or before "
                                                    "the end", "out_of_order"))
    if isinstance(steps, int) and isinstance(end, int) and end > steps:
        problems.append(InputError("end_at_step", f"{end} is past the schedule's {steps} steps; use at most "
                                                  f"{steps}", "out_of_range"))
    return problems


def _raise_first(problems: list[InputError]) -> None:
    if problems:
        raise problems[0]


class SamplerAdvanced(Node):
    """Run steps ``start_at_step`` to ``end_at_step`` of a ``steps``-step schedule (ComfyUI ``KSamplerAdvanced``).

    ``add_noise`` off: the latent already carries the noise of ``start_at_step`` (a base sampler's leftover).
    ``return_with_leftover_noise`` on: stopping before the end, hand the still-noisy latent on; off: the
    last step goes to the clean estimate.
    """

    type_name = "SamplerAdvanced"
    category = "sampling"
    inputs = [
        Input("model", "MODEL"),
        Input("positive", "CONDITIONING"),
        Input("negative", "CONDITIONING"),
        Input("latent", "LATENT"),
        Input("add_noise", "COMBO", default="enable", choices=ENABLE),
        Input("noise_seed", "INT", default=0, min=0, max=MAX_SEED, seed=True),
        *sampler_inputs(),
        Input("start_at_step", "INT", default=0, min=0, max=1000),
        Input("end_at_step", "INT", default=20, min=0, max=1000),
        Input("return_with_leftover_noise", "COMBO", default="disable", choices=ENABLE),
        CONVENTION_INPUT,
    ]
    outputs = [Output("latent", "LATENT")]

    def check(self, values):
        return combination_check(values) + window_problems(values.get("steps", 20), values.get("start_at_step", 0),
                                                           values.get("end_at_step", 20))

    def run(self, ctx, model, positive, negative, latent, add_noise, noise_seed, steps, cfg, sampler_name, scheduler,
            start_at_step, end_at_step, return_with_leftover_noise, convention):
        from gouache.nodes.sampling import SampleSettings, sample

        _raise_first(window_problems(steps, start_at_step, end_at_step))  # linked values skip check()
        settings = SampleSettings(noise_seed, steps, cfg, sampler_name, scheduler, start_step=start_at_step,
                                  end_step=end_at_step, add_noise=add_noise == "enable",
                                  leftover_noise=return_with_leftover_noise == "enable", convention=convention)
        return {"latent": sample(manager_of(ctx), ctx, model, positive, negative, latent, settings).latent}


class RandomNoise(Node):
    """Initial noise from a seed (ComfyUI ``RandomNoise``)."""

    type_name = "RandomNoise"
    category = "sampling/custom"
    inputs = [Input("noise_seed", "INT", default=0, min=0, max=MAX_SEED, seed=True), CONVENTION_INPUT]
    outputs = [Output("noise", "NOISE")]

    def run(self, ctx, noise_seed, convention):
        return {"noise": NoiseSource(int(noise_seed), convention=convention)}


class DisableNoise(Node):
    """No added noise: the latent already carries it (ComfyUI ``DisableNoise``)."""

    type_name = "DisableNoise"
    category = "sampling/custom"
    inputs = []
    outputs = [Output("noise", "NOISE")]

    def run(self, ctx):
        return {"noise": NoiseSource(0, add=False)}


class ScheduleSigmas(Node):
    """The noise schedule of ``model`` in ``steps`` steps; ``denoise`` below 1 keeps its last
    ``int(steps * denoise)`` steps, as ``Sampler`` runs them (ComfyUI ``BasicScheduler``). In the ``comfyui``
    convention the levels are ComfyUI's: ``steps`` steps from the end of an ``int(steps / denoise)``-step
    schedule."""

    type_name = "ScheduleSigmas"
    category = "sampling/custom"
    inputs = [
        Input("model", "MODEL"),
        SCHEDULE_INPUT,
        STEPS_INPUT,
        Input("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        CONVENTION_INPUT,
    ]
    outputs = [Output("sigmas", "SIGMAS")]

    def check(self, values):
        return combination_check({"scheduler": values.get("scheduler", "normal"),
                                  "convention": values.get("convention", "gouache")})

    def run(self, ctx, model, scheduler, steps, denoise, convention):
        from gouache.nodes.sampling import SampleSettings

        if convention == "comfyui":
            return {"sigmas": comfy_sigma_window(model, scheduler, steps, denoise)}

        start, end = SampleSettings(0, steps, 0.0, "euler", scheduler, denoise).window()
        levels = euler_sigmas(model, scheduler, steps)
        return {"sigmas": SigmaWindow(scheduler, steps, start, end, tuple(levels[start:end + 1]))}


def comfy_sigma_window(model: Any, scheduler: str, steps: int, denoise: float) -> SigmaWindow:
    """ComfyUI's ``BasicScheduler`` levels for ``model`` as a SIGMAS window over all of them."""
    from gouache.nodes.comfy_sigmas import basic_scheduler_sigmas, comfy_table
    from gouache.nodes.flow_sampling import model_overrides

    table = comfy_table(model.checkpoint.loaded, dict(model_overrides(model)))
    levels = basic_scheduler_sigmas(table, scheduler, steps, denoise)
    count = max(len(levels) - 1, 0)
    return SigmaWindow(scheduler, count, 0, count, tuple(levels), "comfyui")


def euler_sigmas(model: Any, scheduler: str, steps: int) -> list[float]:
    """The ``steps + 1`` noise levels the Euler sampler passes through on ``model``'s ``scheduler`` schedule
    (none listed for flow models)."""
    from gouache.nodes.schedulers import make_scheduler

    loaded = model.checkpoint.loaded
    if loaded.family.sampling == "flow":  # their shift depends on the image's size, unknown here
        return []
    stepper = make_scheduler(loaded.scheduler_config, "euler", scheduler, 0)
    stepper.set_timesteps(steps)
    return [float(sigma) for sigma in stepper.sigmas]


class SplitSigmas(Node):
    """Split a schedule at ``step`` (counted from its first): ``high`` runs before it, ``low`` from it on
    (ComfyUI ``SplitSigmas``)."""

    type_name = "SplitSigmas"
    category = "sampling/custom"
    inputs = [Input("sigmas", "SIGMAS"), Input("step", "INT", default=0, min=0, max=10000)]
    outputs = [Output("high_sigmas", "SIGMAS"), Output("low_sigmas", "SIGMAS")]

    def run(self, ctx, sigmas, step):
        cut = min(sigmas.start + step, sigmas.end)
        head = cut - sigmas.start
        high = replace(sigmas, end=cut, sigmas=sigmas.sigmas[:head + 1])
        low = replace(sigmas, start=cut, sigmas=sigmas.sigmas[head:])
        return {"high_sigmas": high, "low_sigmas": low}


class SamplerSelect(Node):
    """Choose a sampler by name (ComfyUI ``KSamplerSelect``)."""

    type_name = "SamplerSelect"
    category = "sampling/custom"
    inputs = [SAMPLER_INPUT]
    outputs = [Output("sampler", "SAMPLER")]

    def run(self, ctx, sampler_name):
        return {"sampler": SamplerChoice(sampler_name)}


class CFGGuider(Node):
    """Guide ``model`` from ``negative`` toward ``positive`` at scale ``cfg`` (ComfyUI ``CFGGuider``)."""

    type_name = "CFGGuider"
    category = "sampling/custom"
    inputs = [
        Input("model", "MODEL"),
        Input("positive", "CONDITIONING"),
        Input("negative", "CONDITIONING"),
        CFG_INPUT,
    ]
    outputs = [Output("guider", "GUIDER")]

    def run(self, ctx, model, positive, negative, cfg):
        return {"guider": Guider(model, positive, negative, float(cfg))}


class SamplerCustom(Node):
    """Denoise ``latent`` along ``sigmas`` with ``sampler``, guided by ``guider``, from ``noise``
    (ComfyUI ``SamplerCustomAdvanced``). A window that stops before the schedule's end keeps its
    leftover noise, for another SamplerCustom to go on from; ``denoised_output`` is the last step's
    estimate of the clean latent. It follows the convention of its sigmas; noise of the other one is refused."""

    type_name = "SamplerCustom"
    category = "sampling/custom"
    inputs = [
        Input("noise", "NOISE"),
        Input("guider", "GUIDER"),
        Input("sampler", "SAMPLER"),
        Input("sigmas", "SIGMAS"),
        Input("latent", "LATENT"),
    ]
    outputs = [Output("latent", "LATENT"), Output("denoised_output", "LATENT")]

    def run(self, ctx, noise, guider, sampler, sigmas, latent):
        from gouache.nodes.sampling import SampleSettings, sample

        convention = sigmas.convention
        if noise.add and noise.convention != convention:
            raise InputError("noise", f"the noise follows the {noise.convention!r} convention and the sigmas the "
                                      f"{convention!r} one: set RandomNoise and ScheduleSigmas to the same convention",
                             "mixed_conventions")
        problem = combination_problem(sampler.name, sigmas.scheduler, convention)
        if problem is not None:
            raise InputError("sampler", problem.message, problem.code)
        if convention == "comfyui":
            settings = SampleSettings(noise.seed, sigmas.steps, guider.cfg, sampler.name, sigmas.scheduler,
                                      add_noise=noise.add, convention=convention, sigmas=sigmas.sigmas)
        else:
            settings = SampleSettings(noise.seed, sigmas.steps, guider.cfg, sampler.name, sigmas.scheduler,
                                      start_step=sigmas.start, end_step=sigmas.end, add_noise=noise.add,
                                      leftover_noise=True)
        sampled = sample(manager_of(ctx), ctx, guider.model, guider.positive, guider.negative, latent, settings)
        return {"latent": sampled.latent, "denoised_output": sampled.denoised}


SAMPLER_NODES = [SamplerAdvanced, RandomNoise, DisableNoise, ScheduleSigmas, SplitSigmas, SamplerSelect, CFGGuider,
                 SamplerCustom]
"""The nodes of this module, in the order the pack lists them."""
