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

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from . import data, evaluate
from .checkpoint import Budget, Checkpointer, device, log, lr_factor
from .models import TEXT_WIDTH, make_scheduler
from .pipeline import build_pipeline
from .threads import ThreadGovernor
from .train_unet import LatentBatches, copy_weights, diffusion_loss, ema_update, encode_cache, quick_score

CACHE_SIZE = 8_000
# Share of non-large renders placed off centre in this stage's cache: about 58% of all renders.
PLACE_SHARE = 0.9
LR = 4e-4
PROBE_WEIGHT = 1.0
X0_WEIGHT = 0.05
EMA_DECAY = 0.995
EVAL_EVERY = 250


def final_dir(work: Path) -> Path:
    """Where this stage leaves the text encoder and UNet that the LoRA and export stages use."""
    return work / "place" / "final"


def position_score(pipe, count: int = 24) -> float:
    """Share of placed prompts (`evaluate.position_cases`) drawn at the asked position."""
    return evaluate.evaluate(pipe, held_out_seeds=0, seen=0, attributes=0, positions=count)["positions"]["position"]


def train(work: Path, seed: int, steps: int | None, minutes: float | None, batch: int = 32) -> Path:
    """Fine-tune (or resume) the `unet` stage's weights; writes the best EMA weights to `final_dir`."""
    logfile = work / "place.log"
    final = final_dir(work)
    if (final / "unet" / "config.json").exists():
        log(logfile, "place: final weights exist, skipping")
        return final
    dev = device()
    base = work / "unet" / "final"
    vae = AutoencoderKL.from_pretrained(work / "vae" / "final").to(dev)
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder").to(dev)
    unet = UNet2DConditionModel.from_pretrained(base / "unet").to(dev)
    cache = encode_cache(
        vae, work / "latents_placed.pt", seed, CACHE_SIZE, outline=False, logfile=logfile, place_share=PLACE_SHARE, stream=6
    )
    batches = LatentBatches(cache, vae.config.scaling_factor, tokenizer)

    torch.manual_seed(seed)
    probe = torch.nn.Linear(TEXT_WIDTH, len(data.POSITIONS)).to(dev)
    ema_te, ema_unet = copy.deepcopy(text_encoder).eval(), copy.deepcopy(unet).eval()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params + list(probe.parameters()), lr=LR, betas=(0.9, 0.99), weight_decay=0.01)
    alphas = make_scheduler().alphas_cumprod.to(dev)
    budget = Budget(steps, minutes)
    ckpt = Checkpointer(work / "place" / "state.pt")
    best, best_step = -1.0, -1
    state = ckpt.load()
    if state is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_te.load_state_dict(state["ema_te"])
        probe.load_state_dict(state["probe"])
        opt.load_state_dict(state["opt"])
        budget.resume(state["step"], state["elapsed"])
        best, best_step = state["best"], state["best_step"]
        log(logfile, f"place: resumed at step {budget.step}, {budget.elapsed / 60:.1f} min, best {best:.3f}")
    pipe = build_pipeline(vae, ema_te, tokenizer, ema_unet)
    best_dir = work / "place" / "best"

    def save_state() -> None:
        ckpt.save(
            {
                "unet": unet.state_dict(),
                "text_encoder": text_encoder.state_dict(),
                "ema_unet": ema_unet.state_dict(),
                "ema_te": ema_te.state_dict(),
                "probe": probe.state_dict(),
                "opt": opt.state_dict(),
                "step": budget.step,
                "elapsed": budget.elapsed,
                "best": best,
                "best_step": best_step,
            }
        )

    def consider_best() -> None:
        nonlocal best, best_step
        quality, figures = quick_score(pipe)
        placed = position_score(pipe)
        # Colours and shapes (two shares) must not be traded for positions (one).
        value = quality + placed
        log(logfile, f"place eval step {budget.step}: score {value:.3f} positions {placed:.3f} {figures}")
        if value >= best:
            best, best_step = value, budget.step
            ema_unet.save_pretrained(best_dir / "unet")
            ema_te.save_pretrained(best_dir / "text_encoder")
            log(logfile, f"place: new best {best:.3f} at step {best_step}")

    if state is None:
        consider_best()  # the starting point counts: the stage never ships something worse
    unet.train()
    text_encoder.train()
    threads = ThreadGovernor()
    while not budget.done:
        rng = np.random.default_rng([seed, 6, budget.step])
        z, ids, labels = batches.sample_labelled(rng, batch, dev)
        for group in opt.param_groups:
            group["lr"] = LR * lr_factor(budget, warmup_steps=50, decay_from=0.7, floor=0.05)
        hidden = text_encoder(ids)[0]
        loss = diffusion_loss(unet, hidden, z, alphas, x0_weight=X0_WEIGHT)
        keep = labels >= 0
        if keep.any():
            loss = loss + PROBE_WEIGHT * F.cross_entropy(probe(hidden.mean(dim=1))[keep], labels[keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        budget.tick()
        threads.step()
        ema_update(ema_unet, unet, budget.step, EMA_DECAY)
        ema_update(ema_te, text_encoder, budget.step, EMA_DECAY)
        if budget.step % 50 == 0:
            log(logfile, f"place step {budget.step} loss {loss.item():.4f} {budget.elapsed / 60:.1f} min {threads.current}t")
        if budget.step % EVAL_EVERY == 0:
            consider_best()
            threads.reset_clock()
        if ckpt.due():
            save_state()
            threads.reset_clock()
    if budget.step != best_step:
        consider_best()
    save_state()
    log(logfile, f"place: done, {budget.step} steps, {budget.elapsed / 60:.1f} min; keeping step {best_step} (score {best:.3f})")
    copy_weights(best_dir, final)
    return final
