"""Stage 4: teach the trained text encoder and UNet to follow position words.

After the `unet` stage the model draws colours, shapes and sizes but puts the shape wherever the
first steps' noise does: the text encoder carries colour and shape words into the padding tokens
the UNet's cross-attention mostly reads, and position words only into their own token, one of 77.
This stage fine-tunes both on renders that are placed off centre more often, with two extra loss
terms: a linear probe on the mean of the encoder's output tokens must tell the position phrase
(none, left, right, top, bottom), which puts the position into every token the UNet reads; and the
clean-latent error at the noisiest steps, where the layout is decided, counts alongside the
epsilon loss. The probe is discarded; what ships is a stock text encoder and UNet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from . import data
from .loop import Budget, Run, Schedule, device, log
from .models import TEXT_WIDTH, make_scheduler
from .train_unet import Joint, LatentBatches, diffusion_loss, encode_cache, quick_score

CACHE_SIZE = 8_000
# Share of non-large renders placed off centre in this stage's cache: about 58% of all renders.
PLACE_SHARE = 0.9
LR = 4e-4
PROBE_WEIGHT = 1.0
X0_WEIGHT = 0.05
EMA_DECAY = 0.995
EVAL_EVERY = 250
PLACED_CHECKS = 24  # placed prompts (`evaluate.position_cases`) in each check


def final_dir(work: Path) -> Path:
    """Where this stage leaves the text encoder and UNet that the LoRA and export stages use."""
    return work / "place" / "final"


def train(run: Run, batch: int = 32) -> Path:
    """Fine-tune (or resume) the `unet` stage's weights; writes the best EMA weights to `final_dir`."""
    work, seed = run.work, run.seed
    final = final_dir(work)
    if (final / "unet" / "config.json").exists():
        log(work / "place.log", "place: final weights exist, skipping")
        return final
    dev = device()
    base = work / "unet" / "final"
    vae = AutoencoderKL.from_pretrained(work / "vae" / "final").to(dev)
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder").to(dev)
    unet = UNet2DConditionModel.from_pretrained(base / "unet").to(dev)
    cache = encode_cache(
        vae, work / "latents_placed.pt", seed, CACHE_SIZE, False, work / "place.log", place_share=PLACE_SHARE, stream=6
    )
    batches = LatentBatches(cache, vae.config.scaling_factor, tokenizer)
    torch.manual_seed(seed)
    probe = torch.nn.Linear(TEXT_WIDTH, len(data.POSITIONS)).to(dev)
    alphas = make_scheduler().alphas_cumprod.to(dev)

    def loss(budget: Budget) -> torch.Tensor:
        z, ids, labels = batches.sample_labelled(np.random.default_rng([seed, 6, budget.step]), batch, dev)
        hidden = text_encoder(ids)[0]
        total = diffusion_loss(unet, hidden, z, alphas, x0_weight=X0_WEIGHT)
        keep = labels >= 0
        if keep.any():
            total = total + PROBE_WEIGHT * F.cross_entropy(probe(hidden.mean(dim=1))[keep], labels[keep])
        return total

    def score(pipe) -> tuple[float, dict]:
        # Colours and shapes (two shares) must not be traded for positions (one).
        return quick_score(pipe, positions=PLACED_CHECKS)

    joint = Joint("place", run, vae, tokenizer, text_encoder, unet, score, EMA_DECAY, EVAL_EVERY, extra=probe)
    return joint.train(loss, Schedule(LR, warmup_steps=50, decay_from=0.7, floor=0.05), score_start=True)
