"""Stage 5: train the `gouache-tiny-outline` style LoRA and save it in kohya's format.

peft adds rank-8 adapters to the UNet's attention projections; the base model stays frozen and
the captions are the base model's, so at strength 1 the same prompts draw outlines (the shape's
inside shows the background) and at strength 0 the base model is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from .loop import Budget, Loop, Run, Schedule, device
from .models import make_scheduler
from .train_place import final_dir
from .train_unet import LatentBatches, diffusion_loss, encode_cache

ARTEFACT = "gouache-tiny-outline.safetensors"
RANK = 8
ALPHA = 8.0
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CACHE_SIZE = 4_000
LR = 2e-3


def to_kohya(peft_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """peft's `<module>.lora_A/B.weight` keys -> kohya's `lora_unet_<module_>.lora_down/up.weight` + `.alpha`."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        module, kind = key.rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        part = "lora_down" if kind.startswith("A") else "lora_up"
        out[f"{name}.{part}.weight"] = tensor.detach().half().contiguous().cpu()
        out[f"{name}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
    return out


class LoraWeights:
    """The adapter weights of a UNet that peft has added a LoRA to: what the lora stage checkpoints."""

    def __init__(self, unet: UNet2DConditionModel) -> None:
        self.unet = unet

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Only the `lora_` tensors; the frozen base comes from the place stage's folder."""
        return {k: v for k, v in self.unet.state_dict().items() if "lora_" in k}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Put saved adapter weights back into the UNet."""
        self.unet.load_state_dict(state, strict=False)


def train(run: Run, batch: int = 32) -> Path:
    """Train (or resume) the LoRA on outline renders and write `out/gouache-tiny-outline.safetensors`."""
    work, seed = run.work, run.seed
    dev = device()
    base = final_dir(work)
    vae = AutoencoderKL.from_pretrained(work / "vae" / "final").to(dev)
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder").to(dev).requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(base / "unet").to(dev).requires_grad_(False)
    cache = encode_cache(vae, work / "latents_outline.pt", seed, CACHE_SIZE, outline=True, logfile=work / "lora.log")
    batches = LatentBatches(cache, vae.config.scaling_factor, tokenizer)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    alphas = make_scheduler().alphas_cumprod.to(dev)

    def loss(budget: Budget) -> torch.Tensor:
        z, ids = batches.sample(np.random.default_rng([seed, 4, budget.step]), batch, dev)
        with torch.no_grad():
            hidden = text_encoder(ids)[0]
        return diffusion_loss(unet, hidden, z, alphas)

    unet.train()
    text_encoder.eval()
    loop = Loop(
        "lora", run, torch.optim.AdamW(params, lr=LR, weight_decay=0.0), loss,
        Schedule(LR, warmup_steps=50, decay_from=0.7, floor=0.1), {"unet": LoraWeights(unet)},
    )
    loop()
    target = Path(run.out) / ARTEFACT
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_kohya(get_peft_model_state_dict(unet), ALPHA), str(target))
    loop.log(f"lora: done, wrote {target}")
    return target
