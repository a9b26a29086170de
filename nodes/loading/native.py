"""Load an SD 1.x-family checkpoint into gouache's native modules (``gouache.nodes.native``).

A model whose settings file says ``"modules": "native"`` (the embedded gouache-tiny ships one) loads
here instead of through diffusers and transformers, which this path never imports. The configs are the
same diffusers configs (the caller's ``config_dir``, else the family's shipped folder with the sizes
read from the weights); the weights are the same tensors, under the same keys, so a model computes the
same numbers either way (``tests/nodes/test_native_load.py``).

Single files are read in the original (LDM) layout: each part's key map is the inverse of what
``convert.py`` writes. A weight of a part that the map does not place, or a weight the file lacks, is an
error naming it. Keys outside the three parts (LDM's training buffers such as ``alphas_cumprod`` and
``model_ema.*``) hold no weights of a part and are left out, as diffusers' conversion leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gouache.nodes.families import UNET_PREFIX, VAE_PREFIX, Family

from .detect import detect_checkpoint, detect_folder
from .errors import ModelLoadError
from .files import read_metadata, read_state_dict
from .loader import VAE_SLOT, LoadedCheckpoint, LoadedEncoder, _decide_prediction, _read_scheduler_config, \
    _sizes_from_weights
from .shipped import shipped_config_dir

__all__ = ["load_native"]

_POSITION_IDS = "embeddings.position_ids"
"""A buffer of 0..76 some CLIP checkpoints store; the text model counts positions itself."""


def load_native(path: Path, config_dir: Path | None, dtype: torch.dtype) -> LoadedCheckpoint:
    """Load the diffusers folder or single file at ``path`` into native modules, weights cast to ``dtype``."""
    if path.is_dir():
        return _load_folder(path, dtype)
    return _load_single_file(path, config_dir, dtype)


def _check_family(family: Family, path: Path) -> None:
    if family.name != "sd1":
        raise ModelLoadError(
            f"{path}: gouache's native modules implement SD 1.x-family models and this is a {family.label} "
            "checkpoint; set \"modules\": \"diffusers\" in its settings file (or remove the key)")


def _read_config(folder: Path, slot: str, name: str = "config.json") -> dict[str, Any]:
    config_path = folder / slot / name
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{config_path}: cannot read the {slot} config ({error})") from None


def _build(cls: type[nn.Module], config: dict[str, Any], where: Path, config_path: Path) -> nn.Module:
    """``cls(config)`` with its parameters on the meta device (no memory, no initialisation)."""
    from gouache.nodes.native import UnsupportedConfig

    try:
        with torch.device("meta"):
            return cls(config)
    except UnsupportedConfig as error:
        raise ModelLoadError(f"{where}: {error}") from None
    except (ValueError, TypeError, RuntimeError) as error:  # sizes no layer can take (groups, heads)
        raise ModelLoadError(
            f"{where}: {config_path} with the sizes read from the weights describes no model that can be built "
            f"({error}); a model of another architecture loads through a config folder (config_dir=) that "
            "describes it") from None


def _assign(module: nn.Module, weights: dict[str, torch.Tensor], where: str, dtype: torch.dtype) -> nn.Module:
    """Put ``weights`` (the module's own keys) into the meta-built ``module``; every weight must be there."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ModelLoadError(f"{where}: {len(missing)} weights are missing (first: {', '.join(missing[:5])}); the "
                             "file is incomplete or its config describes another model")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise ModelLoadError(f"{where}: {len(unexpected)} weights have no place in the model (first: "
                             f"{', '.join(unexpected[:5])}); its config describes another model")
    fitted = {}
    for key, target in expected.items():
        tensor = weights[key]
        if tensor.shape != target.shape:
            if tensor.numel() != target.numel():  # 1x1 convolutions stand for linear layers in LDM files
                raise ModelLoadError(f"{where}: weight {key} has shape {tuple(tensor.shape)}, the model's config "
                                     f"makes it {tuple(target.shape)}")
            tensor = tensor.reshape(target.shape)
        fitted[key] = tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor
    module.load_state_dict(fitted, strict=True, assign=True)
    left = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if left:
        raise ModelLoadError(f"{where}: {', '.join(left[:5])} were not loaded")
    return module.eval()


def _modules(folder: Path, overrides: dict[str, dict[str, Any]], family: Family,
             where: Path) -> tuple[nn.Module, nn.Module, nn.Module]:
    from gouache.nodes.native.clip import NativeCLIPTextModel
    from gouache.nodes.native.unet import NativeUNet
    from gouache.nodes.native.vae import NativeAutoencoderKL

    spec = family.encoders[0]
    parts = ((family.denoiser_slot, NativeUNet), (VAE_SLOT, NativeAutoencoderKL), (spec.slot, NativeCLIPTextModel))
    built = []
    for slot, cls in parts:
        config = {**_read_config(folder, slot), **overrides.get(slot, {})}
        built.append(_build(cls, config, where, folder / slot / "config.json"))
    unet, vae, text_encoder = built
    return unet, vae, text_encoder


def _tokenizer(folder: Path, family: Family) -> Any:
    from gouache.nodes.native.clip import NativeCLIPTokenizer

    tokenizer_folder = folder / family.encoders[0].tokenizer
    try:
        return NativeCLIPTokenizer.from_folder(tokenizer_folder)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{tokenizer_folder}: cannot read the tokenizer ({error})") from None


def _load_single_file(path: Path, config_dir: Path | None, dtype: torch.dtype) -> LoadedCheckpoint:
    from .convert import unet_original_names, vae_original_names

    state_dict = read_state_dict(path, cast_to=dtype)
    detection = detect_checkpoint(state_dict, path, read_metadata(path))
    family = detection.family
    _check_family(family, path)
    if config_dir is not None and detect_folder(config_dir).family.name != family.name:
        raise ModelLoadError(f"{path} is a {family.label} checkpoint but config_dir {config_dir} describes another "
                             "family; pass the config folder that matches the file, or none to use the shipped one")
    folder = config_dir if config_dir is not None else shipped_config_dir(family)
    scheduler_config = _read_scheduler_config(folder)
    prediction = _decide_prediction(detection, config_dir, scheduler_config)
    scheduler_config["prediction_type"] = prediction
    overrides: dict[str, dict[str, Any]] = {}
    if config_dir is None:  # as the diffusers path: sizes from the weights, then the prediction's variant
        overrides = _sizes_from_weights(state_dict, family, folder)
        for variant, slot, sizes in family.sizes_by_prediction:
            if variant == prediction:
                overrides.setdefault(slot, {}).update(dict(sizes))
    unet, vae, text_encoder = _modules(folder, overrides, family, path)
    spec = family.encoders[0]
    text_prefix = spec.original_prefix + "text_model."
    parts: list[tuple[str, nn.Module, str, dict[str, str]]] = [
        (family.denoiser_slot, unet, UNET_PREFIX, unet_original_names(unet)),
        (VAE_SLOT, vae, VAE_PREFIX, vae_original_names(vae)),
        (spec.slot, text_encoder, text_prefix, {key: key for key in text_encoder.state_dict()}),
    ]
    for slot, module, prefix, names in parts:
        own = {key[len(prefix):]: key for key in state_dict if key.startswith(prefix)}
        if module is text_encoder:
            own.pop(_POSITION_IDS, None)
        if not own:
            raise ModelLoadError(f"{path}: no {slot} weights ({prefix}*); the checkpoint is incomplete")
        unplaced = sorted(set(own) - set(names))
        if unplaced:
            raise ModelLoadError(f"{path}: {len(unplaced)} {slot} weights have no place in the model its config "
                                 f"describes (first: {', '.join(prefix + k for k in unplaced[:5])})")
        weights = {names[original]: state_dict[key] for original, key in own.items()}
        _assign(module, weights, f"{path} ({slot}, config {folder / slot / 'config.json'})", dtype)
    encoder = LoadedEncoder(spec, text_encoder, _tokenizer(folder, family))
    return LoadedCheckpoint(family, unet, vae, (encoder,), scheduler_config, prediction, path)


def _folder_weights(folder: Path, slot: str, names: tuple[str, ...], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    for name in names:
        if (folder / slot / name).is_file():
            return read_state_dict(folder / slot / name, cast_to=dtype)
    raise ModelLoadError(f"{folder / slot}: no {' or '.join(names)}; gouache's native modules read safetensors "
                         "weights (set \"modules\": \"diffusers\" for other formats)")


def _load_folder(folder: Path, dtype: torch.dtype) -> LoadedCheckpoint:
    detection = detect_folder(folder)
    family = detection.family
    _check_family(family, folder)
    unet, vae, text_encoder = _modules(folder, {}, family, folder)
    spec = family.encoders[0]
    model_file = ("diffusion_pytorch_model.safetensors",)
    for module, slot, names in ((unet, family.denoiser_slot, model_file), (vae, VAE_SLOT, model_file),
                                (text_encoder, spec.slot, ("model.safetensors",))):
        weights = _folder_weights(folder, slot, names, dtype)
        if module is text_encoder:  # transformers 4 saved the text model under ``text_model.``
            weights = {key.removeprefix("text_model."): value for key, value in weights.items()}
            weights.pop(_POSITION_IDS, None)
        _assign(module, weights, f"{folder / slot}", dtype)
    encoder = LoadedEncoder(spec, text_encoder, _tokenizer(folder, family))
    return LoadedCheckpoint(family, unet, vae, (encoder,), _read_scheduler_config(folder),
                            detection.prediction_type, folder)
