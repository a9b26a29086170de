"""Tell which model family a checkpoint belongs to, and whether it predicts noise or velocity.

Families are told apart by where the text encoders live, which is what the original training code
(CompVis LDM, Stability's SGM) wrote, so block counts and widths do not matter and tiny test models
are recognised like the real ones:

* ``sd1``:  ``cond_stage_model.transformer.*`` (transformers CLIP-L layout)
* ``sd2``:  ``cond_stage_model.model.*`` (OpenCLIP ViT-H layout)
* ``sdxl``: ``conditioner.embedders.1.model.*`` (OpenCLIP bigG) with ``label_emb`` in the UNet

Files without a text encoder fall back on the UNet's cross-attention width (768, 1024, 2048).

The prediction type cannot be read from the weights; the rule, first match wins:

1. a ``v_pred`` key in the state dict (the marker ComfyUI and several v-prediction fine-tunes write)
   means ``v_prediction``;
2. a sidecar ``<checkpoint stem>.yaml`` (the A1111 convention) decides through
   ``model.params.parameterization`` (``"v"`` means ``v_prediction``, absent means ``epsilon``);
3. for SD 2.x, a file name that mentions ``512`` or ``base`` but not ``768`` is the 512 px
   epsilon model (``v2-1_512-ema-pruned``, ``sd2-base``); any other SD 2.x file is taken to be the
   768 px v-prediction model, the flagship of both 2.0 and 2.1;
4. SD 1.x and SDXL base are ``epsilon``.

Callers can always override it (``load_checkpoint(..., prediction_type=...)``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from .errors import ModelLoadError

Family = Literal["sd1", "sd2", "sdxl"]
PredictionType = Literal["epsilon", "v_prediction"]
FAMILIES: tuple[Family, ...] = ("sd1", "sd2", "sdxl")
PREDICTION_TYPES: tuple[PredictionType, ...] = ("epsilon", "v_prediction")

UNET_PREFIX = "model.diffusion_model."
# Where each family's text encoders sit in an original-layout file.
TEXT_ENCODER_PREFIXES: dict[Family, tuple[str, ...]] = {
    "sd1": ("cond_stage_model.transformer.",),
    "sd2": ("cond_stage_model.model.",),
    "sdxl": ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."),
}
_SDXL_REFINER_PREFIX = "conditioner.embedders.0.model."
_CONTEXT_WIDTH_FAMILY: dict[int, Family] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


@dataclass(frozen=True)
class Detection:
    """What a checkpoint is: its family, its prediction type, and why that prediction type.

    ``explicit`` is true when the file itself (a ``v_pred`` key, a sidecar YAML) said so, rather
    than a default or a name-based guess.
    """

    family: Family
    prediction_type: PredictionType
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


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Family:
    """Return the family of an original-layout (LDM/SGM) state dict, or raise ``ModelLoadError``."""
    if not _has_prefix(state_dict, UNET_PREFIX):
        raise ModelLoadError(
            f"not a full Stable Diffusion checkpoint: no UNet weights ({UNET_PREFIX}*); found "
            f"{describe_keys(state_dict)}. LoRAs, VAEs and embeddings go in their own model folders."
        )
    if _has_prefix(state_dict, _SDXL_REFINER_PREFIX):
        raise ModelLoadError("SDXL refiner checkpoints are not supported; use an SDXL base checkpoint")
    if _has_prefix(state_dict, TEXT_ENCODER_PREFIXES["sdxl"][1]):
        if f"{UNET_PREFIX}label_emb.0.0.weight" not in state_dict:
            raise ModelLoadError(
                "checkpoint has SDXL's second text encoder but its UNet lacks label_emb (the size and "
                f"pooled-text embedding); found {describe_keys(state_dict)}"
            )
        return "sdxl"
    if _has_prefix(state_dict, TEXT_ENCODER_PREFIXES["sd2"][0]):
        return "sd2"
    if _has_prefix(state_dict, TEXT_ENCODER_PREFIXES["sd1"][0]):
        return "sd1"
    width = _context_width(state_dict)
    if width in _CONTEXT_WIDTH_FAMILY:
        return _CONTEXT_WIDTH_FAMILY[width]
    raise ModelLoadError(
        "unknown checkpoint layout: no text encoder under cond_stage_model.* or conditioner.embedders.*, "
        f"and a cross-attention width of {width} matches no known family (768 SD1, 1024 SD2, 2048 SDXL); "
        f"found {describe_keys(state_dict)}"
    )


def _sidecar_parameterization(path: Path) -> PredictionType | None:
    """Read ``model.params.parameterization`` from ``<stem>.yaml`` beside ``path``, if that file exists."""
    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    try:
        config = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ModelLoadError(f"{sidecar}: not valid YAML ({error}); fix or remove it") from error
    params = config.get("model", {}).get("params", {}) if isinstance(config, dict) else {}
    return "v_prediction" if params.get("parameterization") == "v" else "epsilon"


def detect_prediction_type(
    family: Family, state_dict: Mapping[str, torch.Tensor], path: Path | None = None
) -> Detection:
    """Decide the prediction type by the rule in this module's docstring."""
    if "v_pred" in state_dict:
        return Detection(family, "v_prediction", "the file has a v_pred key", explicit=True)
    if path is not None:
        from_yaml = _sidecar_parameterization(Path(path))
        if from_yaml is not None:
            return Detection(family, from_yaml, f"{Path(path).with_suffix('.yaml').name} says so", explicit=True)
    if family != "sd2":
        return Detection(family, "epsilon", f"{family} models predict noise")
    name = Path(path).name.lower() if path is not None else ""
    if re.search(r"512|base", name) and "768" not in name:
        return Detection(family, "epsilon", "SD 2.x file named as the 512 px base model")
    return Detection(family, "v_prediction", "SD 2.x defaults to the 768 px v-prediction model")


def detect_checkpoint(state_dict: Mapping[str, torch.Tensor], path: Path | None = None) -> Detection:
    """Detect family and prediction type of an original-layout state dict (``path`` helps the latter)."""
    return detect_prediction_type(detect_family(state_dict), state_dict, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{path} is missing; a diffusers folder needs it") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path}: not valid JSON ({error})") from error


def detect_folder(folder: Path) -> Detection:
    """Detect family and prediction type of a diffusers folder from its ``model_index.json`` and configs.

    ``StableDiffusionXLPipeline`` is ``sdxl``. For ``StableDiffusionPipeline`` a cross-attention width of
    768 means ``sd1`` and 1024 ``sd2``; other (custom, tiny) widths count as ``sd2`` when the UNet uses
    linear projections in its transformers, as SD 2.x does, and ``sd1`` otherwise. The prediction type is
    the scheduler config's.
    """
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    pipeline = index.get("_class_name")
    unet = _read_json(folder / "unet" / "config.json")
    if pipeline == "StableDiffusionXLPipeline":
        family: Family = "sdxl"
    elif pipeline == "StableDiffusionPipeline":
        width = unet.get("cross_attention_dim")
        if width in (768, 1024):
            family = _CONTEXT_WIDTH_FAMILY[width]
        else:
            family = "sd2" if unet.get("use_linear_projection") else "sd1"
    else:
        raise ModelLoadError(
            f"{folder / 'model_index.json'}: pipeline {pipeline!r} is not supported; expected "
            "StableDiffusionPipeline or StableDiffusionXLPipeline"
        )
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    prediction = scheduler.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ModelLoadError(f"{scheduler_path}: prediction_type {prediction!r} is not one of {PREDICTION_TYPES}")
    return Detection(family, prediction, "the folder's scheduler config says so", explicit=True)
