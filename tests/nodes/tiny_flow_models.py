"""Tiny, seeded, random SD 3.x and Flux.1 models, written in every layout people download.

Widths are toys; everything else follows the real models' conventions (16 latent channels, an 8x
VAE with 32-group norms, SD 3's q/k RMS norms and an MMDiT-X block, Flux's rotary axes at 1/8, 7/16,
7/16 of the head width, CLIP's real 49,408-token vocabulary and T5's real 32,100-token one, both as
gouache ships them). ``write_*`` functions turn a diffusers folder into the original single-file
layouts (Stability's SD 3 files, ComfyUI's checkpoints, Black Forest Labs' bare Flux files) and the
split files of ComfyUI's ``diffusion_models``, ``text_encoders`` and ``vae`` folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from gouache.nodes.families import FLUX, SD3, UNET_PREFIX, VAE_PREFIX, Family
from gouache.nodes.loading import flow_convert
from gouache.nodes.loading.convert import _text_state_dict, vae_to_original
from gouache.nodes.loading.shipped import configs_root, shipped_config_dir

T5_WIDTH = 96
CLIP_L, CLIP_G = 32, 48


def _clip(hidden: int, act: str, projection: bool, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                            num_attention_heads=max(1, hidden // 64), max_position_embeddings=77, hidden_act=act,
                            projection_dim=hidden, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5(seed: int) -> T5EncoderModel:
    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=32128, d_model=T5_WIDTH, d_kv=16, d_ff=128, num_layers=2,
                                   num_decoder_layers=2, num_heads=6, feed_forward_proj="gated-gelu",
                                   relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))


def _vae(family: Family, seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=[32, 32, 32, 32], down_block_types=["DownEncoderBlock2D"] * 4,
                         up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1, norm_num_groups=32,
                         latent_channels=16, sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
                         scaling_factor=family.latent.scaling_factor, shift_factor=family.latent.shift_factor)


def _jitter(modules: list[torch.nn.Module], seed: int) -> None:
    """Move every weight off its initial value (norms off 1, biases off 0) so swapped keys show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _tokenizers(family: Family, folder: Path) -> None:
    """Complete tokenizer folders, as diffusers folders on a hub carry them."""
    for spec in family.encoders:
        target = folder / spec.tokenizer
        target.mkdir(parents=True)
        shutil.copyfile(shipped_config_dir(family) / spec.tokenizer / "tokenizer_config.json",
                        target / "tokenizer_config.json")
        if spec.layout == "t5":
            shutil.copyfile(configs_root() / "t5_tokenizer" / "tokenizer.json", target / "tokenizer.json")
        else:
            for name in ("vocab.json", "merges.txt"):
                shutil.copyfile(configs_root() / "clip_tokenizer" / name, target / name)


def build_sd3_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny SD 3.5-shaped model (q/k norms, one MMDiT-X block) as a diffusers folder."""
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=2,
                                        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_WIDTH,
                                        caption_projection_dim=32, pooled_projection_dim=CLIP_L + CLIP_G,
                                        out_channels=16, pos_embed_max_size=16, qk_norm="rms_norm",
                                        dual_attention_layers=(0,))
    clip_l = _clip(CLIP_L, "quick_gelu", True, seed + 1)
    clip_g = _clip(CLIP_G, "gelu", True, seed + 2)
    t5, vae = _t5(seed + 3), _vae(SD3, seed + 4)
    _jitter([transformer, clip_l, clip_g, t5, vae], seed)
    with torch.no_grad():  # SD 3 pools CLIP-L unprojected: its files carry an identity projection
        clip_l.text_projection.weight.copy_(torch.eye(CLIP_L))
    parts = {"transformer": transformer, "vae": vae, "text_encoder": clip_l, "text_encoder_2": clip_g,
             "text_encoder_3": t5}
    return _write_folder(SD3, folder, parts)


def build_flux_folder(folder: Path, seed: int = 0, guidance: bool = True) -> Path:
    """A tiny Flux.1-shaped model (dev with a guidance layer, schnell without) as a diffusers folder."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2,
                                         attention_head_dim=32, num_attention_heads=2, joint_attention_dim=T5_WIDTH,
                                         pooled_projection_dim=CLIP_L, guidance_embeds=guidance,
                                         axes_dims_rope=(4, 14, 14))
    clip_l, t5, vae = _clip(CLIP_L, "quick_gelu", False, seed + 1), _t5(seed + 3), _vae(FLUX, seed + 4)
    _jitter([transformer, clip_l, t5, vae], seed)
    parts = {"transformer": transformer, "vae": vae, "text_encoder": clip_l, "text_encoder_2": t5}
    folder = _write_folder(FLUX, folder, parts)
    if not guidance:
        shutil.copyfile(shipped_config_dir(FLUX) / "scheduler_schnell" / "scheduler_config.json",
                        folder / "scheduler" / "scheduler_config.json")
    return folder


def _write_folder(family: Family, folder: Path, parts: dict[str, torch.nn.Module]) -> Path:
    for slot, module in parts.items():
        module.save_pretrained(folder / slot)
    _tokenizers(family, folder)
    (folder / "scheduler").mkdir()
    shutil.copyfile(shipped_config_dir(family) / "scheduler" / "scheduler_config.json",
                    folder / "scheduler" / "scheduler_config.json")
    shutil.copyfile(shipped_config_dir(family) / "model_index.json", folder / "model_index.json")
    return folder


# -- the downloadable layouts -------------------------------------------------------------------


def _save(state_dict: dict[str, torch.Tensor], target: Path, dtype: torch.dtype | None = None) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().clone()
               for k, v in state_dict.items()}
    save_file(tensors, str(target))
    return target


def original_denoiser(family: Family, transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The transformer's weights in the original (Stability / BFL) layout, no prefix."""
    config = transformer.config
    if family is SD3:
        rules = flow_convert.sd3_rules(config.num_layers, tuple(config.dual_attention_layers or ()),
                                       config.qk_norm == "rms_norm")
    else:
        rules = flow_convert.flux_rules(config.num_layers, config.num_single_layers, config.guidance_embeds)
    state_dict = transformer.state_dict()
    out = flow_convert.to_original(state_dict, rules)
    assert len(flow_convert.to_diffusers(out, rules, "round trip")) == len(state_dict)
    return out


def _t5_state_dict(t5: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}


def _encoder_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return _t5_state_dict(module) if isinstance(module, T5EncoderModel) else _text_state_dict(module)




def write_checkpoint(loaded, target: Path, *, encoders: bool = True, dtype: torch.dtype | None = None) -> Path:
    """One file in the ComfyUI / Stability layout: denoiser, VAE and (optionally) the text encoders."""
    family = loaded.family
    state_dict = {UNET_PREFIX + k: v for k, v in original_denoiser(family, loaded.denoiser).items()}
    state_dict.update({VAE_PREFIX + k: v for k, v in vae_to_original(loaded.vae).items()})
    if encoders:
        for encoder in loaded.encoders:
            prefix = encoder.spec.original_prefix
            state_dict.update({prefix + k: v for k, v in _encoder_state_dict(encoder.model).items()})
    return _save(state_dict, target, dtype)


def write_split(loaded, folder: Path, *, layout: str = "original", dtype: torch.dtype | None = None) -> dict[str, Path]:
    """The split files: ``diffusion_model`` (``original`` bare, ``prefixed`` or ``diffusers`` layout),
    one file per text encoder (transformers' layout) and ``vae`` (bare original layout)."""
    family = loaded.family
    if layout == "diffusers":
        denoiser = loaded.denoiser.state_dict()
    else:
        denoiser = original_denoiser(family, loaded.denoiser)
        if layout == "prefixed":
            denoiser = {UNET_PREFIX + k: v for k, v in denoiser.items()}
    files = {"diffusion_model": _save(denoiser, folder / "diffusion_models" / f"{family.name}-{layout}.safetensors", dtype),
             "vae": _save(vae_to_original(loaded.vae), folder / "vae" / f"{family.name}-ae.safetensors")}
    for encoder in loaded.encoders:
        name = {"T5EncoderModel": "t5xxl"}.get(encoder.spec.model_class, f"clip-{encoder.spec.slot}")
        files[encoder.spec.slot] = _save(_encoder_state_dict(encoder.model),
                                         folder / "text_encoders" / f"{family.name}-{name}.safetensors", dtype)
    return files


def scheduler(loaded) -> FlowMatchEulerDiscreteScheduler:
    """A fresh scheduler on the model's config, for a diffusers pipeline."""
    return FlowMatchEulerDiscreteScheduler.from_config(json.loads(json.dumps(loaded.scheduler_config)))
