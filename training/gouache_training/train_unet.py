"""Stage 3: train the text encoder and UNet jointly on cached latents.

Recipe (measured on this project's trial runs): epsilon prediction on SD's schedule, Min-SNR-5
loss weights, offset noise from the first step (without it backgrounds follow the noise's low
frequencies instead of the prompt), captions re-sampled on every use, 10% empty captions for
classifier-free guidance, an EMA of the weights. The loss flattens long before samples stop
improving, so the kept checkpoint is the one that renders held-out prompts best.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from gouache.nodes.devices import one_thread

from . import data, evaluate
from .loop import Budget, Loop, Run, Schedule, device, log
from .models import make_scheduler, make_text_encoder, make_unet
from .pipeline import build_pipeline
from .tokenizer import write_tokenizer
from .train_vae import to_tensor

CACHE_SIZE = 12_000
EMPTY_CAPTION = 0.1
OFFSET_NOISE = 0.1
MIN_SNR = 5.0
LR = 8e-4
EVAL_EVERY = 400
EMA_DECAY = 0.999
HIGH_NOISE_FROM = 600


@torch.no_grad()
def encode_cache(
    vae: AutoencoderKL,
    path: Path,
    seed: int,
    count: int,
    outline: bool,
    logfile: Path,
    place_share: float = data.PLACE_SHARE,
    stream: int = 5,
) -> dict:
    """Render and encode `count` training images once; returns posterior means/stds and scenes."""
    if path.exists():
        return torch.load(path, weights_only=False)
    dev = device()
    rng = np.random.default_rng([seed, stream, int(outline)])
    means, stds, scenes = [], [], []
    vae.eval()
    with one_thread():
        for start in range(0, count, 64):
            images, batch = data.sample_batch(rng, min(64, count - start), outline=outline, place_share=place_share)
            dist = vae.encode(to_tensor(images).to(dev)).latent_dist
            means.append(dist.mean.half().cpu())
            stds.append(dist.std.half().cpu())
            scenes += [asdict(s) for s in batch]
    cache = {"mean": torch.cat(means), "std": torch.cat(stds), "scenes": scenes}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    log(logfile, f"encoded {count} {'outline ' if outline else ''}renders to {path}")
    return cache


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Padded ids exactly as the pipeline pads prompts at inference."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids


class LatentBatches:
    """Random training batches from a latent cache, with captions drawn afresh each time."""

    def __init__(self, cache: dict, scaling: float, tokenizer: CLIPTokenizer) -> None:
        self.mean, self.std = cache["mean"], cache["std"]
        self.scenes = [data.Scene(**s) for s in cache["scenes"]]
        self.scaling = scaling
        self.tokenizer = tokenizer

    def sample(self, rng: np.random.Generator, batch: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(scaled latents, token ids) for `batch` random cache entries."""
        z, ids, _ = self.sample_labelled(rng, batch, dev)
        return z, ids

    def sample_labelled(
        self, rng: np.random.Generator, batch: int, dev: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scaled latents, token ids, position class) where the class is -1 for empty captions.

        Classes index `data.POSITIONS` (0 = unplaced); the draws from `rng` are the same as
        `sample`'s, so both give the same batches for the same generator state.
        """
        idx = rng.integers(len(self.scenes), size=batch)
        t_idx = torch.from_numpy(idx)
        eps = torch.from_numpy(rng.standard_normal(self.mean[t_idx].shape).astype(np.float32))
        z = (self.mean[t_idx].float() + self.std[t_idx].float() * eps) * self.scaling
        captions, labels = [], []
        for i in idx:
            empty = rng.random() < EMPTY_CAPTION
            captions.append("" if empty else data.caption(self.scenes[i], rng))
            labels.append(-1 if empty else data.POSITIONS.index(self.scenes[i].position))
        return z.to(dev), tokenize(self.tokenizer, captions).to(dev), torch.tensor(labels, device=dev)


def diffusion_loss(
    unet: UNet2DConditionModel, hidden: torch.Tensor, z: torch.Tensor, alphas: torch.Tensor, x0_weight: float = 0.0
) -> torch.Tensor:
    """Min-SNR-weighted epsilon loss with offset noise, given the text encoder's hidden states.

    `x0_weight` adds the error of the implied clean latent (epsilon error over sqrt(SNR)) at the
    noisiest steps, t >= HIGH_NOISE_FROM, where the epsilon loss alone counts layout for almost
    nothing: that is where the prompt, not the noisy input, has to decide where the shape goes.
    """
    b = z.shape[0]
    noise = torch.randn_like(z) + OFFSET_NOISE * torch.randn(b, z.shape[1], 1, 1, device=z.device)
    t = torch.randint(0, len(alphas), (b,), device=z.device)
    a = alphas[t].view(b, 1, 1, 1)
    noisy = a.sqrt() * z + (1 - a).sqrt() * noise
    pred = unet(noisy, t, encoder_hidden_states=hidden).sample
    snr = alphas[t] / (1 - alphas[t])
    weight = torch.clamp(snr, max=MIN_SNR) / snr
    mse = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
    loss = (weight * mse).mean()
    if x0_weight:
        loss = loss + x0_weight * (mse / snr * (t >= HIGH_NOISE_FROM)).mean()
    return loss


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float = EMA_DECAY) -> None:
    """Exponential moving average with a short warm-up, so early evaluations are not stale."""
    decay = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def quick_score(pipe, held_out_seeds: int = 2, seen: int = 12, positions: int = 0) -> tuple[float, dict]:
    """Held-out plus seen 'fully right' shares on a small fixed prompt set, plus, with `positions`,
    the share of that many placed prompts drawn at the asked position."""
    figures = evaluate.evaluate(pipe, held_out_seeds=held_out_seeds, seen=seen, attributes=0, positions=positions)
    value = figures["held_out"]["fully_right"] + figures["seen"]["fully_right"]
    return value + (figures["positions"]["position"] if positions else 0.0), figures


def train(run: Run, batch: int = 32) -> Path:
    """Train (or resume) text encoder + UNet; writes the best EMA weights to `work/unet/final`."""
    work, seed = run.work, run.seed
    final = work / "unet" / "final"
    if (final / "unet" / "config.json").exists():
        log(work / "unet.log", "unet: final weights exist, skipping")
        return final
    dev = device()
    vae = AutoencoderKL.from_pretrained(work / "vae" / "final").to(dev)
    tokenizer = write_tokenizer(work / "tokenizer")
    cache = encode_cache(vae, work / "latents.pt", seed, CACHE_SIZE, outline=False, logfile=work / "unet.log")
    batches = LatentBatches(cache, vae.config.scaling_factor, tokenizer)

    torch.manual_seed(seed)
    text_encoder = make_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).to(dev)
    unet = make_unet().to(dev)
    alphas = make_scheduler().alphas_cumprod.to(dev)

    def loss(budget: Budget) -> torch.Tensor:
        z, ids = batches.sample(np.random.default_rng([seed, 3, budget.step]), batch, dev)
        return diffusion_loss(unet, text_encoder(ids)[0], z, alphas)

    joint = Joint("unet", run, vae, tokenizer, text_encoder, unet, quick_score)
    return joint.train(loss, Schedule(LR, warmup_steps=200, decay_from=0.75, floor=0.05))


class Joint:
    """A text encoder and a UNet trained together through the loop, keeping the best EMA weights.

    After every step the EMA copies follow the trained weights; every `eval_every` steps `score`
    rates the EMA copies through a stock pipeline (a (value, figures) pair), and the best so far go
    to `work/<stage>/best`. `extra` is trained and checkpointed alongside but never shipped. The
    kept weights end in `work/<stage>/final`.
    """

    def __init__(
        self,
        stage: str,
        run: Run,
        vae: AutoencoderKL,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        unet: UNet2DConditionModel,
        score: Callable[[StableDiffusionPipeline], tuple[float, dict]],
        ema_decay: float = EMA_DECAY,
        eval_every: int = EVAL_EVERY,
        extra: torch.nn.Module | None = None,
    ) -> None:
        self.stage, self.run, self.score = stage, run, score
        self.text_encoder, self.unet, self.extra = text_encoder, unet, extra
        self.ema_te, self.ema_unet = copy.deepcopy(text_encoder).eval(), copy.deepcopy(unet).eval()
        self.ema_decay, self.eval_every = ema_decay, eval_every
        self.pipe = build_pipeline(vae, self.ema_te, tokenizer, self.ema_unet)
        self.best, self.best_step = -1.0, -1
        self.logfile = run.work / f"{stage}.log"

    def state_dict(self) -> dict[str, float]:
        """The best score so far and its step (the EMA weights themselves are in `best/`)."""
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue from a checkpoint's best score."""
        self.best, self.best_step = state["best"], state["best_step"]

    def evaluate(self, step: int) -> None:
        """Score the EMA weights; keep them in `best/` when they score at least as well as the best."""
        value, figures = self.score(self.pipe)
        log(self.logfile, f"{self.stage} eval step {step}: score {value:.3f} {figures}")
        if value >= self.best:
            self.best, self.best_step = value, step
            best_dir = self.run.work / self.stage / "best"
            self.ema_unet.save_pretrained(best_dir / "unet")
            self.ema_te.save_pretrained(best_dir / "text_encoder")
            log(self.logfile, f"{self.stage}: new best {self.best:.3f} at step {step}")

    def ema(self, step: int) -> None:
        """Move the EMA copies towards the trained weights after optimizer step `step`."""
        ema_update(self.ema_unet, self.unet, step, self.ema_decay)
        ema_update(self.ema_te, self.text_encoder, step, self.ema_decay)

    def train(self, loss: Callable[[Budget], torch.Tensor], schedule: Schedule, score_start: bool = False) -> Path:
        """Run the loop on `loss`; returns `work/<stage>/final` holding the kept weights.

        `score_start` scores the weights a fresh run starts from, so a fine-tune never keeps worse ones.
        """
        params = list(self.unet.parameters()) + list(self.text_encoder.parameters())
        trained = params + (list(self.extra.parameters()) if self.extra is not None else [])
        state = {"unet": self.unet, "text_encoder": self.text_encoder, "ema_unet": self.ema_unet, "ema_te": self.ema_te}
        if self.extra is not None:
            state["extra"] = self.extra
        state["keep"] = self
        self.unet.train()
        self.text_encoder.train()
        loop = Loop(
            self.stage, self.run, torch.optim.AdamW(trained, lr=schedule.lr, betas=(0.9, 0.99), weight_decay=0.01),
            loss, schedule, state, clip=params, after_step=self.ema, evaluate=self.evaluate,
            eval_every=self.eval_every, evaluate_start=score_start,
        )
        loop()
        loop.log(f"{self.stage}: done; keeping step {self.best_step} (score {self.best:.3f})")
        final = self.run.work / self.stage / "final"
        copy_weights(self.run.work / self.stage / "best", final)
        return final


def copy_weights(src: Path, dst: Path) -> None:
    """Copy the `unet` and `text_encoder` folders of a kept checkpoint to a stage's final folder."""
    for name in ("unet", "text_encoder"):
        (dst / name).mkdir(parents=True, exist_ok=True)
        for f in (src / name).iterdir():
            (dst / name / f.name).write_bytes(f.read_bytes())
