"""The ``comfyui`` convention's run: ComfyUI's initial noise, its window of sigmas, its denoiser over the
model call, and a k-diffusion sampler (``nodes/kdiffusion_samplers.py``).

``gouache.nodes.sampling.sample`` prepares the model call (guidance batch, regions, ControlNets, LoRA
patches) for both conventions and hands it in as ``predict(model_input, t, step, count, when)``; this module
only decides where the model is evaluated and how ``x`` moves between evaluations, as ComfyUI does:

- initial noise: ``torch.randn`` of the latent's shape from a CPU generator seeded with the seed (ComfyUI's
  ``prepare_noise`` seeds the global generator the same way; we use our own so nothing global changes); a
  latent carrying ``batch_index`` draws one item at a time up to the largest index and keeps those listed;
- start: ``latent + noise * sigma_0``, or ``* sqrt(1 + sigma_0^2)`` when sigma_0 is the model's largest;
  flow models (``FlowSigmas``, ComfyUI's ``CONST``): ``sigma_0 * noise + (1 - sigma_0) * latent``;
- denoiser: ``x0 = D(x, sigma)`` calls the UNet on ``x / sqrt(sigma^2 + 1)`` at the timestep of the table
  entry nearest sigma, then ``x - sigma * eps`` (or the v-prediction form); a flow model is called on ``x``
  itself at timestep ``sigma * multiplier`` and ``x0 = x - sigma * v``; with a noise mask the kept area is
  reset to the latent noised to sigma before the call and to ``latent`` after it (``KSamplerX0Inpaint``);
- end: a flow run that stops above 0 (leftover noise) divides by ``1 - sigma_last``, as ComfyUI's
  ``inverse_noise_scaling`` does (the next part's noising multiplies it back);
- step noise: the sampler's own (``kdiffusion_samplers``), seeded with the same seed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from gouache.nodes.comfy_sigmas import DiscreteSigmas, FlowSigmas, ksampler_sigmas, window

Predict = Callable[[Any, Any, int, int, float], Any]
"""``predict(model_input, timestep, step, count, when)``: ``sampling.sample``'s model call."""


def comfy_noise(shape: tuple[int, ...], seed: int, batch_index: list[int] | None = None) -> Any:
    """ComfyUI's initial noise for a latent of ``shape`` (``comfy.sample.prepare_noise``), float32 on the CPU."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    if batch_index is None:
        return torch.randn(tuple(shape), generator=generator)
    wanted = sorted(set(batch_index))
    drawn = {}
    for index in range(wanted[-1] + 1):
        item = torch.randn((1, *shape[1:]), generator=generator)
        if index in wanted:
            drawn[index] = item
    return torch.cat([drawn[index] for index in batch_index])


def comfy_levels(table: DiscreteSigmas | FlowSigmas, settings: Any) -> list[float] | None:
    """The sigmas a run takes: ``SamplerCustom``'s own, or ``KSampler(Advanced)``'s schedule and window;
    ``None`` when the window leaves no step."""
    if settings.sigmas is not None:
        levels = list(settings.sigmas)
    else:
        levels = ksampler_sigmas(table, settings.sampler_name, settings.scheduler, settings.steps, settings.denoise)
        levels = window(levels, settings.start_step, settings.end_step, not settings.leftover_noise)
    return levels if levels is not None and len(levels) > 1 else None


def sample_comfy(table: DiscreteSigmas | FlowSigmas, predict: Predict, init: Any, mask: Any, batch_index: list[int] | None,
                 settings: Any, report: Callable[[int, int, Any], None]) -> tuple[Any, Any] | None:
    """Run ``settings``' sampler from ``init`` (on its device) on ``table``'s levels (``comfy_table``); the latent
    and the last step's estimate of the clean latent, or ``None`` when there is no step to take."""
    import torch

    from gouache.nodes.kdiffusion_samplers import RANDOM_INPAINT_NOISE, SAMPLERS

    levels = comfy_levels(table, settings)
    if levels is None:
        return None
    device = init.device
    sigmas = torch.tensor(levels, dtype=torch.float32, device=device)
    noise = comfy_noise(tuple(init.shape), settings.seed, batch_index) if settings.add_noise \
        else torch.zeros(tuple(init.shape))
    noise = noise.to(device)
    kept_noise = noise
    if mask is not None and settings.sampler_name in RANDOM_INPAINT_NOISE:
        kept_noise = torch.randn(tuple(init.shape), generator=torch.Generator("cpu").manual_seed(settings.seed + 1))
        kept_noise = kept_noise.to(device)
    flow = table.prediction == "const"
    first = float(levels[0])
    from_the_top = math.isclose(first, table.sigma_max, rel_tol=1e-5) or first > table.sigma_max
    if flow:
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * init
    else:
        x = noise * (torch.sqrt(1.0 + sigmas[0] ** 2.0) if from_the_top else sigmas[0]) + init

    denoise = denoiser(table, predict, init, mask, kept_noise)
    last: dict[str, Any] = {}
    total = len(levels) - 1

    def callback(index: int, x_now: Any, x0: Any) -> None:
        last["x0"] = x0
        report(index, total, x_now)

    x = SAMPLERS[settings.sampler_name](denoise, x, sigmas, settings.seed, callback)
    if flow:
        x = x / (1.0 - sigmas[-1])
    return x, last["x0"]


CONTROL_STEPS = 1_000_000
"""ControlNets are told how far along a sigma is as step ``p * CONTROL_STEPS`` of ``CONTROL_STEPS``: ComfyUI
switches them by the sigma's place in the timesteps (``start_percent``/``end_percent`` through
``percent_to_sigma``), not by the step count."""


def denoiser(table: DiscreteSigmas | FlowSigmas, predict: Predict, init: Any, mask: Any, kept_noise: Any) -> Callable[[Any, Any], Any]:
    """``D(x, sigma)``: the model's estimate of the clean latent, ComfyUI's way (see the module's docstring)."""

    def denoise(x: Any, sigma: Any) -> Any:
        sigma = sigma.reshape(())
        flow = table.prediction == "const"
        if mask is not None:
            kept = kept_noise * sigma + (1.0 - sigma) * init if flow else init + kept_noise * sigma
            x = x * mask + kept * (1 - mask)
        timestep = table.timestep(sigma.cpu()).to(x.device)
        percent = table.percent(float(sigma))
        step = min(int(percent * CONTROL_STEPS), CONTROL_STEPS - 1)
        # timestep ranges compare the unrounded timestep, as ComfyUI compares sigmas
        output = predict(x if flow else x / (sigma ** 2 + 1.0) ** 0.5, timestep.float(), step, CONTROL_STEPS,
                         (1.0 - percent) * (len(table.sigmas) - 1))
        if flow:
            x0 = x - output * sigma
        elif table.prediction == "v_prediction":
            x0 = x / (sigma ** 2 + 1.0) - output * sigma / (sigma ** 2 + 1.0) ** 0.5
        else:
            x0 = x - output * sigma
        if mask is not None:
            x0 = x0 * mask + init * (1 - mask)
        return x0

    return denoise
