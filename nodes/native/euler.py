"""The Euler sampler without diffusers: ``EulerDiscreteScheduler``'s timesteps, sigmas and steps, number for number.

``Sampler``'s default (``euler`` on any of the schedules ``normal``, ``karras`` and ``sgm_uniform``) needs no more
than this, so a render of the embedded model can skip importing diffusers. The schedule is built with the same
float32 / float64 operations in the same order as diffusers 0.42's, so timesteps, sigmas and every step's latents are
bit-identical (``tests/nodes/test_native_euler.py`` holds them equal). Configs outside what is implemented
(exponential or beta sigmas, ``log_linear`` interpolation, continuous timesteps) are refused with
``UnsupportedConfig``; ``covers`` says beforehand, so a caller can fall back to diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import torch

from . import UnsupportedConfig
from .config import ModuleConfig, require

__all__ = ["DEFAULTS", "EulerOutput", "NativeEulerDiscrete", "covers"]

DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "prediction_type": "epsilon", "interpolation_type": "linear", "use_karras_sigmas": False,
    "use_exponential_sigmas": False, "use_beta_sigmas": False, "sigma_min": None, "sigma_max": None,
    "timestep_spacing": "linspace", "timestep_type": "discrete", "steps_offset": 0, "rescale_betas_zero_snr": False,
    "final_sigmas_type": "zero",
}
"""``EulerDiscreteScheduler.__init__``'s parameters and defaults (a test keeps them equal to the installed ones)."""

_WHAT = "EulerDiscreteScheduler"


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_RULES: dict[str, Any] = {
    "num_train_timesteps": lambda value: _whole(value) and value >= 2,
    "beta_start": _number,
    "beta_end": _number,
    "trained_betas": lambda value: value is None or (isinstance(value, (list, tuple, np.ndarray)) and len(value) >= 2
                                                     and all(map(_number, value))),
    "prediction_type": ("epsilon", "v_prediction", "sample", "original_sample"),
    # diffusers' log_linear makes one sigma more than it has timesteps: not a schedule worth matching
    "interpolation_type": ("linear",),
    "use_karras_sigmas": (False, True, None),
    "use_exponential_sigmas": (False, None),
    "use_beta_sigmas": (False, None),
    "sigma_min": lambda value: value is None or (_number(value) and value >= 0),
    "sigma_max": lambda value: value is None or (_number(value) and value > 0),
    "timestep_spacing": ("linspace", "leading", "trailing"),
    "timestep_type": ("discrete",),
    "steps_offset": _whole,
    "rescale_betas_zero_snr": (False, True),
    "final_sigmas_type": ("zero", "sigma_min"),
}
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _checked(config: Mapping[str, Any]) -> ModuleConfig:
    """``config`` over the defaults, refused with ``UnsupportedConfig`` where it asks for what is not implemented.

    Keys diffusers' Euler does not take (another scheduler's ``clip_sample``) are kept and ignored, as diffusers
    keeps and ignores them; ``_class_name`` names the class this one acts as, as diffusers records its own.
    """
    full = ModuleConfig.of({**config, "_class_name": _WHAT}, DEFAULTS)
    require(full, _WHAT, _RULES)
    if full.trained_betas is None:  # trained betas replace the named schedule, as in diffusers
        require(full, _WHAT, {"beta_schedule": _BETA_SCHEDULES})
    elif len(full.trained_betas) != full.num_train_timesteps:
        raise UnsupportedConfig(f"{_WHAT} config trained_betas has {len(full.trained_betas)} values for "
                                f"num_train_timesteps={full.num_train_timesteps}")
    return full


def covers(config: Mapping[str, Any]) -> bool:
    """Whether ``NativeEulerDiscrete.from_config(config)`` accepts ``config`` (else use diffusers' class)."""
    try:
        _checked(config)
    except UnsupportedConfig:
        return False
    return True


class EulerOutput(NamedTuple):
    """One step's result, read as diffusers' ``EulerDiscreteSchedulerOutput`` is (by name or position)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _betas(config: ModuleConfig) -> torch.Tensor:
    """The training betas, float32, as the config names them."""
    count = config.num_train_timesteps
    if config.trained_betas is not None:
        return torch.tensor(config.trained_betas, dtype=torch.float32)
    if config.beta_schedule == "linear":
        return torch.linspace(config.beta_start, config.beta_end, count, dtype=torch.float32)
    if config.beta_schedule == "scaled_linear":
        return torch.linspace(config.beta_start**0.5, config.beta_end**0.5, count, dtype=torch.float32) ** 2

    def alpha_bar(t: float) -> float:  # Glide's cosine schedule
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / count) / alpha_bar(i / count), 0.999) for i in range(count)],
                        dtype=torch.float32)


def _zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas rescaled so the last step is pure noise (Lin et al. 2023, algorithm 1), in diffusers' float32 order."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    bar = root**2
    return 1 - torch.cat([bar[:1], bar[1:] / bar[:-1]])


def _fractional_timesteps(sigmas: np.ndarray, log_table: np.ndarray) -> np.ndarray:
    """The (fractional) training timestep of each sigma: log sigma interpolated in the training table (float64)."""
    found = []
    for sigma in sigmas:
        log_sigma = np.log(np.maximum(sigma, 1e-10))
        low = min(int(np.cumsum(log_sigma - log_table >= 0).argmax()), len(log_table) - 2)
        below, above = log_table[low], log_table[low + 1]
        weight = np.clip((below - log_sigma) / (below - above), 0, 1)
        found.append((1 - weight) * low + weight * (low + 1))
    return np.array(found)


class NativeEulerDiscrete:
    """diffusers' ``EulerDiscreteScheduler`` (Karras et al.'s Euler method with optional churn) for the configs
    ``covers`` accepts, with the attributes and methods gouache's sampling loop reads."""

    order = 1

    def __init__(self, config: Mapping[str, Any]):
        self.config = _checked(config)
        betas = _betas(self.config)
        if self.config.rescale_betas_zero_snr:
            betas = _zero_terminal_snr(betas)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        if self.config.rescale_betas_zero_snr:
            self.alphas_cumprod[-1] = 2**-24  # near 0 but not 0, so the first sigma stays finite
        count = self.config.num_train_timesteps
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(np.linspace(0, count - 1, count)[::-1].copy()).to(torch.float32)
        self.sigmas = torch.cat([self._training_sigmas().flip(0), torch.zeros(1)])
        self._step_index: int | None = None
        self._begin_index: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NativeEulerDiscrete:
        """The scheduler for a stored diffusers scheduler config (``_`` keys and other schedulers' keys ignored)."""
        return cls(config)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def _training_sigmas(self) -> torch.Tensor:
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        """The initial noise's standard deviation: the largest sigma (with the unit signal added for ``leading``)."""
        largest = self.sigmas.max()
        return largest if self.config.timestep_spacing in ("linspace", "trailing") else (largest**2 + 1) ** 0.5

    @property
    def step_index(self) -> int | None:
        """The index of the next step's sigma; ``None`` until the first step or ``scale_model_input``."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """Where the run starts in the schedule, as ``set_begin_index`` set it."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``begin_index`` of the schedule (a window of it, or img2img), whatever the first timestep."""
        self._begin_index = begin_index

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Space ``num_inference_steps`` timesteps and their sigmas (plus the final one) over the training schedule."""
        config, steps = self.config, num_inference_steps
        self.num_inference_steps = steps
        train = config.num_train_timesteps
        if config.timestep_spacing == "linspace":
            timesteps = np.linspace(0, train - 1, steps, dtype=np.float32)[::-1].copy()
        elif config.timestep_spacing == "leading":
            timesteps = (np.arange(0, steps) * (train // steps)).round()[::-1].copy().astype(np.float32)
            timesteps += config.steps_offset
        else:  # trailing
            timesteps = np.arange(train, 0, -(train / steps)).round().copy().astype(np.float32) - 1
        table = self._training_sigmas().numpy()
        sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
        if config.use_karras_sigmas:
            sigmas = self._karras(sigmas, steps)
            timesteps = _fractional_timesteps(sigmas, np.log(table))
        last = 0.0 if config.final_sigmas_type == "zero" else float(self._training_sigmas()[0])
        sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)
        self.sigmas = torch.from_numpy(sigmas).to(device="cpu")  # stepping reads them one by one on the CPU
        self._step_index = None
        self._begin_index = None

    def _karras(self, sigmas: np.ndarray, steps: int) -> np.ndarray:
        """Karras et al.'s rho-7 spacing between the config's (else the schedule's) smallest and largest sigma."""
        low = self.config.sigma_min if self.config.sigma_min is not None else sigmas[-1].item()
        high = self.config.sigma_max if self.config.sigma_max is not None else sigmas[0].item()
        rho = 7.0
        low_root, high_root = low ** (1 / rho), high ** (1 / rho)
        return (high_root + np.linspace(0, 1, steps) * (low_root - high_root)) ** rho

    def index_for_timestep(self, timestep: float | torch.Tensor, schedule: torch.Tensor | None = None) -> int:
        """Where ``timestep`` is in the schedule; of several matches the second, so starting mid-schedule
        (img2img) does not skip a sigma."""
        matches = ((self.timesteps if schedule is None else schedule) == timestep).nonzero()
        return matches[1 if len(matches) > 1 else 0].item()

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self._begin_index is not None:
            self._step_index = self._begin_index
            return
        if isinstance(timestep, torch.Tensor):
            timestep = timestep.to(self.timesteps.device)
        self._step_index = self.index_for_timestep(timestep)

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor) -> torch.Tensor:
        """``sample`` at the current step, scaled to unit variance for the model: divided by sqrt(sigma^2 + 1)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        return sample / ((sigma**2 + 1) ** 0.5)

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor, sample: torch.Tensor,
             s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
             generator: torch.Generator | None = None, return_dict: bool = True) -> EulerOutput | tuple:
        """One Euler step from the current sigma to the next, after raising the noise by ``s_churn`` (drawn from
        ``generator``) where the sigma lies in ``[s_tmin, s_tmax]``; in float32, returned in the model's dtype."""
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()):
            raise ValueError("step() takes one of scheduler.timesteps, not an integer index into them")
        if self._step_index is None:
            self._init_step_index(timestep)
        sample = sample.to(torch.float32)
        sigma = self.sigmas[self._step_index]
        gamma = min(s_churn / (len(self.sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            # a CPU generator draws on the CPU whatever the device, as diffusers' randn_tensor does
            where = "cpu" if generator is not None and generator.device.type == "cpu" else model_output.device
            noise = torch.randn(model_output.shape, generator=generator, device=where, dtype=model_output.dtype)
            sample = sample + noise.to(model_output.device) * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        kind = self.config.prediction_type
        if kind == "epsilon":
            denoised = sample - sigma_hat * model_output
        elif kind == "v_prediction":
            denoised = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
        else:  # "sample" (or its old name "original_sample"): the model predicts x0 itself
            denoised = model_output
        derivative = (sample - denoised) / sigma_hat
        prev_sample = (sample + derivative * (self.sigmas[self._step_index + 1] - sigma_hat)).to(model_output.dtype)
        self._step_index += 1
        return EulerOutput(prev_sample, denoised) if return_dict else (prev_sample, denoised)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``original_samples`` noised to the sigma of ``timesteps`` (of the begin or current step once set)."""
        device = original_samples.device
        sigmas = self.sigmas.to(device=device, dtype=original_samples.dtype)
        timesteps = timesteps.to(device)
        if self._begin_index is None:
            schedule = self.timesteps.to(device)
            indices = [self.index_for_timestep(t, schedule) for t in timesteps]
        else:  # before the first step: the begin index; after it (inpainting): the current step
            indices = [self._begin_index if self._step_index is None else self._step_index] * timesteps.shape[0]
        sigma = sigmas[indices].flatten()
        sigma = sigma.reshape(sigma.shape + (1,) * (original_samples.ndim - sigma.ndim))
        return original_samples + noise * sigma
