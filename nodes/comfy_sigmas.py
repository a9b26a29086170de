"""ComfyUI's noise levels: for SD 1.x/2.x/SDXL the model's table of 1,000 discrete sigmas, the sigma <->
timestep mapping its UNet is called with, and the schedules under ComfyUI's names; for SD 3.x and Flux.1
the shifted rectified-flow table (:class:`FlowSigmas`), on which the same schedules run.

ComfyUI builds the table from the model's beta schedule in float64 and keeps it in float32; a sigma
maps to the nearest table entry's index (in log space) as the UNet's timestep, and a fractional
timestep maps back by interpolating log sigmas. The schedules pick ``steps`` levels from that table
and end at 0:

================  =====================================================================================
schedule          levels (``steps`` of them, then 0)
================  =====================================================================================
normal            the sigmas of ``steps`` timesteps evenly spaced from 999 down to 0 (interpolated)
sgm_uniform       the same with ``steps + 1`` timesteps, the last (0) dropped
karras            Karras et al.'s ramp between the table's ends, rho 7
exponential       evenly spaced in log sigma between the table's ends
simple            every ``1000 / steps``-th table entry from the top
ddim_uniform      every ``1000 // steps``-th entry from index 1 up, reversed (may give one level more)
beta              the entries at the Beta(0.6, 0.6) quantiles of ``1 - i / steps``, repeats dropped
kl_optimal        ``tan`` of ``steps`` points evenly spaced from ``atan(sigma_max)`` to ``atan(sigma_min)``
linear_quadratic  ``sigma_max`` times one minus Mochi's ramp (linear to 0.025 for half the steps, then
                  quadratic to 1)
================  =====================================================================================

``KSampler`` semantics on top (:func:`ksampler_sigmas`): ``denoise`` below 1 keeps the last ``steps + 1``
levels of an ``int(steps / denoise)``-step schedule; ``dpm_2``, ``dpm_2_ancestral``, ``unipc`` and
``unipc_bh2`` compute one step more and drop the last level above 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gouache.engine import InputError

SCHEDULES = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta", "linear_quadratic",
             "kl_optimal")
"""The schedules ComfyUI's convention follows, by ComfyUI's names."""

DISCARD_PENULTIMATE = ("dpm_2", "dpm_2_ancestral", "unipc", "unipc_bh2")
"""Samplers whose KSampler schedule has one step more with the last level above 0 dropped (as ComfyUI's)."""

PREDICTIONS = ("epsilon", "v_prediction")


class _Levels:
    """What every noise-level table gives from its increasing ``sigmas``."""

    sigmas: Any

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])


@dataclass(frozen=True, eq=False)
class DiscreteSigmas(_Levels):
    """A discrete-time model's noise levels as ComfyUI keeps them (``ModelSamplingDiscrete``)."""

    sigmas: Any
    """float32 [T], increasing with the timestep."""
    log_sigmas: Any
    prediction: str
    """``epsilon`` or ``v_prediction``: what the UNet predicts."""

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "model") -> DiscreteSigmas:
        """The table for a diffusers scheduler config (``beta_start``, ``beta_end``, ``beta_schedule``...)."""
        import torch

        count = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        schedule = config.get("beta_schedule", "scaled_linear")
        if schedule == "scaled_linear":  # ComfyUI (and ldm) call this one "linear"
            betas = torch.linspace(start ** 0.5, end ** 0.5, count, dtype=torch.float64) ** 2
        elif schedule == "linear":
            betas = torch.linspace(start, end, count, dtype=torch.float64)
        else:
            raise InputError(name, f"ComfyUI's convention covers models trained on the scaled_linear or linear beta "
                                   f"schedule; this one uses {schedule!r}: use the gouache convention", "unsupported")
        if config.get("rescale_betas_zero_snr"):
            raise InputError(name, "ComfyUI's convention does not cover zero-terminal-SNR models yet: use the gouache "
                                   "convention", "unsupported")
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in PREDICTIONS:
            raise InputError(name, f"ComfyUI's convention covers epsilon and v_prediction models; this one predicts "
                                   f"{prediction!r}: use the gouache convention", "unsupported")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return cls(sigmas.float(), sigmas.log().float(), prediction)

    def timestep(self, sigma: Any) -> Any:
        """The index of the table entry nearest ``sigma`` in log space (a tensor of ``sigma``'s shape)."""
        distance = (sigma.log().reshape(1, -1) - self.log_sigmas.reshape(-1, 1)).abs()
        return distance.argmin(dim=0).reshape(sigma.shape)

    def percent(self, sigma: float) -> float:
        """How far along the timesteps ``sigma`` lies, 0 at the largest sigma and 1 at the smallest (the inverse
        of ComfyUI's ``percent_to_sigma``: timesteps from the log-sigma table, interpolated)."""
        import numpy

        logs = self.log_sigmas.double().numpy()
        timestep = float(numpy.interp(math.log(max(sigma, 1e-30)), logs, numpy.arange(len(logs))))
        return 1.0 - timestep / (len(logs) - 1)

    def sigma(self, timestep: Any) -> Any:
        """The sigma at a (fractional) timestep, interpolating log sigmas between the two entries around it."""
        import torch

        t = torch.as_tensor(timestep, dtype=torch.float32).clamp(0, len(self.sigmas) - 1)
        low, high, weight = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - weight) * self.log_sigmas[low] + weight * self.log_sigmas[high]).exp()


@dataclass(frozen=True, eq=False)
class FlowSigmas(_Levels):
    """A rectified-flow model's noise levels as ComfyUI keeps them: ``ModelSamplingDiscreteFlow`` (SD 3.x, Flux.1
    schnell) or ``ModelSamplingFlux`` (Flux.1 dev), both with the ``CONST`` prediction (the model predicts the
    velocity ``v``; ``x0 = x - sigma * v``; a latent is noised to ``sigma * noise + (1 - sigma) * x0``).

    Both tables are ``sigma(i / count)`` for ``i`` in ``1..count`` with ``sigma(t) = shift * t / (1 + (shift - 1) * t)``
    (``ModelSamplingFlux`` writes it ``e^mu / (e^mu + 1 / t - 1)``: the same with ``shift = e^mu``); the model is
    called at timestep ``sigma * multiplier``.
    """

    sigmas: Any
    """float32 [count], increasing."""
    shift: float
    multiplier: float
    mu: float | None = None
    """``ModelSamplingFlux``'s shift (``shift`` is then ``e^mu``), whose formula rounds its own way in float32."""
    prediction: str = "const"

    @classmethod
    def discrete_flow(cls, shift: float, multiplier: float = 1000.0, count: int = 1000) -> FlowSigmas:
        """``ModelSamplingDiscreteFlow``: SD 3.x (shift 3, multiplier 1000), Flux.1 schnell (shift 1, multiplier 1)."""
        import torch

        partial = cls(None, float(shift), float(multiplier))
        table = partial.sigma((torch.arange(1, count + 1, 1) / count) * float(multiplier))
        return cls(table, float(shift), float(multiplier))

    @classmethod
    def flux(cls, mu: float, count: int = 10000) -> FlowSigmas:
        """``ModelSamplingFlux``: Flux.1 dev (``mu`` 1.15 unless changed), timestep = sigma, 10,000 entries."""
        import torch

        partial = cls(None, math.exp(mu), 1.0, float(mu))
        return cls(partial.sigma(torch.arange(1, count + 1, 1) / count), math.exp(mu), 1.0, float(mu))

    def timestep(self, sigma: Any) -> Any:
        """The model's timestep at ``sigma`` (a tensor of ``sigma``'s shape)."""
        return sigma * self.multiplier

    def sigma(self, timestep: Any) -> Any:
        """The shifted sigma at a (fractional) timestep."""
        import torch

        t = torch.as_tensor(timestep, dtype=torch.float32) / self.multiplier
        if self.mu is not None:
            return math.exp(self.mu) / (math.exp(self.mu) + (1 / t - 1))
        if self.shift == 1.0:
            return t
        return self.shift * t / (1 + (self.shift - 1.0) * t)

    def percent(self, sigma: float) -> float:
        """How far along the timesteps ``sigma`` lies (the inverse of ComfyUI's ``percent_to_sigma``)."""
        if sigma >= 1.0:
            return 0.0
        if sigma <= 0.0:
            return 1.0
        return 1.0 - sigma / (self.shift - (self.shift - 1.0) * sigma)


COMFY_FLUX_MU = 1.15
"""``ModelSamplingFlux``'s shift for Flux.1 dev when no ``ModelSamplingFlux`` node sets one (ComfyUI's Flux
config fixes it; it does not follow the image's size)."""


def comfy_table(loaded: Any, overrides: dict[str, Any] | None = None, name: str = "model") -> DiscreteSigmas | FlowSigmas:
    """ComfyUI's noise levels for a loaded checkpoint; ``overrides``: the MODEL's scheduler settings (``FlowShift``'s
    ``shift``, which for Flux.1 dev stands for ComfyUI's ``ModelSamplingFlux`` shift ``mu = ln(shift)``)."""
    family = loaded.family
    if family.sampling != "flow":
        return DiscreteSigmas.from_config(loaded.scheduler_config, name)
    config = {**loaded.scheduler_config, **(overrides or {})}
    if family.latent.packing == 1:  # SD 3.x
        return FlowSigmas.discrete_flow(float(config.get("shift", 3.0)), 1000.0)
    transformer = loaded.denoiser
    if transformer is not None and not transformer.config.guidance_embeds:  # Flux.1 schnell
        return FlowSigmas.discrete_flow(float(config.get("shift", 1.0)), 1.0)
    if overrides and "shift" in overrides:
        shift = float(overrides["shift"])
        if shift <= 0:
            raise InputError(name, f"a Flux.1 shift must be above 0 in ComfyUI's convention (it is e^mu), not {shift}",
                             "out_of_range")
        return FlowSigmas.flux(math.log(shift))
    return FlowSigmas.flux(COMFY_FLUX_MU)


def schedule_sigmas(table: DiscreteSigmas | FlowSigmas, schedule: str, steps: int) -> list[float]:
    """The noise levels of ``schedule`` in ``steps`` steps (ending at 0), as ComfyUI's ``calculate_sigmas``."""
    import torch

    if schedule in ("normal", "sgm_uniform"):
        start, end = float(table.timestep(torch.tensor(table.sigma_max))), float(table.timestep(torch.tensor(table.sigma_min)))
        if schedule == "sgm_uniform":
            times = torch.linspace(start, end, steps + 1)[:-1]
            return [float(table.sigma(t)) for t in times] + [0.0]
        ends_at_zero = math.isclose(float(table.sigma(end)), 0.0, abs_tol=1e-5)
        times = torch.linspace(start, end, steps + 1 if ends_at_zero else steps)
        return [float(table.sigma(t)) for t in times] + ([] if ends_at_zero else [0.0])
    if schedule == "karras":
        rho = 7.0
        low, high = table.sigma_min ** (1 / rho), table.sigma_max ** (1 / rho)
        levels = (high + torch.linspace(0, 1, steps) * (low - high)) ** rho
        return [float(s) for s in levels] + [0.0]
    if schedule == "exponential":
        levels = torch.linspace(math.log(table.sigma_max), math.log(table.sigma_min), steps).exp()
        return [float(s) for s in levels] + [0.0]
    count = len(table.sigmas)
    if schedule == "simple":
        stride = count / steps
        return [float(table.sigmas[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]
    if schedule == "ddim_uniform":
        first_is_zero = math.isclose(float(table.sigmas[1]), 0.0, abs_tol=1e-5)
        stride = max(count // (steps + 1 if first_is_zero else steps), 1)
        picked = [float(table.sigmas[index]) for index in range(1, count, stride)]
        return picked[::-1] + ([] if first_is_zero else [0.0])
    if schedule == "beta":
        import numpy
        from scipy.stats import beta

        times = numpy.rint(beta.ppf(1 - numpy.linspace(0, 1, steps, endpoint=False), 0.6, 0.6) * (count - 1))
        levels: list[float] = []
        for index, t in enumerate(times):
            if index == 0 or t != times[index - 1]:
                levels.append(float(table.sigmas[int(t)]))
        return levels + [0.0]
    if schedule == "kl_optimal":
        share = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)  # ComfyUI divides 0 by 0 for one step
        levels = (share * math.atan(table.sigma_min) + (1 - share) * math.atan(table.sigma_max)).tan()
        return [float(s) for s in levels] + [0.0]
    if schedule == "linear_quadratic":
        return [float(s) for s in torch.tensor(_linear_quadratic(steps)) * table.sigmas[-1]]
    raise InputError("scheduler", f"unknown schedule {schedule!r}; ComfyUI's convention takes {', '.join(SCHEDULES)}",
                     "not_a_choice")


def _linear_quadratic(steps: int, threshold: float = 0.025) -> list[float]:
    """Mochi's schedule on [0, 1] (1 = all noise): half the steps fall linearly to ``1 - threshold``, the rest
    along a quadratic to 0, which meets the line at the half."""
    if steps == 1:
        return [1.0, 0.0]
    linear = steps // 2
    quadratic = steps - linear
    gap = linear - threshold * steps
    a = gap / (linear * quadratic ** 2)
    b = threshold / linear - 2 * gap / quadratic ** 2
    c = a * linear ** 2
    ramp = [i * threshold / linear for i in range(linear)] + [a * i ** 2 + b * i + c for i in range(linear, steps)]
    return [1.0 - x for x in ramp + [1.0]]


def basic_scheduler_sigmas(table: DiscreteSigmas | FlowSigmas, schedule: str, steps: int, denoise: float) -> list[float]:
    """ComfyUI's ``BasicScheduler``: ``denoise`` below 1 keeps the last ``steps + 1`` levels of an
    ``int(steps / denoise)``-step schedule; 0 gives none."""
    if denoise >= 1.0:
        return schedule_sigmas(table, schedule, steps)
    if denoise <= 0.0:
        return []
    return schedule_sigmas(table, schedule, int(steps / denoise))[-(steps + 1):]


def ksampler_sigmas(table: DiscreteSigmas | FlowSigmas, sampler: str, schedule: str, steps: int, denoise: float) -> list[float]:
    """The levels ComfyUI's ``KSampler`` runs: ``denoise`` as in :func:`basic_scheduler_sigmas` (kept from 0.9999
    up as a whole run), and the penultimate level dropped for the samplers of :data:`DISCARD_PENULTIMATE`."""
    def levels(count: int) -> list[float]:
        if sampler in DISCARD_PENULTIMATE:
            full = schedule_sigmas(table, schedule, count + 1)
            return full[:-2] + full[-1:]
        return schedule_sigmas(table, schedule, count)

    if denoise > 0.9999:
        return levels(steps)
    if denoise <= 0.0:
        return []
    return levels(int(steps / denoise))[-(steps + 1):]


def window(sigmas: list[float], start: int | None, end: int | None, full_denoise: bool) -> list[float] | None:
    """``KSamplerAdvanced``'s window of a schedule: up to ``end`` (its level set to 0 when ``full_denoise``),
    from ``start``; ``None`` when ``start`` leaves no step (the latent is returned as it is)."""
    levels = list(sigmas)
    if end is not None and end < len(levels) - 1:
        levels = levels[:end + 1]
        if full_denoise:
            levels[-1] = 0.0
    if start is not None and start > 0:
        if start >= len(levels) - 1:
            return None
        levels = levels[start:]
    return levels
