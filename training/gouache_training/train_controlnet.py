"""Stage 7: train `gouache-tiny-controlnet-silhouette`, a ControlNet that puts the shape where a silhouette says.

The control image is the shape's silhouette, white on black (`data.silhouette`), drawn from the
same scenes the base model trained on but centred anywhere in the frame (`data.place_anywhere`),
corners included, where the prompt's five positions cannot reach. The prompt still gives the
colours (and the shape word); the silhouette gives where and what shape.

Silhouette rather than an edge map: a filled region survives the 8x step down to the 16x16
latent grid, where a one-pixel edge of a 128 px image is mostly lost, and it fixes the shape's
class (fill, solidity) and centroid exactly as the checker reads them back.

The ControlNet is diffusers' `ControlNetModel` with the UNet's residual channels (48, 96, 96) but
no attention: every block is a plain ResNet block (the silhouette needs no text), which keeps it
under 1 M parameters (1.7 MB at fp16). Its encoder starts as a copy of the shipped UNet's ResNet
and downsampling weights, its output convolutions at zero, as in the ControlNet paper. The shipped
text encoder, UNet and VAE stay frozen; the loss is the base model's (epsilon, Min-SNR-5, offset
noise) with the ControlNet's residuals added to the UNet's skip connections.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionControlNetPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from gouache.nodes.devices import one_thread

from . import WEIGHTS, data, evaluate
from .loop import Budget, Loop, Run, Schedule, device, log
from .models import make_scheduler
from .train_unet import EMPTY_CAPTION, MIN_SNR, OFFSET_NOISE, ema_update, tokenize
from .train_vae import to_tensor

ARTEFACT = "gouache-tiny-controlnet-silhouette"
CACHE_SIZE = 6_000
LR = 5e-4
EMA_DECAY = 0.99
EVAL_EVERY = 200
EVAL_CASES = 24  # `evaluate.control_cases` scored at each check (the first of the held-out set)
CONDITIONING_CHANNELS = (16, 32, 32, 64)  # the control image's 128 px -> 16 px embedding


def make_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet with `unet`'s residual channels and no attention, its encoder copied from `unet`."""
    cfg = unet.config
    net = ControlNetModel(
        in_channels=cfg.in_channels,
        down_block_types=("DownBlock2D",) * len(cfg.block_out_channels),
        mid_block_type="UNetMidBlock2D",
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim,  # unused by the blocks; names the family it steers
        attention_head_dim=cfg.attention_head_dim,
        conditioning_embedding_out_channels=CONDITIONING_CHANNELS,
    )
    # ResNets, downsamplers, conv_in and the time embedding keep their names in both classes.
    own = net.state_dict()
    copied = {k: v for k, v in unet.state_dict().items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(copied, strict=False)
    return net


def control_tensor(masks: np.ndarray) -> torch.Tensor:
    """(B, 128, 128) uint8 silhouettes -> (B, 3, 128, 128) RGB in 0..1, as pipelines feed control images."""
    return torch.from_numpy(masks).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def control_cache(vae: AutoencoderKL, path: Path, seed: int, count: int, logfile: Path) -> dict:
    """Render, place anywhere and encode `count` training scenes once: latent means/stds, silhouettes, scenes."""
    if path.exists():
        return torch.load(path, weights_only=False)
    rng = np.random.default_rng([seed, 7])
    means, stds, masks, scenes = [], [], [], []
    vae.eval()
    with one_thread():
        for start in range(0, count, 64):
            size = min(64, count - start)
            batch = [data.place_anywhere(rng, data.sample_scene(rng, place_share=0.0)) for _ in range(size)]
            images = np.stack([data.render(s) for s in batch])
            dist = vae.encode(to_tensor(images).to(device())).latent_dist
            means.append(dist.mean.half().cpu())
            stds.append(dist.std.half().cpu())
            masks.append(torch.from_numpy(np.stack([data.silhouette(s) for s in batch])))
            scenes += [asdict(s) for s in batch]
    cache = {"mean": torch.cat(means), "std": torch.cat(stds), "mask": torch.cat(masks), "scenes": scenes}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    log(logfile, f"encoded {count} freely placed renders and their silhouettes to {path}")
    return cache


def controlnet_loss(
    unet: UNet2DConditionModel, net: ControlNetModel, hidden: torch.Tensor, z: torch.Tensor, cond: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The base model's Min-SNR epsilon loss, with the ControlNet's residuals in the frozen UNet."""
    b = z.shape[0]
    noise = torch.randn_like(z) + OFFSET_NOISE * torch.randn(b, z.shape[1], 1, 1, device=z.device)
    t = torch.randint(0, len(alphas), (b,), device=z.device)
    a = alphas[t].view(b, 1, 1, 1)
    noisy = a.sqrt() * z + (1 - a).sqrt() * noise
    down, mid = net(noisy, t, encoder_hidden_states=hidden, controlnet_cond=cond, return_dict=False)
    pred = unet(noisy, t, encoder_hidden_states=hidden, down_block_additional_residuals=down,
                mid_block_additional_residual=mid).sample
    snr = alphas[t] / (1 - alphas[t])
    weight = torch.clamp(snr, max=MIN_SNR) / snr
    return (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()


def control_pipeline(folder: Path, net: ControlNetModel) -> StableDiffusionControlNetPipeline:
    """The stock diffusers ControlNet pipeline around the shipped model and `net`, in float32."""
    base = evaluate.load_shipped(folder)
    pipe = StableDiffusionControlNetPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        controlnet=net.to(base.device),
        scheduler=make_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class KeepBest:
    """Scores the EMA ControlNet every few steps and keeps the best in `work/controlnet/best`."""

    def __init__(self, run: Run, pipe: StableDiffusionControlNetPipeline, ema: ControlNetModel) -> None:
        self.run, self.pipe, self.ema = run, pipe, ema
        self.best, self.best_step = -1.0, -1
        self.logfile = run.work / "controlnet.log"

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]

    def __call__(self, step: int) -> None:
        figures = evaluate.control_figures(self.pipe, evaluate.control_cases(EVAL_CASES))
        # Placement first; colours break ties (they come from the frozen model, but strong residuals can spoil them).
        value = figures["placed"] + 0.1 * figures["colours"]
        log(self.logfile, f"controlnet eval step {step}: score {value:.3f} {figures}")
        if value >= self.best:
            self.best, self.best_step = value, step
            self.ema.save_pretrained(self.run.work / "controlnet" / "best")
            log(self.logfile, f"controlnet: new best {value:.3f} at step {step}")


def train(run: Run, batch: int = 32) -> Path:
    """Train (or resume) the ControlNet on the exported model; writes the kept weights, fp16, to `out/ARTEFACT`.

    The base is the `export` stage's folder in `out`, or the shipped one when `out` has none.
    """
    work, seed = run.work, run.seed
    base = Path(run.out) / "gouache-tiny"
    if not (base / "model_index.json").is_file():
        base = WEIGHTS / "gouache-tiny"
    dev = device()
    logfile = work / "controlnet.log"
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).to(dev)
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32).to(dev)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32).to(dev)
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).eval()
    cache = control_cache(vae, work / "latents_control.pt", seed, CACHE_SIZE, logfile)
    scenes = [data.Scene(**s) for s in cache["scenes"]]
    scaling = vae.config.scaling_factor
    torch.manual_seed(seed)
    net = make_controlnet(unet).to(dev).train()
    ema = copy.deepcopy(net).eval()
    alphas = make_scheduler().alphas_cumprod.to(dev)
    keep = KeepBest(run, control_pipeline(base, ema), ema)

    def loss(budget: Budget) -> torch.Tensor:
        rng = np.random.default_rng([seed, 7, budget.step])
        idx = rng.integers(len(scenes), size=batch)
        t_idx = torch.from_numpy(idx)
        eps = torch.from_numpy(rng.standard_normal(cache["mean"][t_idx].shape).astype(np.float32))
        z = (cache["mean"][t_idx].float() + cache["std"][t_idx].float() * eps) * scaling
        captions = ["" if rng.random() < EMPTY_CAPTION else data.caption(scenes[i], rng) for i in idx]
        with torch.no_grad():
            hidden = text_encoder(tokenize(tokenizer, captions).to(dev))[0]
        cond = control_tensor(cache["mask"][t_idx].numpy()).to(dev)
        return controlnet_loss(unet, net, hidden, z.to(dev), cond, alphas)

    loop = Loop(
        "controlnet", run, torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0), loss,
        Schedule(LR, warmup_steps=50, decay_from=0.7, floor=0.1),
        {"net": net, "ema": ema, "keep": keep}, clip=list(net.parameters()),
        after_step=lambda step: ema_update(ema, net, step, EMA_DECAY), evaluate=keep, eval_every=EVAL_EVERY,
    )
    loop()
    loop.log(f"controlnet: done; keeping step {keep.best_step} (score {keep.best:.3f})")
    target = export_kept(work, Path(run.out))
    loop.log(f"controlnet: wrote {target}")
    return target


def export_kept(work: Path, out: Path) -> Path:
    """Write the kept (best-scoring) EMA weights in fp16 as the diffusers folder `out/ARTEFACT`.

    Also usable while the stage runs: `python -m gouache_training.train_controlnet --work W --out O`
    ships the best checkpoint so far.
    """
    kept = ControlNetModel.from_pretrained(work / "controlnet" / "best", torch_dtype=torch.float16)
    target = out / ARTEFACT
    kept.save_pretrained(target)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)  # where it was trained says nothing about the shipped weights
    # Sorted keys: a re-export writes the same bytes.
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Export the controlnet stage's kept weights.")
    parser.add_argument("--work", type=Path, default=Path(".train"))
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    print(export_kept(args.work, args.out))
