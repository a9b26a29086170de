"""Load SD 3.x and Flux.1 models, offline, with every weight kept in the dtype its file stores.

What loads:

* single files in the original layout (Stability's SD 3.x files, with or without text encoders; Black
  Forest Labs' bare Flux transformer) and in ComfyUI's checkpoint layout (``model.diffusion_model.``,
  ``first_stage_model.``, ``text_encoders.clip_l|clip_g|t5xxl.transformer.``);
* diffusers folders (``StableDiffusion3Pipeline``, ``FluxPipeline``), shards included;
* split files: a diffusion model alone (original, prefixed or diffusers layout), CLIP-L, CLIP-G and
  T5-XXL files (transformers' layout, as ComfyUI's ``text_encoders`` folder holds them), a VAE
  (original or diffusers layout; SD 1.x / 2.x / XL VAEs too).

Each part is built empty (``accelerate.init_empty_weights``) from a config and then given the file's
tensors themselves (``load_state_dict(assign=True)``): no fp32 copy of a bf16 or fp8 model ever
exists. The configs of single and split files are read from the tensors' shapes, starting from the
family's shipped config (``nodes/configs/<family>``) for what shapes cannot tell (activation
functions, token ids), so fine-tunes and pruned models load as they are. Conventions the shapes
cannot show are those of every released model: 64-wide attention heads in CLIP and in SD 3 models
without q/k norms, 32 groups in the VAE's group norms, and Flux's rotary axes split 1/8, 7/16, 7/16
of the head width.

Every tensor in a file must land in a part: one that fits nowhere is an error naming it, except the
halves of a model text encoding never uses (CLIP's vision tower, T5's decoder), which are set aside
by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from accelerate import init_empty_weights
from torch import nn

from gouache.nodes.families import FLUX, SD3, UNET_PREFIX, VAE_PREFIX, Family, TextEncoder

from . import flow_convert
from .detect import denoiser_family, describe_keys, refuse_unloaded
from .errors import ModelLoadError
from .files import read_state_dict
from .loader import VAE_SLOT, LoadedCheckpoint, LoadedEncoder
from .manual_cast import STORAGE_DTYPES
from .shipped import configs_root, load_tokenizer, shipped_config_dir

FLOW_FAMILIES = (SD3, FLUX)
_VAE_PREFIXES = (VAE_PREFIX, "vae.")
# Halves of a model that text encoding never reads: set aside, by name, instead of refused.
_UNUSED = {
    "vision_model.": "CLIP's image tower", "visual_projection.": "CLIP's image projection",
    "logit_scale": "CLIP's contrastive temperature", "decoder.": "T5's decoder", "lm_head.": "T5's output head",
}
WEIGHT_DTYPES = {"default": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
"""``weight_dtype`` choices: ``default`` keeps the file's dtype; the others convert tensor by tensor."""


# -- telling what a state dict holds ------------------------------------------------------------


def _strip(keys: Iterable[str], prefix: str) -> list[str]:
    return [k[len(prefix):] for k in keys if k.startswith(prefix)]


def _denoiser_keys(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    prefixed = _strip(keys, UNET_PREFIX)
    return prefixed or keys


def detect_flow_family(keys: Iterable[str]) -> Family | None:
    """SD3 or FLUX when ``keys`` hold that family's denoiser in any layout; ``None`` when they hold neither.

    Raises ``ModelLoadError`` naming the family for models gouache recognises but does not load
    (Flux.2, Chroma, Flux.1 Fill and Depth).
    """
    keys = list(keys)
    refuse_unloaded(keys)  # checked before the Flux.1 marker that Flux.2 and Chroma share
    family = denoiser_family(_denoiser_keys(keys))
    return family if family in FLOW_FAMILIES else None


def _refuse_flux_variants(shapes: Mapping[str, Any]) -> None:
    width = shapes.get("img_in.weight")
    if width is not None and tuple(width.shape)[1] in (384, 128):
        label = "Flux.1 Fill" if tuple(width.shape)[1] == 384 else "Flux.1 Depth"
        raise ModelLoadError(f"this is a {label} model (its input takes a conditioning image), which gouache "
                             "does not load; Flux.1 dev and schnell load")


def _layout(keys: Iterable[str], family: Family) -> str:
    """``original`` or ``diffusers`` for a bare denoiser state dict."""
    return "diffusers" if family.diffusers_marker in set(keys) else "original"


# -- configs from shapes ------------------------------------------------------------------------


def _shipped_config(family: Family, slot: str) -> dict[str, Any]:
    path = shipped_config_dir(family) / slot / "config.json"
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ModelLoadError(f"{what}: no {key}; found {describe_keys(state_dict)}")
    return tuple(state_dict[key].shape)


def _meta(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v.shape, device="meta") for k, v in state_dict.items()}


def _rules(family: Family, config: Mapping[str, Any]) -> list[flow_convert.Rule]:
    if family is SD3:
        return flow_convert.sd3_rules(config["num_layers"], tuple(config.get("dual_attention_layers") or ()),
                                      config.get("qk_norm") == "rms_norm")
    return flow_convert.flux_rules(config["num_layers"], config["num_single_layers"], config["guidance_embeds"])


def _rules_from_diffusers_keys(family: Family, keys: set[str]) -> list[flow_convert.Rule]:
    if family is SD3:
        layers = flow_convert.count_blocks(keys, "transformer_blocks")
        dual = tuple(i for i in range(layers) if f"transformer_blocks.{i}.attn2.to_q.weight" in keys)
        return flow_convert.sd3_rules(layers, dual, "transformer_blocks.0.attn.norm_q.weight" in keys)
    return flow_convert.flux_rules(flow_convert.count_blocks(keys, "transformer_blocks"),
                                   flow_convert.count_blocks(keys, "single_transformer_blocks"),
                                   "time_text_embed.guidance_embedder.linear_1.weight" in keys)


def denoiser_config(family: Family, original: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    """The diffusers config of an original-layout (bare) SD 3.x or Flux.1 transformer state dict."""
    config = _shipped_config(family, family.denoiser_slot)
    keys = set(original)
    if family is SD3:
        hidden, in_channels, patch, _ = _shape(original, "x_embedder.proj.weight", what)
        layers = flow_convert.count_blocks(keys, "joint_blocks")
        qk_norm = "joint_blocks.0.x_block.attn.ln_q.weight" in keys
        head = _shape(original, "joint_blocks.0.x_block.attn.ln_q.weight", what)[0] if qk_norm else 64
        caption, joint = _shape(original, "context_embedder.weight", what)
        positions = _shape(original, "pos_embed", what)[1]
        config.update(
            num_layers=layers, patch_size=patch, in_channels=in_channels, attention_head_dim=head,
            num_attention_heads=hidden // head, caption_projection_dim=caption, joint_attention_dim=joint,
            pooled_projection_dim=_shape(original, "y_embedder.mlp.0.weight", what)[1],
            out_channels=_shape(original, "final_layer.linear.weight", what)[0] // (patch * patch),
            pos_embed_max_size=math.isqrt(positions), qk_norm="rms_norm" if qk_norm else None,
            dual_attention_layers=[i for i in range(layers) if f"joint_blocks.{i}.x_block.attn2.qkv.weight" in keys],
        )
        return config
    _refuse_flux_variants(original)
    inner, in_channels = _shape(original, "img_in.weight", what)
    head = _shape(original, "double_blocks.0.img_attn.norm.query_norm.scale", what)[0]
    if head == 128:
        axes = [16, 56, 56]
    else:
        axes = [head // 8, head * 7 // 16, head * 7 // 16]
        if sum(axes) != head or any(a % 2 for a in axes):
            raise ModelLoadError(f"{what}: attention heads {head} wide cannot split into Flux's rotary axes "
                                 "(1/8, 7/16, 7/16, each even); load a diffusers folder whose config names them")
    mlp = _shape(original, "double_blocks.0.img_mlp.0.weight", what)[0]
    if mlp != 4 * inner:
        raise ModelLoadError(f"{what}: MLP width {mlp} is not 4 x {inner}, as Flux.1's blocks are built")
    out = _shape(original, "final_layer.linear.weight", what)[0]
    config.update(
        num_layers=flow_convert.count_blocks(keys, "double_blocks"),
        num_single_layers=flow_convert.count_blocks(keys, "single_blocks"),
        in_channels=in_channels, out_channels=None if out == in_channels else out, attention_head_dim=head,
        num_attention_heads=inner // head, joint_attention_dim=_shape(original, "txt_in.weight", what)[1],
        pooled_projection_dim=_shape(original, "vector_in.in_layer.weight", what)[1],
        guidance_embeds="guidance_in.in_layer.weight" in keys, axes_dims_rope=axes,
    )
    return config


def vae_config(family: Family, original: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    """The diffusers ``AutoencoderKL`` config of an original-layout (LDM) VAE state dict."""
    config = _shipped_config(family, VAE_SLOT)
    keys = set(original)
    levels = flow_convert.count_blocks(keys, "encoder.down")
    per_level = flow_convert.count_blocks(keys, "encoder.down.0.block")
    if not levels or not per_level:
        raise ModelLoadError(f"{what}: not a VAE in the original layout (no encoder.down.*.block.*); "
                             f"found {describe_keys(original)}")
    config.update(
        in_channels=_shape(original, "encoder.conv_in.weight", what)[1],
        out_channels=_shape(original, "decoder.conv_out.weight", what)[0],
        latent_channels=_shape(original, "decoder.conv_in.weight", what)[1],
        block_out_channels=[_shape(original, f"encoder.down.{i}.block.0.conv2.weight", what)[0] for i in range(levels)],
        layers_per_block=per_level, down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels, use_quant_conv="quant_conv.weight" in keys,
        use_post_quant_conv="post_quant_conv.weight" in keys,
        mid_block_add_attention=any(k.startswith("encoder.mid.attn_1.") for k in keys),
    )
    latent = family.latent
    if latent.scaling_factor is not None:
        config.update(scaling_factor=latent.scaling_factor, shift_factor=latent.shift_factor or None)
    return config


def clip_config(base: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    """A CLIP text config from ``base`` (activation, token ids) and the shapes of a transformers-layout state dict."""
    vocab, hidden = _shape(state_dict, "text_model.embeddings.token_embedding.weight", what)
    config = dict(base)
    config.update(
        vocab_size=vocab, hidden_size=hidden,
        max_position_embeddings=_shape(state_dict, "text_model.embeddings.position_embedding.weight", what)[0],
        num_hidden_layers=flow_convert.count_blocks(set(state_dict), "text_model.encoder.layers"),
        intermediate_size=_shape(state_dict, "text_model.encoder.layers.0.mlp.fc1.weight", what)[0],
        num_attention_heads=max(1, hidden // 64),
    )
    if "text_projection.weight" in state_dict:
        config["projection_dim"] = _shape(state_dict, "text_projection.weight", what)[0]
    return config


def t5_config(base: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    """A T5 encoder config from ``base`` and the shapes of a transformers-layout state dict."""
    vocab, width = _shape(state_dict, "shared.weight", what)
    buckets, heads = _shape(state_dict, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", what)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in state_dict
    wi = "wi_0" if gated else "wi"
    config = dict(base)
    config.update(
        vocab_size=vocab, d_model=width, num_heads=heads, relative_attention_num_buckets=buckets,
        d_kv=_shape(state_dict, "encoder.block.0.layer.0.SelfAttention.q.weight", what)[0] // heads,
        d_ff=_shape(state_dict, f"encoder.block.0.layer.1.DenseReluDense.{wi}.weight", what)[0],
        num_layers=flow_convert.count_blocks(set(state_dict), "encoder.block"),
        feed_forward_proj="gated-gelu" if gated else "relu",
    )
    config["num_decoder_layers"] = config["num_layers"]
    return config


# -- building modules from tensors --------------------------------------------------------------


def _convert_dtype(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if dtype is None:
        return state_dict
    return {k: (v.to(dtype) if v.is_floating_point() and v.dtype != dtype else v) for k, v in state_dict.items()}


def _check_dtypes(state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    odd = sorted({str(v.dtype) for v in state_dict.values() if v.is_floating_point() and v.dtype not in STORAGE_DTYPES})
    if odd:
        raise ModelLoadError(f"{what}: tensors stored as {', '.join(odd)}, which gouache cannot compute with")


def build(module_class: type[nn.Module], config: Any, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """An empty ``module_class`` filled with ``state_dict``'s own tensors (dtype kept, nothing copied)."""
    _check_dtypes(state_dict, what)
    with init_empty_weights():
        module = (module_class.from_config(config) if hasattr(module_class, "from_config")
                  else module_class(config))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (first: {', '.join(missing[:5])})")
        if extra:
            parts.append(f"{len(extra)} tensors that fit no weight (first: {', '.join(extra[:5])})")
        raise ModelLoadError(f"{what}: {'; '.join(parts)}")
    wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise ModelLoadError(f"{what}: {len(wrong)} tensors have the wrong shape (first: {k} is "
                             f"{tuple(state_dict[k].shape)}, the config says {tuple(expected[k].shape)})")
    module.load_state_dict(dict(state_dict), strict=True, assign=True)
    stuck = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.device.type == "meta"]
    if stuck:
        raise ModelLoadError(f"{what}: {len(stuck)} weights were not set (first: {', '.join(stuck[:5])})")
    module.requires_grad_(False)
    return module.eval()


def _denoiser(family: Family, state_dict: Mapping[str, torch.Tensor], what: str,
              config: Mapping[str, Any] | None = None) -> nn.Module:
    """The transformer from a bare state dict in either layout (diffusers' config wins when given)."""
    if _layout(state_dict, family) == "diffusers":
        diffusers_sd = dict(state_dict)
        if config is None:
            rules = _rules_from_diffusers_keys(family, set(state_dict))
            config = denoiser_config(family, flow_convert.to_original(_meta(state_dict), rules), what)
    else:
        if config is None:
            config = denoiser_config(family, state_dict, what)
        diffusers_sd = flow_convert.to_diffusers(state_dict, _rules(family, config), what)
    return build(getattr(diffusers, family.denoiser_class), config, diffusers_sd, what)


def _vae(family: Family, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """An AutoencoderKL from a bare VAE state dict in the original (LDM) or diffusers layout."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from .convert import vae_to_original

    if any(k.startswith("encoder.down_blocks.") for k in state_dict):  # diffusers layout
        return build(diffusers.AutoencoderKL, _vae_config_from_diffusers(family, state_dict, what), state_dict, what)
    config = vae_config(family, state_dict, what)
    with init_empty_weights():
        probe = diffusers.AutoencoderKL.from_config(config)
    unknown = sorted(set(state_dict) - set(vae_to_original(probe)))
    if unknown:
        raise ModelLoadError(f"{what}: {len(unknown)} tensors fit no part of the VAE (first: {', '.join(unknown[:5])})")
    # diffusers' own LDM conversion (it also turns the attention's 1x1 convolutions into linears).
    return build(diffusers.AutoencoderKL, config, convert_ldm_vae_checkpoint(dict(state_dict), config), what)


def _vae_config_from_diffusers(family: Family, state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    config = _shipped_config(family, VAE_SLOT)
    keys = set(state_dict)
    levels = flow_convert.count_blocks(keys, "encoder.down_blocks")
    config.update(
        block_out_channels=[_shape(state_dict, f"encoder.down_blocks.{i}.resnets.0.conv2.weight", what)[0]
                            for i in range(levels)],
        layers_per_block=flow_convert.count_blocks(keys, "encoder.down_blocks.0.resnets"),
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
        latent_channels=_shape(state_dict, "decoder.conv_in.weight", what)[1],
        use_quant_conv="quant_conv.weight" in keys, use_post_quant_conv="post_quant_conv.weight" in keys,
    )
    if family.latent.scaling_factor is not None:
        config.update(scaling_factor=family.latent.scaling_factor, shift_factor=family.latent.shift_factor or None)
    return config


def _set_aside(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop, by name, the halves of a model text encoding never reads (see ``_UNUSED``)."""
    return {k: v for k, v in state_dict.items()
            if not any(k.startswith(p) or k.startswith(f"text_model.{p}") for p in _UNUSED)
            and not k.endswith("embeddings.position_ids")}


def _clip(spec: TextEncoder, family: Family, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """A CLIP text encoder from transformers' layout, with or without the ``text_model.`` level."""
    state_dict = _set_aside(state_dict)
    if not any(k.startswith("text_model.") for k in state_dict):
        state_dict = {(k if k == "text_projection.weight" else f"text_model.{k}"): v for k, v in state_dict.items()}
    base = _shipped_config(family, spec.slot)
    config = clip_config(base, state_dict, what)
    module_class = getattr(transformers, spec.model_class)
    wants_projection = spec.model_class == "CLIPTextModelWithProjection"
    state_dict = dict(state_dict)
    if wants_projection and family is SD3 and spec.slot == "text_encoder":
        # SD 3 pools CLIP-L without its projection; diffusers' single-file loader gives it an
        # identity projection, and so does gouache, whatever projection the file carries.
        width = config["hidden_size"]
        config["projection_dim"] = width
        state_dict["text_projection.weight"] = torch.eye(width, dtype=state_dict[
            "text_model.embeddings.token_embedding.weight"].dtype)
    elif wants_projection and "text_projection.weight" not in state_dict:
        raise ModelLoadError(f"{what}: no text_projection.weight; {family.label}'s {spec.slot} needs the projected "
                             "pooled output")
    elif not wants_projection:
        state_dict.pop("text_projection.weight", None)  # Flux pools CLIP-L unprojected
    config_object = transformers.CLIPTextConfig(**config)
    if module_class is transformers.CLIPTextModel:
        probe_keys = _clip_model_keys(config_object)
        if not any(k.startswith("text_model.") for k in probe_keys):
            state_dict = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    return build(module_class, config_object, state_dict, what)


def _clip_model_keys(config: Any) -> set[str]:
    with init_empty_weights():
        return set(transformers.CLIPTextModel(config).state_dict())


def _t5(family: Family, spec: TextEncoder, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    state_dict = dict(_set_aside(state_dict))
    if "shared.weight" not in state_dict and "encoder.embed_tokens.weight" in state_dict:
        state_dict["shared.weight"] = state_dict["encoder.embed_tokens.weight"]
    if "shared.weight" in state_dict:
        state_dict["encoder.embed_tokens.weight"] = state_dict["shared.weight"]
    config = transformers.T5Config(**t5_config(_shipped_config(family, spec.slot), state_dict, what))
    module = build(transformers.T5EncoderModel, config, state_dict, what)
    module.encoder.embed_tokens = module.shared  # tied, as T5EncoderModel builds them
    return module


def _encoder(family: Family, spec: TextEncoder, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    if spec.layout == "t5":
        return _t5(family, spec, state_dict, what)
    return _clip(spec, family, state_dict, what)


# -- tokenizers ------------------------------------------------------------------------------------


def _tokenizer(folder: Path | None, family: Family, spec: TextEncoder) -> Any:
    """The folder's own tokenizer when it has one, else the shipped one for ``spec``."""
    if folder is not None and (folder / spec.tokenizer).is_dir():
        return load_tokenizer(folder / spec.tokenizer, spec)
    return load_tokenizer(shipped_config_dir(family) / spec.tokenizer, spec)


# -- the three ways in -----------------------------------------------------------------------------


def split_single_file(family: Family, state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, dict]:
    """Sort a single file's tensors into ``denoiser``, ``vae`` and encoder slots, prefixes removed.

    A file without ``model.diffusion_model.`` is a bare denoiser (BFL's Flux files). A tensor no
    part claims is an error naming it.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {}
    claimed: set[str] = set()
    prefixed = any(k.startswith(UNET_PREFIX) for k in state_dict)

    def claim(name: str, prefix: str) -> None:
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if own:
            parts.setdefault(name, {}).update(own)
            claimed.update(prefix + k for k in own)

    if prefixed:
        claim("denoiser", UNET_PREFIX)
        for prefix in _VAE_PREFIXES:
            claim(VAE_SLOT, prefix)
        for spec in family.encoders:
            claim(spec.slot, spec.original_prefix)
    else:
        parts["denoiser"] = dict(state_dict)
        claimed.update(state_dict)
    unknown = sorted(set(state_dict) - claimed)
    if unknown:
        raise ModelLoadError(f"{what}: {len(unknown)} tensors belong to no part of a {family.label} checkpoint "
                             f"(first: {', '.join(unknown[:5])})")
    return parts


def _finish(loaded: LoadedCheckpoint) -> LoadedCheckpoint:
    for _, module in loaded.modules():
        module.requires_grad_(False).eval()
    return loaded


def scheduler_config(family: Family, denoiser: nn.Module | None) -> dict[str, Any]:
    """The shipped scheduler config; Flux.1 schnell (no guidance layer) uses its own, unshifted one."""
    folder = shipped_config_dir(family)
    name = "scheduler"
    if family is FLUX and denoiser is not None and not denoiser.config.guidance_embeds:
        name = "scheduler_schnell"
    return json.loads((folder / name / "scheduler_config.json").read_text(encoding="utf-8"))


def load_single_file(path: Path, family: Family, state_dict: Mapping[str, torch.Tensor],
                     weight_dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """A single file of ``family``: whatever parts it holds (a bare denoiser holds only that)."""
    parts = split_single_file(family, state_dict, str(path))
    denoiser = _denoiser(family, _convert_dtype(parts["denoiser"], weight_dtype), f"{path} (diffusion model)")
    vae = _vae(family, parts[VAE_SLOT], f"{path} (VAE)") if VAE_SLOT in parts else None
    encoders = tuple(
        LoadedEncoder(spec, _encoder(family, spec, parts[spec.slot], f"{path} ({spec.slot})"),
                      _tokenizer(None, family, spec))
        for spec in family.encoders if spec.slot in parts
    )
    return _finish(LoadedCheckpoint(family, denoiser, vae, encoders, scheduler_config(family, denoiser), "flow", path))


def _read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ModelLoadError(f"{folder}: no weights (*.safetensors or *.bin)")
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:  # shards of one model; an index file only says which shard holds what
        state_dict.update(read_state_dict(file))
    return state_dict


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read the config ({error})") from error


def load_folder(folder: Path, family: Family) -> LoadedCheckpoint:
    """A diffusers folder of ``family``, each part in the dtype its files store."""
    denoiser_dir = folder / family.denoiser_slot
    config = {k: v for k, v in _read_config(denoiser_dir).items() if not k.startswith("_")}
    denoiser = build(getattr(diffusers, family.denoiser_class), config, _read_folder_weights(denoiser_dir),
                     str(denoiser_dir))
    vae_dir = folder / VAE_SLOT
    vae = build(diffusers.AutoencoderKL, {k: v for k, v in _read_config(vae_dir).items() if not k.startswith("_")},
                _read_folder_weights(vae_dir), str(vae_dir))
    encoders = []
    for spec in family.encoders:
        encoder_dir = folder / spec.slot
        config_class = transformers.T5Config if spec.layout == "t5" else transformers.CLIPTextConfig
        model_class = getattr(transformers, spec.model_class)
        state_dict = _read_folder_weights(encoder_dir)
        if spec.layout == "t5" and "encoder.embed_tokens.weight" not in state_dict and "shared.weight" in state_dict:
            state_dict["encoder.embed_tokens.weight"] = state_dict["shared.weight"]
        model = build(model_class, config_class(**_read_config(encoder_dir)), _set_aside(state_dict), str(encoder_dir))
        if spec.layout == "t5":
            model.encoder.embed_tokens = model.shared
        encoders.append(LoadedEncoder(spec, model, _tokenizer(folder, family, spec)))
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    return _finish(LoadedCheckpoint(family, denoiser, vae, tuple(encoders), scheduler, "flow", folder))


def load_diffusion_model(path: Path, weight_dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """A diffusion model file alone (original, ComfyUI-prefixed or diffusers layout), or a
    diffusers ``transformer`` folder; only ``denoiser`` is set."""
    path = Path(path)
    if path.is_dir():
        state_dict = _read_folder_weights(path)
        config = {k: v for k, v in _read_config(path).items() if not k.startswith("_")}
    else:
        state_dict, config = read_state_dict(path), None
    family = detect_flow_family(state_dict)
    if family is None:
        raise ModelLoadError(f"{path}: not an SD 3.x or Flux.1 diffusion model; found {describe_keys(state_dict)}. "
                             "Stable Diffusion 1.x / 2.x / XL checkpoints load with CheckpointLoader")
    bare = {k[len(UNET_PREFIX):]: v for k, v in state_dict.items() if k.startswith(UNET_PREFIX)}
    if bare and len(bare) != len(state_dict):
        raise ModelLoadError(f"{path} holds more than a diffusion model ({describe_keys(state_dict)}); "
                             "load full checkpoints with CheckpointLoader")
    denoiser = _denoiser(family, _convert_dtype(dict(bare or state_dict), weight_dtype), str(path), config)
    return _finish(LoadedCheckpoint(family, denoiser, None, (), scheduler_config(family, denoiser), "flow", path))


def _encoder_kind(state_dict: Mapping[str, torch.Tensor], what: str) -> tuple[str, int]:
    """(``t5`` or ``clip``, width) of a text encoder file in transformers' layout."""
    if "shared.weight" in state_dict or "encoder.embed_tokens.weight" in state_dict:
        key = "shared.weight" if "shared.weight" in state_dict else "encoder.embed_tokens.weight"
        return "t5", int(state_dict[key].shape[1])
    for key in ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight"):
        if key in state_dict:
            return "clip", int(state_dict[key].shape[1])
    raise ModelLoadError(f"{what}: not a CLIP or T5 text encoder in transformers' layout; found {describe_keys(state_dict)}")


def load_text_encoders(paths: list[Path], family: Family) -> LoadedCheckpoint:
    """``family``'s text encoders from one file each (CLIP-L, CLIP-G, T5-XXL in any order); only
    ``encoders`` is set. Files are matched to the family's encoders by kind (T5 or CLIP) and, among
    CLIPs, by width: the narrower is the first encoder (CLIP-L before CLIP-G)."""
    found: dict[str, list[tuple[int, Path, dict]]] = {"t5": [], "clip": []}
    for path in paths:
        state_dict = read_state_dict(path)
        kind, width = _encoder_kind(state_dict, str(path))
        found[kind].append((width, path, state_dict))
    wanted = {"t5": [s for s in family.encoders if s.layout == "t5"],
              "clip": [s for s in family.encoders if s.layout != "t5"]}
    problems = []
    for kind, specs in wanted.items():
        if len(found[kind]) != len(specs):
            problems.append(f"{len(specs)} {kind.upper()} file(s), got {len(found[kind])}")
    if problems:
        raise ModelLoadError(f"{family.label} needs {' and '.join(f'{len(s)} {k.upper()}' for k, s in wanted.items() if s)} "
                             f"text encoder file(s): {'; '.join(problems)} ({', '.join(p.name for p in paths)})")
    encoders = []
    for kind, specs in wanted.items():
        for spec, (_, path, state_dict) in zip(specs, sorted(found[kind], key=lambda item: item[0])):
            model = _encoder(family, spec, state_dict, f"{path} ({spec.slot})")
            encoders.append(LoadedEncoder(spec, model, _tokenizer(None, family, spec)))
    order = {spec.slot: index for index, spec in enumerate(family.encoders)}
    encoders.sort(key=lambda encoder: order[encoder.spec.slot])
    return _finish(LoadedCheckpoint(family, None, None, tuple(encoders), {}, "flow", paths[0]))


def load_vae(path: Path, family: Family) -> LoadedCheckpoint:
    """A VAE file (original or diffusers layout) or diffusers ``vae`` folder for ``family``; only ``vae``
    is set. The family decides the latent scaling, which the weights cannot show."""
    path = Path(path)
    state_dict = _read_folder_weights(path) if path.is_dir() else read_state_dict(path)
    for prefix in _VAE_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            break
    vae = _vae(family, state_dict, str(path))
    if family.latent.scaling_factor is None and family.sampling == "discrete":
        shipped = _shipped_config(family, VAE_SLOT)
        vae.register_to_config(scaling_factor=shipped["scaling_factor"])
    channels = vae.config.latent_channels
    if channels != family.latent.channels:
        raise ModelLoadError(f"{path}: a VAE with {channels} latent channels, but {family.label} latents have "
                             f"{family.latent.channels}; choose the family the VAE belongs to")
    return _finish(LoadedCheckpoint(family, None, vae, (), {}, family.prediction_types[0], path))


def t5_tokenizer_dir() -> Path:
    """Where T5's SentencePiece vocabulary ships (``nodes/configs/t5_tokenizer``)."""
    return configs_root() / "t5_tokenizer"
