"""Tell which model family a checkpoint belongs to, and whether it predicts noise or velocity.

Everything family-specific comes from the descriptions in ``gouache.nodes.families``. Families are
told apart by where their text encoders live in an original-layout file (what the CompVis LDM and
Stability SGM training code wrote), so block counts and widths do not matter and tiny test models
are recognised like the real ones: the family all of whose encoder prefixes are present, the one
with the most encoders winning (SDXL's first encoder is SD 1.x's CLIP-L under another prefix).
Files without a text encoder fall back on the denoiser's cross-attention width (``context_width``).

The prediction type cannot always be read from the weights; the rule, first match wins:

1. a ``v_pred`` key in the state dict (the marker ComfyUI and several v-prediction fine-tunes write)
   means ``v_prediction``; so does a safetensors ``__metadata__`` ``modelspec.prediction_type`` of
   ``v`` (Stability's model spec; ``epsilon`` there means epsilon);
2. a sidecar ``<checkpoint stem>.yaml`` (the A1111 convention) decides through
   ``model.params.parameterization`` (``"v"`` means ``v_prediction``, absent means ``epsilon``);
3. the family's ``prediction_by_name`` patterns on the file name (SD 2.x: a name that mentions
   ``512`` or ``base`` but not ``768`` is the 512 px epsilon model);
4. the family's default, the first of its ``prediction_types``.

Callers can always override it (``load_checkpoint(..., prediction_type=...)``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gouache.nodes.families import FAMILIES, UNET_PREFIX, Family, PredictionType

from .errors import ModelLoadError

if TYPE_CHECKING:  # detection reads names and shapes only; the server lists models without torch
    import torch

PREDICTION_TYPES: tuple[PredictionType, ...] = ("epsilon", "v_prediction")

# Models gouache recognises but does not load, by a key (or key prefix) only they have, bare or under
# ``model.diffusion_model.``: refused with their name rather than with a puzzling mismatch later.
REFUSED: dict[str, str] = {
    "conditioner.embedders.0.model.": "Stable Diffusion XL refiner",  # OpenCLIP-G alone, where the base has CLIP-L
    "embedder.model.visual.": "Stable unCLIP",
    "noise_augmentor.": "Stable unCLIP",
    "depth_model.": "Stable Diffusion 2 depth-to-image",
    "low_scale_model.": "Stable Diffusion x4 upscaler",
    "clip_txt_mapper.": "Stable Cascade (stage C)",
    "effnet_mapper.": "Stable Cascade (stage B)",
    "t_block.1.weight": "PixArt",
    "mlp_t5.": "Hunyuan-DiT",
    "cond_seq_linear.": "AuraFlow",
    "encoder_hid_proj.": "Kolors",
    "head.modulation": "Wan (video)",
    "txt_in.individual_token_refiner.": "HunyuanVideo",
    "single_stream_modulation.lin.weight": "Flux.2",
    "early_stream_modulations.image.lin.weight": "Flux.3",
    "distilled_guidance_layer.in_proj.bias": "Chroma",
}


def refuse_unloaded(keys: Iterable[str]) -> None:
    """Raise ``ModelLoadError`` naming the family when ``keys`` hold a model of :data:`REFUSED`."""
    names = {key[len(UNET_PREFIX):] if key.startswith(UNET_PREFIX) else key for key in keys}
    for marker, label in REFUSED.items():
        if any(name.startswith(marker) for name in names):
            loaded = ", ".join(f.label for f in FAMILIES.values())
            raise ModelLoadError(f"this is a {label} checkpoint, which gouache does not load; gouache loads {loaded}")


@dataclass(frozen=True)
class Detection:
    """What a checkpoint is: its family, its prediction type, and why that prediction type.

    ``explicit`` is true when the file itself (a ``v_pred`` key, a sidecar YAML) said so, rather
    than a default or a name-based guess.
    """

    family: Family
    prediction_type: str
    reason: str
    explicit: bool = False


def describe_keys(state_dict: Mapping[str, object], limit: int = 8) -> str:
    """Summarise a state dict by its two-level key prefixes, most common first, for error messages."""
    if not state_dict:
        return "no tensors at all"
    counts = Counter(".".join(key.split(".")[:2]) for key in state_dict)
    shown = ", ".join(f"{prefix}.* ({count})" for prefix, count in counts.most_common(limit))
    more = f" and {len(counts) - limit} more prefixes" if len(counts) > limit else ""
    return f"{len(state_dict)} tensors under {shown}{more}"


def _has_prefix(state_dict: Mapping[str, object], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in state_dict)


def _context_width(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Return the width the UNet's cross-attention reads (the text encoders' output), if any."""
    for key, value in state_dict.items():
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight"):
            return int(value.shape[1])
    return None


def denoiser_family(keys: Iterable[str]) -> Family | None:
    """The family whose denoiser ``keys`` hold, by a key only that family's denoiser has, in its
    original or diffusers layout (bare or under ``model.diffusion_model.``); ``None`` if none says.

    Reads names only, so it serves ``gouache models`` on a safetensors header as well as a loaded file.
    """
    names = {key[len(UNET_PREFIX):] if key.startswith(UNET_PREFIX) else key for key in keys}
    for family in FAMILIES.values():
        if family.original_marker in names or family.diffusers_marker in names:
            return family
    return None


def _encoder_match(state_dict: Mapping[str, object], family: Family) -> int:
    """How many of ``family``'s encoders the file holds, or 0 unless it holds every one."""
    prefixes = family.encoder_prefixes
    return len(prefixes) if prefixes and all(_has_prefix(state_dict, p) for p in prefixes) else 0


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Family:
    """Return the family of an original-layout (LDM/SGM) state dict, or raise ``ModelLoadError``."""
    refuse_unloaded(state_dict)
    if not _has_prefix(state_dict, UNET_PREFIX):
        raise ModelLoadError(
            f"not a full Stable Diffusion checkpoint: no UNet weights ({UNET_PREFIX}*); found "
            f"{describe_keys(state_dict)}. LoRAs, VAEs and embeddings go in their own model folders."
        )
    matches = {family.name: _encoder_match(state_dict, family) for family in FAMILIES.values()}
    best = max(matches, key=lambda name: matches[name])
    if matches[best]:
        family = FAMILIES[best]
        if family.size_conditioning and f"{UNET_PREFIX}label_emb.0.0.weight" not in state_dict:
            raise ModelLoadError(
                f"checkpoint has {family.label}'s text encoders but its UNet lacks label_emb (the size and "
                f"pooled-text embedding); found {describe_keys(state_dict)}"
            )
        return family
    width = _context_width(state_dict)
    for family in FAMILIES.values():
        if width is not None and family.context_width == width:
            return family
    known = ", ".join(f"{f.context_width} {f.label}" for f in FAMILIES.values() if f.context_width)
    raise ModelLoadError(
        "unknown checkpoint layout: no text encoder where a known family keeps it, "
        f"and a cross-attention width of {width} matches no known family ({known}); "
        f"found {describe_keys(state_dict)}"
    )


def _sidecar_parameterization(path: Path) -> PredictionType | None:
    """Read ``model.params.parameterization`` from ``<stem>.yaml`` beside ``path``, if that file exists."""
    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ModelLoadError(f"{sidecar}: not valid YAML ({error}); fix or remove it") from error
    params = config.get("model", {}).get("params", {}) if isinstance(config, dict) else {}
    return "v_prediction" if params.get("parameterization") == "v" else "epsilon"


def prediction_from_metadata(metadata: Mapping[str, str]) -> PredictionType | None:
    """The prediction type a safetensors header's ``__metadata__`` states (``modelspec.prediction_type``), if any."""
    value = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    return {"v": "v_prediction", "v_prediction": "v_prediction", "epsilon": "epsilon", "eps": "epsilon"}.get(value)


def detect_prediction_type(
    family: Family, state_dict: Mapping[str, torch.Tensor], path: Path | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Detection:
    """Decide the prediction type by the rule in this module's docstring."""
    if "v_pred" in state_dict:
        return Detection(family, "v_prediction", "the file has a v_pred key", explicit=True)
    stated = prediction_from_metadata(metadata or {})
    if stated is not None:
        return Detection(family, stated, "the file's modelspec.prediction_type says so", explicit=True)
    if path is not None:
        from_yaml = _sidecar_parameterization(Path(path))
        if from_yaml is not None:
            return Detection(family, from_yaml, f"{Path(path).with_suffix('.yaml').name} says so", explicit=True)
    name = Path(path).name.lower() if path is not None else ""
    for pattern, prediction in family.prediction_by_name:
        if name and re.search(pattern, name):
            return Detection(family, prediction, f"{family.label} file named as a {prediction} model")
    default = family.prediction_types[0]
    return Detection(family, default, f"{family.label} models default to {default}")


def detect_checkpoint(state_dict: Mapping[str, torch.Tensor], path: Path | None = None,
                      metadata: Mapping[str, str] | None = None) -> Detection:
    """Detect family and prediction type of an original-layout state dict (``path`` and the safetensors
    ``metadata`` help the latter)."""
    return detect_prediction_type(detect_family(state_dict), state_dict, path, metadata)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{path} is missing; a diffusers folder needs it") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path}: not valid JSON ({error})") from error


def detect_folder(folder: Path) -> Detection:
    """Detect family and prediction type of a diffusers folder from its ``model_index.json`` and configs.

    The pipeline class names the candidate families. Several families share one pipeline class
    (``StableDiffusionPipeline`` is SD 1.x and 2.x): the denoiser's cross-attention width decides, and
    for custom (tiny) widths whether its transformers use linear projections (``linear_projection``:
    SD 2.x's do, SD 1.x's don't). The prediction type is the scheduler config's.
    """
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    pipeline = index.get("_class_name")
    candidates = [family for family in FAMILIES.values() if pipeline in family.pipelines]
    if not candidates:
        known = sorted({name for family in FAMILIES.values() for name in family.pipelines})
        raise ModelLoadError(
            f"{folder / 'model_index.json'}: pipeline {pipeline!r} is not supported; expected one of {', '.join(known)}"
        )
    family = candidates[0]
    if len(candidates) > 1:
        slot = candidates[0].denoiser_slot
        denoiser = _read_json(folder / slot / "config.json")
        width = denoiser.get("cross_attention_dim")
        by_width = [f for f in candidates if f.context_width == width]
        if by_width:
            family = by_width[0]
        else:
            linear = bool(denoiser.get("use_linear_projection"))
            family = next((f for f in candidates if f.linear_projection == linear), candidates[0])
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    prediction = scheduler.get("prediction_type", family.prediction_types[0])
    if prediction not in family.prediction_types:
        raise ModelLoadError(
            f"{scheduler_path}: prediction_type {prediction!r} is not one of {family.label}'s: "
            f"{', '.join(family.prediction_types)}"
        )
    return Detection(family, prediction, "the folder's scheduler config says so", explicit=True)
