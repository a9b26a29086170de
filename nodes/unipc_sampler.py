"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework") as ComfyUI's ``uni_pc`` runs it.

ComfyUI integrates in the variance-preserving coordinates ``x_vp = x / sqrt(1 + sigma^2)`` with the data
prediction (``x0``) form, B(h) = h ("bh1"), multistep, order ``min(3, steps - 1)`` with lower orders for the
first and last steps, a corrector after every step but the last (the model value at the predicted point
is reused for the next step, so each step costs one model call), and the final level 0 replaced by 0.001,
the result divided by that level's ``alpha``. In sigma terms: ``alpha = 1 / sqrt(1 + sigma^2)``,
``std = sigma * alpha`` and ``lambda = log(alpha / std) = -log(sigma)``.

One deviation: a single step (which ComfyUI's order formula turns into no step at all, returning the
noise) is taken here as one first-order step.
"""

from __future__ import annotations

from typing import Any, Callable


def _alpha(sigma: Any) -> Any:
    return 1.0 / (sigma ** 2 + 1.0) ** 0.5


def _update(data: Callable[[Any, Any], Any], x: Any, models: list[Any], levels: list[Any], sigma: Any, order: int,
            correct: bool, variant: str) -> tuple[Any, Any]:
    """One UniPC step from ``levels[-1]`` to ``sigma`` with ``order`` previous estimates; the new ``x`` and the
    model's estimate at the predicted point (``None`` without the corrector)."""
    import torch

    last, model_last = levels[-1], models[-1]
    h = last.log() - sigma.log()  # lambda(sigma) - lambda(last)
    ratios, differences = [], []
    for i in range(1, order):
        ratio = (last.log() - levels[-(i + 1)].log()) / h
        ratios.append(ratio)
        differences.append((models[-(i + 1)] - model_last) / ratio)
    rks = torch.stack([*ratios, torch.ones_like(h)])
    hh = -h
    h_phi_1 = torch.expm1(hh)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, targets = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    for i in range(1, order + 1):
        rows.append(rks ** (i - 1))
        targets.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    matrix, b = torch.stack(rows), torch.stack(targets)

    alpha = _alpha(sigma)
    base = (sigma * alpha) / (last * _alpha(last)) * x - alpha * h_phi_1 * model_last
    predicted = base
    if differences:
        rhos = [0.5] if order == 2 else torch.linalg.solve(matrix[:-1, :-1], b[:-1]).tolist()
        predicted = base - alpha * b_h * sum(rho * d for rho, d in zip(rhos, differences))
    if not correct:
        return predicted, None
    rhos_c = [0.5] if order == 1 else torch.linalg.solve(matrix, b).tolist()
    model_new = data(predicted, sigma)
    residual = sum((rho * d for rho, d in zip(rhos_c[:-1], differences)), torch.zeros_like(x))
    return base - alpha * b_h * (residual + rhos_c[-1] * (model_new - model_last)), model_new


def sample_unipc(model: Callable[[Any, Any], Any], x: Any, sigmas: Any, callback: Callable[[int, Any, Any], None],
                 variant: str = "bh1") -> Any:
    """Integrate ``x`` (k-diffusion scaling) down ``sigmas`` with the denoiser ``model(x, sigma) -> x0``."""
    levels = sigmas.clone()
    if levels[-1] == 0:
        levels[-1] = 0.001
    steps = len(levels) - 1
    order = max(1, min(3, steps - 1))

    def data(x_vp: Any, sigma: Any) -> Any:
        # ComfyUI converts the estimate to noise and back (x0 = (x_vp - std * eps) / alpha): the same x0
        return model(x_vp / _alpha(sigma), sigma)

    x = x * _alpha(levels[0])
    models, history = [data(x, levels[0])], [levels[0]]
    callback(0, x, models[-1])
    for step in range(1, steps + 1):
        step_order = min(step, order, steps + 1 - step)
        correct = step < steps
        x, model_new = _update(data, x, models, history, levels[step], step_order, correct, variant)
        if correct:
            models, history = [*models, model_new][-order:], [*history, levels[step]][-order:]
            callback(step, x, models[-1])
    return x / _alpha(levels[-1])
