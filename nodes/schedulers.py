"""Sampler and schedule names, mapped onto diffusers' scheduler classes and config flags.

A *sampler* picks the diffusers class (and its algorithm options); a *schedule* picks how the
timesteps / sigmas are spaced, through config flags every class that supports it understands.
Both start from the checkpoint's own scheduler config (its beta schedule, prediction type,
timestep spacing), so ``euler`` + ``normal`` is exactly
``EulerDiscreteScheduler.from_config(model's scheduler config)``.

========================  =====================================================================
sampler                   diffusers class (options)
========================  =====================================================================
euler                     EulerDiscreteScheduler
euler_ancestral           EulerAncestralDiscreteScheduler (seeded generator for its noise)
heun                      HeunDiscreteScheduler
dpm_2                     KDPM2DiscreteScheduler
dpm_2_ancestral           KDPM2AncestralDiscreteScheduler (seeded generator)
lms                       LMSDiscreteScheduler
dpmpp_2m                  DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", solver_order=2)
dpmpp_2m_sde              DPMSolverMultistepScheduler (algorithm_type="sde-dpmsolver++", seeded generator)
dpmpp_sde                 DPMSolverSDEScheduler (noise_sampler_seed = the seed)
deis                      DEISMultistepScheduler
ddim                      DDIMScheduler (eta 0)
ddpm                      DDPMScheduler (seeded generator)
unipc                     UniPCMultistepScheduler
lcm                       LCMScheduler (for LCM-distilled models or LCM LoRAs)
========================  =====================================================================

========================  =====================================================================
schedule                  config flags
========================  =====================================================================
normal                    the model's own spacing; karras/exponential/beta sigmas off
karras                    use_karras_sigmas=True
exponential               use_exponential_sigmas=True
beta                      use_beta_sigmas=True
sgm_uniform               timestep_spacing="trailing" (evenly spaced, ending at the last step)
========================  =====================================================================

A sampler whose class lacks a schedule's flag (e.g. ``ddim`` with ``karras``) is refused with a
message that lists the schedules it takes, rather than silently ignoring the choice.

The ``convention`` input chooses whose numbers a sampler draws: ``gouache`` (the default: diffusers'
classes as above) or ``comfyui`` (ComfyUI's noise, sigma schedules and k-diffusion samplers,
``nodes/comfy_sampling.py``), which takes every sampler and schedule of ComfyUI's that it has,
including ``dpmpp_3m_sde``, ``unipc_bh2`` and the ``simple``, ``ddim_uniform``, ``linear_quadratic``
and ``kl_optimal`` schedules that have no diffusers counterpart here; a name one convention lacks is refused naming the other.
"""

from __future__ import annotations

import inspect
from typing import Any

from gouache.engine import Input, InputError

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
SCHEDULES: dict[str, dict[str, Any]] = {
    "normal": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
}


_SIGMA_SCHEDULES = ("karras", "exponential", "beta")
UNSUPPORTED_SCHEDULES: dict[str, tuple[str, ...]] = {
    "euler_ancestral": _SIGMA_SCHEDULES, "ddim": _SIGMA_SCHEDULES, "ddpm": _SIGMA_SCHEDULES, "lcm": _SIGMA_SCHEDULES,
}
"""Schedules a sampler's diffusers class has no flag for, written out so validation needs no diffusers
import; a test checks it against the classes' signatures (``schedules_from_diffusers``)."""


def supported_schedules(sampler: str) -> list[str]:
    """The schedules ``sampler`` can follow."""
    return [name for name in SCHEDULES if name not in UNSUPPORTED_SCHEDULES.get(sampler, ())]


def schedules_from_diffusers(sampler: str) -> list[str]:
    """The schedules ``sampler``'s diffusers class has every config flag for (imports diffusers)."""
    params = _params(SAMPLERS[sampler][0])
    return [name for name, flags in SCHEDULES.items() if all(flag in params for flag in flags)]


CONVENTIONS = ("gouache", "comfyui")
COMFY_SAMPLERS = ("euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde",
                  "dpmpp_sde", "dpmpp_3m_sde", "ddim", "unipc", "unipc_bh2")
"""The samplers of the ``comfyui`` convention (``gouache.nodes.kdiffusion_samplers.SAMPLERS``; a test keeps
the two lists equal, so validation needs no torch import)."""
COMFY_SCHEDULES = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
                   "linear_quadratic", "kl_optimal")
"""The schedules of the ``comfyui`` convention (``gouache.nodes.comfy_sigmas.SCHEDULES``)."""
SAMPLER_CHOICES = (*SAMPLERS, *(name for name in COMFY_SAMPLERS if name not in SAMPLERS))
SCHEDULE_CHOICES = (*SCHEDULES, *(name for name in COMFY_SCHEDULES if name not in SCHEDULES))

STEPS_INPUT = Input("steps", "INT", default=20, min=1, max=1000)
CFG_INPUT = Input("cfg", "FLOAT", default=7.0, min=0.0, max=100.0, step=0.1)
SAMPLER_INPUT = Input("sampler_name", "COMBO", default="euler", choices=SAMPLER_CHOICES)
SCHEDULE_INPUT = Input("scheduler", "COMBO", default="normal", choices=SCHEDULE_CHOICES)
CONVENTION_INPUT = Input("convention", "COMBO", default="gouache", choices=CONVENTIONS, link="widget",
                         description="Whose numbers to draw: gouache (diffusers' schedulers) or comfyui "
                                     "(ComfyUI's noise, sigmas and samplers, so its workflows give its images).")


def sampler_inputs() -> list[Input]:
    """``steps``, ``cfg``, ``sampler_name`` and ``scheduler`` as every sampler node declares them."""
    return [STEPS_INPUT, CFG_INPUT, SAMPLER_INPUT, SCHEDULE_INPUT]


def combination_check(values: dict[str, Any]) -> list[InputError]:
    """A node's ``check`` of its typed-in ``sampler_name``, ``scheduler`` and ``convention`` taken together."""
    problem = combination_problem(values.get("sampler_name", "euler"), values.get("scheduler", "normal"),
                                  values.get("convention", "gouache"))
    return [problem] if problem else []


def combination_problem(sampler: str, schedule: str, convention: str = "gouache") -> InputError | None:
    """Why ``sampler`` cannot follow ``schedule`` in ``convention``, naming the input to change; ``None`` if it can."""
    if not isinstance(sampler, str) or not isinstance(schedule, str):
        return None  # linked values are checked when they arrive
    if convention == "comfyui":
        if sampler in SAMPLER_CHOICES and sampler not in COMFY_SAMPLERS:
            return InputError("sampler_name", f"sampler {sampler!r} has no ComfyUI-convention version here; with "
                                              f"convention 'comfyui' choose one of {', '.join(COMFY_SAMPLERS)}",
                              "unsupported_combination")
        return None
    if sampler in SAMPLER_CHOICES and sampler not in SAMPLERS:
        return InputError("sampler_name", f"sampler {sampler!r} runs only in ComfyUI's convention: set convention "
                                          "to 'comfyui', or choose another sampler", "unsupported_combination")
    if schedule in SCHEDULE_CHOICES and schedule not in SCHEDULES:
        return InputError("scheduler", f"the {schedule!r} schedule exists only in ComfyUI's convention: set "
                                       f"convention to 'comfyui', or choose one of {', '.join(SCHEDULES)}",
                          "unsupported_combination")
    if sampler in SAMPLERS and schedule in SCHEDULES and schedule not in supported_schedules(sampler):
        return InputError("scheduler", f"sampler {sampler!r} cannot follow the {schedule!r} schedule; "
                                       f"it takes: {', '.join(supported_schedules(sampler))}", "unsupported_combination")
    return None


def _params(class_name: str) -> set[str]:
    import diffusers

    return set(inspect.signature(getattr(diffusers, class_name).__init__).parameters)


def make_scheduler(base_config: dict[str, Any], sampler: str, schedule: str, seed: int) -> Any:
    """A fresh scheduler for ``sampler`` / ``schedule`` on the model's config: diffusers' class, or for Euler on
    a config ``gouache.nodes.native.euler`` covers, gouache's own equal one (no diffusers import)."""
    problem = combination_problem(sampler, schedule)
    if problem is not None:
        raise problem
    if sampler not in SAMPLERS:
        raise InputError("sampler_name", f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}",
                         "not_a_choice")
    if schedule not in SCHEDULES:
        raise InputError("scheduler", f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}",
                         "not_a_choice")
    class_name, options = SAMPLERS[sampler]
    native = class_name == "EulerDiscreteScheduler"
    if native:
        from gouache.nodes.native import euler

        params = set(euler.DEFAULTS)
    else:
        params = _params(class_name)
    flags = SCHEDULES[schedule]
    overrides = {flag: False for flag in _SIGMA_FLAGS if flag in params}
    overrides.update(options)
    overrides.update(flags)
    if "noise_sampler_seed" in params:  # DPMSolverSDE otherwise seeds its Brownian tree at random
        overrides["noise_sampler_seed"] = seed
    config = {key: value for key, value in base_config.items() if not key.startswith("_")}
    merged = {**config, **overrides}
    if native and euler.covers(merged):
        return euler.NativeEulerDiscrete.from_config(merged)
    import diffusers

    return getattr(diffusers, class_name).from_config(merged)


def step_kwargs(scheduler: Any, generator: Any) -> dict[str, Any]:
    """Extra ``step()`` arguments: the seeded generator where the step draws noise."""
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params else {}
