"""Stage 2: train `gouache-tiny-4x`, a compact Real-ESRGAN (spandrel's SRVGGNetCompact) 4x upscaler.

Pairs are training renders (held-out triples excluded) box-downsampled 128 -> 32 px against the
128 px originals. It needs no VAE, so it can run before or beside the other stages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from spandrel import ModelLoader

from .checkpoint import Budget, Checkpointer, device, log, lr_factor
from .threads import ThreadGovernor
from .models import make_upscaler
from .train_vae import held_out_images, training_images

SCALE = 4
ARTEFACT = "gouache-tiny-4x.safetensors"
POOL = 3000  # renders drawn once; steps are then cheap, and flips/rotations vary them
LR = 1e-3


def downsample(images: np.ndarray) -> np.ndarray:
    """Box-average uint8 (N, H, W, 3) images by SCALE, like the renderer's own antialiasing."""
    n, h, w, c = images.shape
    small = images.astype(np.float32).reshape(n, h // SCALE, SCALE, w // SCALE, SCALE, c).mean(axis=(2, 4))
    return np.rint(small).astype(np.uint8)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1], the range spandrel models work in."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [0, 1]."""
    mse = (a.clamp(0, 1) - b).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse)).mean())


def bicubic(images: np.ndarray) -> torch.Tensor:
    """PIL bicubic upscaling of uint8 images, as [0, 1] tensors."""
    out = [np.asarray(Image.fromarray(im).resize((im.shape[1] * SCALE, im.shape[0] * SCALE), Image.BICUBIC)) for im in images]
    return to_unit(np.stack(out))


@torch.no_grad()
def compare_with_bicubic(path: Path, n: int = 64) -> tuple[float, float]:
    """(model PSNR, bicubic PSNR) on held-out renders, loading the model file through spandrel."""
    model = ModelLoader().load_from_file(str(path)).model.float().eval()
    hr = held_out_images(n, seed=4321)
    lr = downsample(hr)
    return psnr(model(to_unit(lr)), to_unit(hr)), psnr(bicubic(lr), to_unit(hr))


def train(work: Path, out: Path, seed: int, steps: int | None, minutes: float | None, batch: int = 16) -> Path:
    """Train (or resume) the upscaler and write `out/gouache-tiny-4x.safetensors`."""
    logfile = work / "upscaler.log"
    target = Path(out) / ARTEFACT
    dev = device()
    torch.manual_seed(seed)
    model = make_upscaler().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    budget = Budget(steps, minutes)
    ckpt = Checkpointer(work / "upscaler" / "state.pt")
    state = ckpt.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        budget.resume(state["step"], state["elapsed"])
        log(logfile, f"upscaler: resumed at step {budget.step}")
    pool_hr = to_unit(training_images(np.random.default_rng([seed, 2]), POOL))
    pool_lr = F.avg_pool2d(pool_hr, SCALE)  # the same box average as `downsample`, before rounding
    pool_lr = (pool_lr * 255).round() / 255
    threads = ThreadGovernor()
    while not budget.done:
        rng = np.random.default_rng([seed, 2, budget.step])
        idx = torch.from_numpy(rng.integers(POOL, size=batch))
        x, y = pool_lr[idx], pool_hr[idx]
        # Every shape is drawn upright, but edges of all orientations help the filters generalise.
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        k = int(rng.integers(4))
        x, y = torch.rot90(x, k, (-2, -1)).to(dev), torch.rot90(y, k, (-2, -1)).to(dev)
        for group in opt.param_groups:
            group["lr"] = LR * lr_factor(budget, warmup_steps=100, decay_from=0.5, floor=0.05)
        # MSE, not L1: most pixels are flat and exactly right at zero residual, and L1 then
        # pins the whole residual branch at zero (measured: output == nearest upscaling).
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        budget.tick()
        threads.step()
        if budget.step % 100 == 0:
            log(logfile, f"upscaler step {budget.step} loss {loss.item():.4f} {budget.elapsed / 60:.1f} min")
        if ckpt.due():
            ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": budget.step, "elapsed": budget.elapsed})
    ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": budget.step, "elapsed": budget.elapsed})
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous().cpu() for k, v in model.state_dict().items()}, str(target))
    ours, cubic = compare_with_bicubic(target)
    log(logfile, f"upscaler: done, {budget.step} steps, {budget.elapsed / 60:.1f} min, held-out PSNR {ours:.2f} dB vs bicubic {cubic:.2f} dB")
    return target
