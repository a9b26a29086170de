"""Fit gouache-tiny's latent-to-RGB preview factors and write them into the model's settings file.

SD's published factors mean nothing for gouache-tiny's own VAE (its live preview was coloured
noise). This fits a map of the same kind on its own latents: renders from the training distribution
are encoded by the shipped VAE (model-space latents, times ``scaling_factor``, as the sampler holds
them) and each image is averaged over the 8x8 pixels of one latent cell. A linear map (SD's kind)
reads these latents badly (68 of 255 mean error per channel on unseen renders), so the preview
factors gain one hidden layer per latent cell: ``silu(latent @ hidden + hidden_bias) @ rgb + rgb_bias``
(16 hidden units, about 150 numbers), fitted with an L1 loss (27 of 255).

    PYTHONPATH=training python -m gouache_training.preview_factors [--renders 512] [--seed 0]

It rewrites ``preview`` in ``nodes/embedded/weights/gouache-tiny/gouache.json`` and prints the fit's
error on renders it did not fit on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from .data import sample_batch

WEIGHTS = Path(__file__).resolve().parents[2] / "nodes" / "embedded" / "weights" / "gouache-tiny"
SETTINGS = "gouache.json"


def latents_and_colours(vae: AutoencoderKL, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model-space latents ``(N*h*w, C)`` and the mean colour of each one's pixels ``(N*h*w, 3)`` in -1..1."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    cell = pixels.shape[-1] // latents.shape[-1]
    colours = torch.nn.functional.avg_pool2d(pixels, cell)
    return (latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).numpy(),
            colours.permute(0, 2, 3, 1).reshape(-1, 3).numpy())


def fit(latents: np.ndarray, colours: np.ndarray, hidden: int = 16, steps: int = 2000,
        seed: int = 0) -> dict[str, list]:
    """The preview factors (``hidden``, ``hidden_bias``, ``rgb_factors``, ``rgb_bias``) fitted to map
    ``latents`` to ``colours`` per cell, as ``nodes/preview.py`` applies them."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(latents.shape[1], hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 3))
    optimiser = torch.optim.Adam(net.parameters(), 1e-2)
    inputs, targets = torch.from_numpy(latents), torch.from_numpy(colours)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = (net(inputs) - targets).abs().mean()
        loss.backward()
        optimiser.step()
    first, last = net[0], net[2]

    def rounded(tensor: torch.Tensor) -> list:
        return np.round(tensor.detach().numpy().astype(np.float64), 4).tolist()

    return {"hidden": rounded(first.weight.T), "hidden_bias": rounded(first.bias),
            "rgb_factors": rounded(last.weight.T), "rgb_bias": rounded(last.bias)}


def apply(factors: dict[str, list], latents: np.ndarray) -> np.ndarray:
    """What the preview computes from ``latents`` (N x C) with ``factors``: colours in -1..1."""
    hidden = latents @ np.array(factors["hidden"]) + np.array(factors["hidden_bias"])
    hidden = hidden / (1 + np.exp(-hidden))
    return hidden @ np.array(factors["rgb_factors"]) + np.array(factors["rgb_bias"])


def main(argv: list[str] | None = None) -> None:
    """Fit on ``--renders`` renders, check on as many others, write the factors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    vae = AutoencoderKL.from_pretrained(args.folder / "vae", torch_dtype=torch.float32).eval()
    rng = np.random.default_rng(args.seed)
    train_images, _ = sample_batch(rng, args.renders)
    test_images, _ = sample_batch(rng, args.renders)
    factors = fit(*latents_and_colours(vae, train_images), seed=args.seed)
    test_latents, test_colours = latents_and_colours(vae, test_images)
    error = np.abs(apply(factors, test_latents) - test_colours).mean() * 127.5
    path = args.folder / SETTINGS
    settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    settings["preview"] = factors
    path.write_text(json.dumps(settings) + "\n", encoding="utf-8")
    print(f"{path}: preview factors fitted on {args.renders} renders; mean error on {args.renders} others "
          f"{error:.1f} of 255 per channel")


if __name__ == "__main__":
    main()
