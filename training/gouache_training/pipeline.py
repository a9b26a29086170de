"""Assemble and run the embedded model as a stock `StableDiffusionPipeline`.

Training-time evaluation renders through the same pipeline class users load from the shipped
folder, so the figures measured while training are the ones the shipped model gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from .models import make_scheduler

GUIDANCE = 3.0
STEPS = 20


def build_pipeline(
    vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, unet: UNet2DConditionModel
) -> StableDiffusionPipeline:
    """A pipeline around in-memory components, with the project's Euler scheduler."""
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    guidance: float = GUIDANCE,
    steps: int = STEPS,
    batch: int = 12,
    cross_attention_kwargs: dict | None = None,
) -> list[np.ndarray]:
    """Render one 128 px uint8 RGB image per (prompt, seed); each image depends only on its own seed."""
    images: list[np.ndarray] = []
    for i in range(0, len(prompts), batch):
        chunk = list(prompts[i : i + batch])
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[i : i + batch]]
        out = pipe(
            prompt=chunk,
            generator=gens,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=128,
            width=128,
            output_type="np",
            cross_attention_kwargs=cross_attention_kwargs,
        ).images
        images += [np.clip(np.rint(im * 255), 0, 255).astype(np.uint8) for im in out]
    return images
