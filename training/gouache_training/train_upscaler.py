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

from .loop import Budget, Loop, Run, Schedule, device
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


def train(run: Run, batch: int = 16) -> Path:
    """Train (or resume) the upscaler and write `out/gouache-tiny-4x.safetensors`."""
    target = Path(run.out) / ARTEFACT
    dev = device()
    torch.manual_seed(run.seed)
    model = make_upscaler().to(dev)
    pool_hr = to_unit(training_images(np.random.default_rng([run.seed, 2]), POOL))
    pool_lr = F.avg_pool2d(pool_hr, SCALE)  # the same box average as `downsample`, before rounding
    pool_lr = (pool_lr * 255).round() / 255

    def loss(budget: Budget) -> torch.Tensor:
        rng = np.random.default_rng([run.seed, 2, budget.step])
        idx = torch.from_numpy(rng.integers(POOL, size=batch))
        x, y = pool_lr[idx], pool_hr[idx]
        # Every shape is drawn upright, but edges of all orientations help the filters generalise.
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        k = int(rng.integers(4))
        x, y = torch.rot90(x, k, (-2, -1)).to(dev), torch.rot90(y, k, (-2, -1)).to(dev)
        # MSE, not L1: most pixels are flat and exactly right at zero residual, and L1 then
        # pins the whole residual branch at zero (measured: output == nearest upscaling).
        return F.mse_loss(model(x), y)

    loop = Loop(
        "upscaler", run, torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0), loss,
        Schedule(LR, warmup_steps=100, decay_from=0.5, floor=0.05), {"model": model}, log_every=100,
    )
    loop()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous().cpu() for k, v in model.state_dict().items()}, str(target))
    ours, cubic = compare_with_bicubic(target)
    loop.log(f"upscaler: done, held-out PSNR {ours:.2f} dB vs bicubic {cubic:.2f} dB")
    return target
