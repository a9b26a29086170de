"""Load a checkpoint (diffusers folder or single file) into diffusers/transformers modules, offline.

Single files load component by component through diffusers' own single-file conversion, with a local
config folder: the shipped one for the detected family (``nodes/configs/<family>``) unless the caller
passes ``config_dir`` (the embedded model passes its own diffusers folder). Nothing is fetched from a
model hub: every diffusers and transformers call gets ``local_files_only=True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from accelerate import init_empty_weights
from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from torch import nn
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .errors import ModelLoadError
from .families import (
    PREDICTION_TYPES,
    TEXT_ENCODER_PREFIXES,
    Detection,
    Family,
    PredictionType,
    detect_checkpoint,
    detect_folder,
)
from .files import fingerprint, read_state_dict
from .shipped import load_clip_tokenizer, shipped_config_dir

__all__ = ["LoadedCheckpoint", "fingerprint", "load_checkpoint"]

_SINGLE_FILE_CLASSES: dict[str, type[nn.Module]] = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}
# The SD 2.x 512 px base model differs from the shipped 768-v config only in these sizes.
_SD2_BASE_SIZES = {"unet": {"sample_size": 64}, "vae": {"sample_size": 512}}


@dataclass
class LoadedCheckpoint:
    """The parts of a Stable Diffusion checkpoint, ready to run (``eval()`` mode, on ``device``)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    text_encoder_2: CLIPTextModelWithProjection | None
    tokenizer_2: CLIPTokenizer | None
    scheduler_config: dict[str, Any] = field(repr=False)
    family: Family
    prediction_type: PredictionType
    path: Path


def load_checkpoint(
    path: Path | str,
    *,
    config_dir: Path | str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    prediction_type: PredictionType | None = None,
) -> LoadedCheckpoint:
    """Load a diffusers folder, a ``.safetensors`` file or a ``.ckpt`` file (read with ``weights_only``).

    ``config_dir`` is a diffusers folder whose configs (and tokenizers, scheduler) describe a single
    file; it defaults to the shipped folder of the detected family, and is ignored for folders.
    ``prediction_type`` overrides what ``families.detect_prediction_type`` decides. Raises
    ``ModelLoadError`` with the file and the problem when anything does not fit.
    """
    path = Path(path)
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ModelLoadError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")
    if path.is_dir():
        loaded = _load_folder(path, dtype)
    elif path.is_file():
        loaded = _load_single_file(path, Path(config_dir) if config_dir is not None else None, dtype)
    else:
        raise ModelLoadError(f"{path}: no such checkpoint file or folder")
    if prediction_type is not None:
        loaded.prediction_type = prediction_type
        loaded.scheduler_config["prediction_type"] = prediction_type
    for module in _modules(loaded):
        module.to(device).eval()
    return loaded


def _modules(loaded: LoadedCheckpoint) -> list[nn.Module]:
    parts = [loaded.unet, loaded.vae, loaded.text_encoder, loaded.text_encoder_2]
    return [part for part in parts if part is not None]


def _read_scheduler_config(folder: Path) -> dict[str, Any]:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read the scheduler config ({error})") from error


def _load_folder(folder: Path, dtype: torch.dtype) -> LoadedCheckpoint:
    detection = detect_folder(folder)
    is_xl = detection.family == "sdxl"

    def part(name: str, load: Callable[[], nn.Module]) -> nn.Module:
        try:
            return _checked(load(), folder / name)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"{folder / name}: cannot load ({error})") from error

    common = {"local_files_only": True}
    unet = part("unet", lambda: UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **common))
    vae = part("vae", lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **common))
    text_encoder = part(
        "text_encoder", lambda: CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype, **common)
    )
    text_encoder_2 = None
    if is_xl:
        text_encoder_2 = part(
            "text_encoder_2",
            lambda: CLIPTextModelWithProjection.from_pretrained(
                folder, subfolder="text_encoder_2", dtype=dtype, **common
            ),
        )
    tokenizer, tokenizer_2 = _tokenizers(folder, detection.family)
    return LoadedCheckpoint(
        unet, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2,
        _read_scheduler_config(folder), detection.family, detection.prediction_type, folder,
    )  # fmt: skip


def _decide_prediction(detection: Detection, config_dir: Path | None, scheduler_config: Mapping[str, Any]) -> str:
    """The file's own say wins; then the caller's config folder; then the family rule."""
    if detection.explicit or config_dir is None:
        return detection.prediction_type
    return scheduler_config.get("prediction_type", "epsilon")


def _load_single_file(path: Path, config_dir: Path | None, dtype: torch.dtype) -> LoadedCheckpoint:
    state_dict = read_state_dict(path)
    detection = detect_checkpoint(state_dict, path)
    family = detection.family
    if config_dir is not None:
        folder_family = detect_folder(config_dir).family
        if folder_family != family:
            raise ModelLoadError(
                f"{path} is an {family} checkpoint but config_dir {config_dir} describes an {folder_family} model; "
                "pass the config folder that matches the file, or none to use the shipped one"
            )
    folder = config_dir if config_dir is not None else shipped_config_dir(family)
    scheduler_config = _read_scheduler_config(folder)
    prediction = _decide_prediction(detection, config_dir, scheduler_config)
    scheduler_config["prediction_type"] = prediction
    # The shipped SD 2.x folder is the 768 px model; the 512 px base differs only in sizes.
    overrides = _SD2_BASE_SIZES if (family == "sd2" and config_dir is None and prediction == "epsilon") else {}

    def part(name: str, load: Callable[[], nn.Module]) -> nn.Module:
        try:
            return _cast(_checked(load(), path, name, folder), dtype)
        except ModelLoadError:
            raise
        except NotImplementedError as error:
            # from_single_file moves the model to its device at the end, which fails on the meta
            # tensors that weights absent from the file leave behind; say which ones.
            if "meta tensor" not in str(error) or name not in _SINGLE_FILE_CLASSES:
                raise
            missing = _missing_weights(_SINGLE_FILE_CLASSES[name], state_dict, folder, name)
            raise _missing_error(path, name, folder, missing) from error
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelLoadError(
                f"{path}: the {name} weights do not fit {folder / name / 'config.json'} ({error}). "
                "If the model has a non-standard architecture, pass config_dir= a diffusers folder that describes it."
            ) from error

    # No torch_dtype here: _cast runs after _checked has looked for weights the file lacked (they stay
    # on the meta device, where a cast would fail with a message about meta tensors instead).
    common = {"config": str(folder), "local_files_only": True, "torch_dtype": None}
    unet = part(
        "unet",
        lambda: UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **overrides.get("unet", {}), **common),
    )
    vae = part(
        "vae", lambda: AutoencoderKL.from_single_file(state_dict, subfolder="vae", **overrides.get("vae", {}), **common)
    )
    prefixes = TEXT_ENCODER_PREFIXES[family]

    def text_encoder(cls: type[nn.Module], prefix: str, subfolder: str) -> nn.Module:
        # Hand diffusers only this encoder's tensors: with both SDXL encoders present it picks by
        # comparing widths, which tiny or custom encoders of equal width would defeat.
        own = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not own:
            raise ModelLoadError(f"{path}: no {subfolder} weights ({prefix}*); the checkpoint is incomplete")
        return create_diffusers_clip_model_from_ldm(
            cls, own, subfolder=subfolder, config=str(folder), torch_dtype=None, local_files_only=True
        )

    text_encoder_1 = part("text_encoder", lambda: text_encoder(CLIPTextModel, prefixes[0], "text_encoder"))
    text_encoder_2 = None
    if family == "sdxl":
        text_encoder_2 = part(
            "text_encoder_2", lambda: text_encoder(CLIPTextModelWithProjection, prefixes[1], "text_encoder_2")
        )
    tokenizer, tokenizer_2 = _tokenizers(folder, family)
    return LoadedCheckpoint(
        unet, vae, text_encoder_1, tokenizer, text_encoder_2, tokenizer_2, scheduler_config, family, prediction, path
    )


def _tokenizers(folder: Path, family: Family) -> tuple[CLIPTokenizer, CLIPTokenizer | None]:
    """Load the tokenizer(s) a ``family`` model in ``folder`` needs (the second only for SDXL)."""
    second = load_clip_tokenizer(folder / "tokenizer_2") if family == "sdxl" else None
    return load_clip_tokenizer(folder / "tokenizer"), second


def _cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating-point weights to ``dtype``.

    Calls ``nn.Module.to`` directly: diffusers' ``ModelMixin.to`` logs a warning about fp32 modules on
    every dtype cast, even when a model has none.
    """
    return nn.Module.to(module, dtype=dtype)


def _missing_error(source: Path, name: str, folder: Path | None, missing: list[str]) -> ModelLoadError:
    where = f" described by {folder / name / 'config.json'}" if folder is not None else ""
    return ModelLoadError(
        f"{source}: {len(missing)} {name} weights{where} are missing from the file "
        f"(first: {', '.join(missing[:5])}); the file is incomplete or the config describes another model"
    )


def _checked(module: nn.Module, source: Path, name: str = "model", folder: Path | None = None) -> nn.Module:
    """Raise if loading left parameters unset: diffusers leaves missing weights on the meta device."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    missing = [n for n, p in tensors if p.device.type == "meta"]
    if missing:
        raise _missing_error(source, name, folder, missing)
    return module


def _missing_weights(
    cls: type[nn.Module], state_dict: Mapping[str, torch.Tensor], folder: Path, subfolder: str
) -> list[str]:
    """List the weights of ``cls`` (as ``folder/subfolder`` configures it) that ``state_dict`` lacks."""
    convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
    config = cls.load_config(folder, subfolder=subfolder, local_files_only=True)
    with init_empty_weights():
        expected = cls.from_config(config).state_dict().keys()
    return sorted(set(expected) - set(convert(config=config, checkpoint=dict(state_dict))))
