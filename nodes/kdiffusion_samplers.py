"""Samplers in k-diffusion's convention, under ComfyUI's names, with ComfyUI's noise streams.

A sampler integrates ``x`` down a list of noise levels ``sigmas`` (the last usually 0) with a denoiser
``model(x, sigma)`` that returns its estimate of the clean latent (k-diffusion's and ComfyUI's
convention: ``x = x0 + sigma * noise``, no variance-preserving scaling). Each one is written from the
method it names (Euler, Heun, DPM-Solver-2, linear multistep, DPM-Solver++ 2M / SDE / 3M SDE) so that
on the same sigmas, noise and denoiser it takes the steps the ``k-diffusion`` package's ``sample_*``
functions take; ``tests/nodes/test_comfy_sampling.py`` compares them.

Step noise follows ComfyUI: the ancestral samplers draw ``randn`` from a generator on the latent's
device seeded with the sampler's seed; the SDE samplers read increments of a Brownian tree
(``torchsde.BrownianTree`` on the CPU, entropy = the seed) spanning the window's smallest and largest
nonzero sigma, scaled to unit variance. ``ddim`` is Euler (ComfyUI runs DDIM as Euler, which is the
same method at eta 0). ``unipc`` and ``unipc_bh2`` are UniPC (B(h) = h and e^h - 1, order 3),
``nodes/unipc_sampler.py``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

Denoiser = Callable[[Any, Any], Any]
"""``model(x, sigma) -> x0``: ``sigma`` a 0-dim float32 tensor."""
Callback = Callable[[int, Any, Any], None]
"""``callback(step, x, x0)`` once per step, with the step's first estimate (ComfyUI's callback)."""
NoiseSampler = Callable[[Any, Any], Any]
"""``noise(sigma, sigma_next)``: unit-variance noise for the step between those levels."""


def seeded_noise(x: Any, seed: int) -> NoiseSampler:
    """ComfyUI's ancestral noise: each call a fresh ``randn`` from one generator on ``x``'s device seeded
    with ``seed`` (so on the CPU the first draw repeats the initial noise of the same seed)."""
    import torch

    generator = torch.Generator(device=x.device).manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, dtype=x.dtype, layout=x.layout, device=x.device,
                                                 generator=generator)


def brownian_noise(x: Any, sigmas: Any, seed: int) -> NoiseSampler:
    """ComfyUI's SDE noise: increments of a Brownian tree over ``[min nonzero sigma, max sigma]`` on the CPU,
    entropy ``seed``, divided by the square root of the interval so they have unit variance."""
    import torch
    import torchsde

    low, high = sigmas[sigmas > 0].min().cpu(), sigmas.max().cpu()
    tree = torchsde.BrownianTree(low, torch.zeros(x.shape, dtype=x.dtype), high, entropy=seed)

    def increment(sigma: Any, sigma_next: Any) -> Any:
        a, b = torch.as_tensor(sigma).cpu().float(), torch.as_tensor(sigma_next).cpu().float()
        lower, upper, sign = (a, b, 1) if a < b else (b, a, -1)
        with warnings.catch_warnings():
            # torchsde keeps the interval's ends rounded, so a query at the window's own largest sigma reads
            # as just past it; it is clamped to the end, which is where it is
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            walk = tree(lower, upper) * sign  # W(b) - W(a), also when sigma falls from a to b
        return walk.to(device=x.device, dtype=x.dtype) / (b - a).abs().sqrt().to(x.device)

    return increment


def _ancestral(sigma: Any, sigma_next: Any) -> tuple[Any, Any]:
    """Split a step to ``sigma_next`` into a deterministic step to ``down`` and fresh noise of size ``up``
    (eta 1): the variance ``sigma_next^2`` is kept."""
    up = min(sigma_next, (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    return (sigma_next ** 2 - up ** 2) ** 0.5, up


def _slope(x: Any, sigma: Any, x0: Any) -> Any:
    """dx/dsigma of the probability-flow ODE at ``x``."""
    return (x - x0) / sigma


def _euler_step(model: Denoiser, x: Any, x0: Any, sigma: Any, target: Any) -> Any:
    """Euler: follow the slope at ``sigma`` down to ``target``."""
    return x + _slope(x, sigma, x0) * (target - sigma)


def _heun_step(model: Denoiser, x: Any, x0: Any, sigma: Any, target: Any) -> Any:
    """Heun: Euler's guess, then the mean of both ends' slopes (Euler alone into 0)."""
    if target == 0:
        return _euler_step(model, x, x0, sigma, target)
    guess = _euler_step(model, x, x0, sigma, target)
    slope_next = _slope(guess, target, model(guess, target))
    return x + (_slope(x, sigma, x0) + slope_next) / 2 * (target - sigma)


def _dpm_2_step(model: Denoiser, x: Any, x0: Any, sigma: Any, target: Any) -> Any:
    """DPM-Solver-2: the slope at the log-space midpoint of ``sigma`` and ``target`` (Euler alone into 0)."""
    if target == 0:
        return _euler_step(model, x, x0, sigma, target)
    middle = sigma.log().lerp(target.log(), 0.5).exp()
    half = x + _slope(x, sigma, x0) * (middle - sigma)
    return x + _slope(half, middle, model(half, middle)) * (target - sigma)


def _one_step_sampler(step: Callable[..., Any], ancestral: bool) -> Callable[..., Any]:
    """A sampler taking ``step`` from each level to the next; ``ancestral``: to the lower level ``down`` of
    :func:`_ancestral`, then fresh noise of size ``up`` from :func:`seeded_noise`."""

    def sampler(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
        noise = seeded_noise(x, seed) if ancestral else None
        for i in range(len(sigmas) - 1):
            x0 = model(x, sigmas[i])
            callback(i, x, x0)
            if noise is None:
                x = step(model, x, x0, sigmas[i], sigmas[i + 1])
                continue
            down, up = _ancestral(sigmas[i], sigmas[i + 1])
            x = step(model, x, x0, sigmas[i], down)
            if sigmas[i + 1] > 0:
                x = x + noise(sigmas[i], sigmas[i + 1]) * up
        return x

    return sampler


euler = _one_step_sampler(_euler_step, ancestral=False)
euler_ancestral = _one_step_sampler(_euler_step, ancestral=True)
heun = _one_step_sampler(_heun_step, ancestral=False)
dpm_2 = _one_step_sampler(_dpm_2_step, ancestral=False)
dpm_2_ancestral = _one_step_sampler(_dpm_2_step, ancestral=True)


def _lms_weight(levels: Any, i: int, order: int, j: int) -> float:
    """The integral over [levels[i], levels[i+1]] of the Lagrange basis polynomial of the j-th latest level."""
    from scipy import integrate

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - levels[i - k]) / (levels[i - j] - levels[i - k])
        return product

    return integrate.quad(basis, levels[i], levels[i + 1], epsrel=1e-4)[0]


def lms(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback, order: int = 4) -> Any:
    levels = sigmas.detach().cpu().numpy()
    slopes: list[Any] = []
    for i in range(len(sigmas) - 1):
        x0 = model(x, sigmas[i])
        slopes = [*slopes[-(order - 1):], _slope(x, sigmas[i], x0)]
        callback(i, x, x0)
        used = min(i + 1, order)
        weights = [_lms_weight(levels, i, used, j) for j in range(used)]
        x = x + sum(weight * slope for weight, slope in zip(weights, reversed(slopes)))
    return x


def _log_step(sigma: Any, sigma_next: Any) -> Any:
    """h: how far a step goes in -log sigma."""
    return sigma.log() - sigma_next.log()


def dpmpp_2m(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    previous = None
    for i in range(len(sigmas) - 1):
        x0 = model(x, sigmas[i])
        callback(i, x, x0)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        estimate = x0
        if previous is not None and sigmas[i + 1] != 0:
            ratio = (t - sigmas[i - 1].log().neg()) / h
            estimate = (1 + 1 / (2 * ratio)) * x0 - (1 / (2 * ratio)) * previous
        x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * estimate
        previous = x0
    return x


def dpmpp_2m_sde(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    noise = brownian_noise(x, sigmas, seed)
    previous, h_previous = None, None
    for i in range(len(sigmas) - 1):
        x0 = model(x, sigmas[i])
        callback(i, x, x0)
        if sigmas[i + 1] == 0:
            x = x0
        else:
            h = _log_step(sigmas[i], sigmas[i + 1])
            decay = (-2 * h).expm1().neg()  # 1 - e^{-2h}, with eta 1: h + eta * h = 2h
            x = sigmas[i + 1] / sigmas[i] * (-h).exp() * x + decay * x0
            if previous is not None:  # the midpoint correction from the previous estimate
                x = x + 0.5 * decay * (h / h_previous) * (x0 - previous)
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * decay.sqrt()
            h_previous = h
        previous = x0
    return x


def dpmpp_sde(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    noise = brownian_noise(x, sigmas, seed)
    r = 0.5
    for i in range(len(sigmas) - 1):
        x0 = model(x, sigmas[i])
        callback(i, x, x0)
        if sigmas[i + 1] == 0:
            x = x + _slope(x, sigmas[i], x0) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        s = t + (t_next - t) * r
        sigma_s = s.neg().exp()
        # first stage: an ancestral DPM-Solver++(1) step to the intermediate level sigma_s
        down, up = _ancestral(t.neg().exp(), sigma_s)
        x_mid = (down / t.neg().exp()) * x - (t - down.log().neg()).expm1() * x0
        x_mid = x_mid + noise(sigmas[i], sigma_s) * up  # ComfyUI queries the tree at the levels themselves
        x0_mid = model(x_mid, sigma_s)
        # second stage: the whole step with the two estimates mixed
        down, up = _ancestral(t.neg().exp(), t_next.neg().exp())
        mixed = (1 - 1 / (2 * r)) * x0 + (1 / (2 * r)) * x0_mid
        x = (down / t.neg().exp()) * x - (t - down.log().neg()).expm1() * mixed
        x = x + noise(sigmas[i], sigmas[i + 1]) * up
    return x


def dpmpp_3m_sde(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    noise = brownian_noise(x, sigmas, seed)
    x0_1 = x0_2 = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        x0 = model(x, sigmas[i])
        callback(i, x, x0)
        h = None
        if sigmas[i + 1] == 0:
            x = x0
        else:
            h = _log_step(sigmas[i], sigmas[i + 1])
            h_eta = 2 * h  # eta 1
            x = (-h_eta).exp() * x + (-h_eta).expm1().neg() * x0
            phi_2 = (-h_eta).expm1() / h_eta + 1
            if h_2 is not None:  # third order from the two previous estimates
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (x0 - x0_1) / r0, (x0_1 - x0_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (x0 - x0_1) / (h_1 / h)
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h).expm1().neg().sqrt()
        x0_1, x0_2 = x0, x0_1
        h_1, h_2 = h, h_1
    return x


def unipc(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    from gouache.nodes.unipc_sampler import sample_unipc

    return sample_unipc(model, x, sigmas, callback)


def unipc_bh2(model: Denoiser, x: Any, sigmas: Any, seed: int, callback: Callback) -> Any:
    from gouache.nodes.unipc_sampler import sample_unipc

    return sample_unipc(model, x, sigmas, callback, variant="bh2")


SAMPLERS: dict[str, Callable[..., Any]] = {
    "euler": euler, "euler_ancestral": euler_ancestral, "heun": heun, "dpm_2": dpm_2,
    "dpm_2_ancestral": dpm_2_ancestral, "lms": lms, "dpmpp_2m": dpmpp_2m, "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_sde": dpmpp_sde, "dpmpp_3m_sde": dpmpp_3m_sde, "ddim": euler, "unipc": unipc, "unipc_bh2": unipc_bh2,
}
"""Our sampler name -> its k-diffusion-convention function ``(model, x, sigmas, seed, callback) -> x``."""

RANDOM_INPAINT_NOISE = ("ddim",)
"""Samplers whose masked-out area is re-noised with noise of ``seed + 1`` rather than the initial noise
(ComfyUI's ``inpaint_options={"random": True}``)."""
