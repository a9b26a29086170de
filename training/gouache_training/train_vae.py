"""Stage 1: train the AutoencoderKL on full-size renders (filled and outlined shapes).

Full 128 px images, not crops: GroupNorm statistics of crops differ from whole images and the
decoder then fails on whole images. L1 is weighted up on edges because small stars and
triangles otherwise come back as blobs, and the checker reads shapes from their outlines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from . import data
from .loop import Budget, Loop, Run, Schedule, device, log
from .models import LATENT_CHANNELS, make_vae

OUTLINE_SHARE = 0.2  # the LoRA's outline renders must survive the autoencoder too
KL_WEIGHT = 1e-6
EDGE_WEIGHT = 4.0
LOGVAR_SHIFT = 6.0
# Most steps run on whole images at half size (4x cheaper, same fg/bg proportions, unlike crops,
# so GroupNorm statistics match); the last part of the budget runs at full size.
HALF_SIZE_UNTIL = 0.7
LR = 1e-3
EVAL_EVERY = 500


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def training_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """A batch of training renders, some of them in the outline style."""
    scenes = [data.sample_scene(rng, outline=rng.random() < OUTLINE_SHARE) for _ in range(n)]
    return np.stack([data.render(s) for s in scenes])


def held_out_images(n: int, seed: int = 1234) -> np.ndarray:
    """Renders of held-out triples only, for measuring reconstruction on unseen combinations."""
    rng = np.random.default_rng(seed)
    return np.stack([data.render(data.sample_scene(rng, held_out=True)) for _ in range(n)])


def edge_weights(x: torch.Tensor) -> torch.Tensor:
    """1 on flat areas, 1 + EDGE_WEIGHT on and next to colour edges of the target."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(1, keepdim=True)
    edges = F.pad(dx, (0, 1, 0, 0)) + F.pad(dy, (0, 0, 0, 1))
    edges = F.max_pool2d((edges > 0.05).float(), 3, stride=1, padding=1)
    return 1.0 + EDGE_WEIGHT * edges


@torch.no_grad()
def psnr(vae: AutoencoderKL, images: np.ndarray, dev: torch.device) -> float:
    """Mean PSNR (dB) of reconstructions through the posterior mean."""
    vae.eval()
    x = to_tensor(images).to(dev)
    out = []
    for i in range(0, len(x), 16):
        z = vae.encode(x[i : i + 16]).latent_dist.mode()
        out.append(vae.decode(z).sample)
    rec = torch.cat(out)
    mse = ((rec.clamp(-1, 1) - x) / 2).pow(2).flatten(1).mean(1)
    vae.train()
    return float((10 * torch.log10(1.0 / mse)).mean())


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, seed: int, dev: torch.device, n: int = 512) -> float:
    """1/std of posterior samples of training renders: SD's `scaling_factor` convention."""
    rng = np.random.default_rng(seed + 77)
    zs = []
    for _ in range(n // 32):
        x = to_tensor(training_images(rng, 32)).to(dev)
        zs.append(vae.encode(x).latent_dist.sample())
    return float(1.0 / torch.cat(zs).std())


def train(run: Run, batch: int = 8) -> AutoencoderKL:
    """Train (or resume) the VAE; writes `work/vae/final` (diffusers folder) and returns the model."""
    final = run.work / "vae" / "final"
    logfile = run.work / "vae.log"
    dev = device()
    if (final / "config.json").exists():
        log(logfile, "vae: final weights exist, skipping")
        return AutoencoderKL.from_pretrained(final).to(dev)
    torch.manual_seed(run.seed)
    vae = make_vae().to(dev)
    with torch.no_grad():
        # Start with a narrow posterior: at the default width the decoder sees latents drowned in
        # sampling noise and learns colours very slowly (KL at 1e-6 barely narrows it).
        vae.quant_conv.bias[LATENT_CHANNELS:] -= LOGVAR_SHIFT
    probe = held_out_images(64)

    def loss(budget: Budget) -> torch.Tensor:
        # Seeding by step keeps the data stream identical across resumes.
        rng = np.random.default_rng([run.seed, budget.step])
        x = to_tensor(training_images(rng, batch))
        x = (F.avg_pool2d(x, 2) if budget.progress < HALF_SIZE_UNTIL else x).to(dev)
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample()).sample
        return ((rec - x).abs() * edge_weights(x)).mean() + KL_WEIGHT * posterior.kl().mean()

    def evaluate(step: int) -> None:
        log(logfile, f"vae step {step}: held-out PSNR {psnr(vae, probe, dev):.2f} dB")

    loop = Loop(
        "vae", run, torch.optim.AdamW(vae.parameters(), lr=LR, weight_decay=0.0), loss,
        Schedule(LR, warmup_steps=100, decay_from=0.8), {"model": vae}, clip=list(vae.parameters()),
        evaluate=evaluate, eval_every=EVAL_EVERY,
    )
    loop()
    vae.register_to_config(scaling_factor=latent_scale(vae, run.seed, dev))
    vae.save_pretrained(final)
    log(logfile, f"vae: done, scaling_factor {vae.config.scaling_factor:.4f}")
    return vae
