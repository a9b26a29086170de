"""Builders for tiny, seeded, randomly initialised Stable Diffusion models in the real file formats.

Each builder writes a diffusers folder (SD 1.x, SD 2.x v-prediction, SDXL base) whose block
structure mirrors the real family at toy widths; ``write_single_file`` writes the same weights as
an original-layout single file through ``convert.diffusers_to_original``. The text encoders keep
CLIP's real 49,408-token vocabulary (so real prompts tokenise and run) at a hidden size of 8-16.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from gouache.nodes.loading import diffusers_to_original, load_checkpoint, shipped_config_dir

VAE_CONFIG = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "latent_channels": 4,
    "sample_size": 32,
}


def _text_config(hidden: int, *, act: str, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection or hidden,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )


UNET_CONFIGS: dict[str, dict] = {
    # SD 1.x shape: attention in all but the last block, conv projections; layers_per_block 1 like gouache-tiny.
    "sd1": {
        "block_out_channels": [8, 8, 16],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": 2,
        "cross_attention_dim": 8,
        "use_linear_projection": False,
    },
    # SD 2.x shape: linear projections, per-level heads, two layers per block like the real model.
    "sd2": {
        "block_out_channels": [8, 16],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 2,
        "attention_head_dim": [2, 4],
        "cross_attention_dim": 8,
        "use_linear_projection": True,
        "upcast_attention": True,
    },
    # SDXL shape: no attention at the top level, deeper transformers below, size/pooled-text embedding.
    "sdxl": {
        "block_out_channels": [8, 16],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "transformer_layers_per_block": [1, 2],
        "attention_head_dim": [2, 4],
        "cross_attention_dim": 8 + 16,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 4,
        "projection_class_embeddings_input_dim": 6 * 4 + 12,
    },
}


def _jitter(*modules: torch.nn.Module, seed: int) -> None:
    """Perturb every tensor so that norms are not all ones and a swapped key cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _copy_shipped(family: str, folder: Path, names: list[str]) -> None:
    source = shipped_config_dir(family)
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


def build_diffusers_folder(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random ``family`` model as a diffusers folder at ``folder`` and return it."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, norm_num_groups=4, **UNET_CONFIGS[family])
    vae = AutoencoderKL(**VAE_CONFIG)
    text_encoders: dict[str, torch.nn.Module] = {}
    if family == "sd1":
        text_encoders["text_encoder"] = CLIPTextModel(_text_config(8, act="quick_gelu"))
    elif family == "sd2":
        text_encoders["text_encoder"] = CLIPTextModel(_text_config(8, act="gelu"))
    else:
        text_encoders["text_encoder"] = CLIPTextModel(_text_config(8, act="quick_gelu"))
        text_encoders["text_encoder_2"] = CLIPTextModelWithProjection(_text_config(16, act="gelu", projection=12))
    _jitter(unet, vae, *text_encoders.values(), seed=seed)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    for name, encoder in text_encoders.items():
        encoder.save_pretrained(folder / name)
    tokenizers = [f"{name.replace('text_encoder', 'tokenizer')}/tokenizer_config.json" for name in text_encoders]
    # Tokenizer folders hold only tokenizer_config.json, as shipped; the loader adds the shared BPE.
    _copy_shipped(family, folder, ["model_index.json", "scheduler/scheduler_config.json", *tokenizers])
    return folder


def write_single_file(folder: Path, target: Path) -> Path:
    """Write the model in diffusers ``folder`` to ``target`` (``.safetensors`` or ``.ckpt``) in original layout."""
    loaded = load_checkpoint(folder)
    parts = loaded.components()
    state_dict = diffusers_to_original(
        parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2"), family=loaded.family
    )
    state_dict = {key: value.contiguous().clone() for key, value in state_dict.items()}
    if target.suffix == ".safetensors":
        save_file(state_dict, str(target), metadata={"format": "pt"})
    else:
        # Lightning's layout: tensors under "state_dict", beside plain bookkeeping values.
        torch.save({"state_dict": state_dict, "global_step": 0, "epoch": 0}, str(target))
    return target

