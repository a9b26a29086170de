"""Cheap previews of latents: a fixed linear map from 4 latent channels to RGB, as a small JPEG.

The factors are the widely used approximations for SD 1.x/2.x and SDXL latents (as in ComfyUI and
A1111's "approx NN" fallback); other VAEs get the SD 1.x map, which is rough but shows the layout.
"""

from __future__ import annotations

import io
from typing import Any

SD1_FACTORS = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
               (-0.2120, -0.2616, -0.7177))
SDXL_FACTORS = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                (-0.3165, -0.2492, -0.2188))
SDXL_BIAS = (0.1084, -0.0175, -0.0011)
MAX_SIDE = 256


def latent_preview_jpeg(latents: Any, family: str, quality: int = 80) -> bytes:
    """A JPEG of the first latent in the batch, at most ``MAX_SIDE`` pixels on its longer side."""
    import torch
    from PIL import Image

    factors = SDXL_FACTORS if family == "sdxl" else SD1_FACTORS
    bias = SDXL_BIAS if family == "sdxl" else (0.0, 0.0, 0.0)
    sample = latents[0].detach().float().cpu()
    if sample.shape[0] != 4:
        sample = sample[:4] if sample.shape[0] > 4 else torch.nn.functional.pad(sample, (0, 0, 0, 0, 0, 4 - sample.shape[0]))
    rgb = torch.einsum("chw,cr->hwr", sample, torch.tensor(factors)) + torch.tensor(bias)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    height, width = pixels.shape[:2]
    factor = max(1, MAX_SIDE // max(height, width))
    if factor > 1:
        image = image.resize((width * factor, height * factor), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
