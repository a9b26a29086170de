"""Cheap previews of latents: the family's linear map from latent channels to RGB, as a small JPEG.

The factors come from the family's ``LatentFormat`` (``gouache.nodes.families``), or from the
checkpoint's own settings file (``gouache.nodes.model_settings``), as ``gouache-tiny`` ships them.
"""

from __future__ import annotations

import io
from typing import Any

from gouache.nodes.families import LatentFormat

MAX_SIDE = 256


def latent_preview_jpeg(latents: Any, latent_format: LatentFormat, quality: int = 80) -> bytes:
    """A JPEG of the first latent in the batch, at most ``MAX_SIDE`` pixels on its longer side."""
    import torch
    from PIL import Image

    factors = torch.tensor(latent_format.rgb_factors)
    sample = latents[0].detach().float().cpu()
    channels = len(latent_format.hidden) if latent_format.hidden is not None else factors.shape[0]
    if sample.shape[0] != channels:  # a latent of another shape than the family's: show what fits
        sample = sample[:channels] if sample.shape[0] > channels else torch.nn.functional.pad(
            sample, (0, 0, 0, 0, 0, channels - sample.shape[0]))
    if latent_format.hidden is not None:  # a model's own fitted factors with a hidden layer
        hidden = torch.einsum("chw,ck->khw", sample, torch.tensor(latent_format.hidden))
        sample = torch.nn.functional.silu(hidden + torch.tensor(latent_format.hidden_bias)[:, None, None])
    rgb = torch.einsum("chw,cr->hwr", sample, factors) + torch.tensor(latent_format.rgb_bias)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    height, width = pixels.shape[:2]
    factor = max(1, MAX_SIDE // max(height, width))
    if factor > 1:
        image = image.resize((width * factor, height * factor), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
