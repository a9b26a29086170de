"""Load a checkpoint (diffusers folder or single file) into diffusers/transformers modules, offline.

Single files load component by component through diffusers' own single-file conversion, with a local
config folder: the shipped one for the detected family (``nodes/configs/<family>``) unless the caller
passes ``config_dir`` (the embedded model passes its own diffusers folder). Nothing is fetched from a
model hub: every diffusers and transformers call gets ``local_files_only=True``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gouache.nodes.families import Family, LatentFormat, TextEncoder
from gouache.nodes.interrupt import check_running_node
from gouache.nodes.model_settings import ModelSettingsError, module_choice, preview_format, read_settings

from .detect import PREDICTION_TYPES, Detection, detect_checkpoint, detect_folder
from .errors import ModelLoadError
from .files import fingerprint, read_metadata, read_state_dict
from .shipped import load_tokenizer, shipped_config_dir
from .sizes import text_encoder_sizes, unet_sizes, vae_sizes

__all__ = ["LoadedCheckpoint", "LoadedEncoder", "fingerprint", "load_checkpoint"]


def _not_an_empty_fp32_warning(record: logging.LogRecord) -> bool:
    """diffusers 0.42's ``ModelMixin.to`` warns "There are modules in UNet2DConditionModel that should be kept in
    float32: []" on every dtype cast, the empty list included (``from_single_file`` casts each part, the model
    manager casts to the device's dtypes); that variant says nothing. A warning that names modules still shows."""
    return "should be kept in float32: []" not in record.getMessage()


# On the logger itself, before diffusers makes it: whatever casts a diffusers model afterwards is covered.
logging.getLogger("diffusers.models.modeling_utils").addFilter(_not_an_empty_fp32_warning)

VAE_SLOT = "vae"


@dataclass(frozen=True)
class LoadedEncoder:
    """One text encoder of a checkpoint, its tokenizer, and the description that says how it is used."""

    spec: TextEncoder
    model: nn.Module
    tokenizer: Any


@dataclass
class LoadedCheckpoint:
    """The parts of a checkpoint, ready to run (``eval()`` mode, on ``device``).

    A checkpoint loaded from a split file holds only its parts: ``denoiser`` or ``vae`` may be
    ``None`` and ``encoders`` empty.
    """

    family: Family
    denoiser: nn.Module | None
    vae: nn.Module | None
    encoders: tuple[LoadedEncoder, ...]
    scheduler_config: dict[str, Any] = field(repr=False)
    prediction_type: str
    path: Path
    preview: LatentFormat | None = field(default=None, repr=False)
    """The latent-to-RGB factors the checkpoint's settings file gives (``gouache.nodes.model_settings``)."""

    @property
    def latent_preview(self) -> LatentFormat:
        """The factors live previews use: the checkpoint's own, else its family's."""
        return self.preview or self.family.latent

    def modules(self) -> list[tuple[str, nn.Module]]:
        """Every loaded module with its diffusers slot (``unet``, ``vae``, ``text_encoder``, ...)."""
        parts = [(self.family.denoiser_slot, self.denoiser), (VAE_SLOT, self.vae)]
        parts += [(encoder.spec.slot, encoder.model) for encoder in self.encoders]
        return [(slot, module) for slot, module in parts if module is not None]

    def components(self) -> dict[str, Any]:
        """The modules and tokenizers by diffusers slot, as a diffusers pipeline's constructor takes them."""
        out: dict[str, Any] = dict(self.modules())
        out.update({encoder.spec.tokenizer: encoder.tokenizer for encoder in self.encoders})
        return out


def load_checkpoint(
    path: Path | str,
    *,
    config_dir: Path | str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    prediction_type: str | None = None,
) -> LoadedCheckpoint:
    """Load a diffusers folder, a ``.safetensors`` file or a ``.ckpt`` file (read with ``weights_only``).

    ``config_dir`` is a diffusers folder whose configs (and tokenizers, scheduler) describe a single
    file; it defaults to the shipped folder of the detected family, and is ignored for folders.
    ``prediction_type`` overrides what ``detect.detect_prediction_type`` decides. Raises
    ``ModelLoadError`` with the file and the problem when anything does not fit.
    """
    path = Path(path)
    config_dir = Path(config_dir) if config_dir is not None else None
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ModelLoadError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")
    if not path.exists():
        raise ModelLoadError(f"{path}: no such checkpoint file or folder")
    try:
        settings = read_settings(path, config_dir)
        native = module_choice(settings) == "native"
    except ModelSettingsError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    if native:  # gouache's own modules (``gouache.nodes.native``): no diffusers or transformers import
        from .native import load_native

        loaded = load_native(path, config_dir, dtype)
    elif path.is_dir():
        loaded = _load_folder(path, dtype)
    elif path.is_file():
        loaded = _load_single_file(path, config_dir, dtype)
    else:
        raise ModelLoadError(f"{path}: neither a checkpoint file nor a diffusers folder")
    if prediction_type is not None:
        loaded.prediction_type = prediction_type
        loaded.scheduler_config["prediction_type"] = prediction_type
    try:
        loaded.preview = preview_format(loaded.family, settings)
    except ModelSettingsError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    for _, module in loaded.modules():
        module.to(device).eval()
    return loaded


def _read_scheduler_config(folder: Path) -> dict[str, Any]:
    path = folder / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read the scheduler config ({error})") from error


def _load_folder(folder: Path, dtype: torch.dtype) -> LoadedCheckpoint:
    import diffusers
    import transformers
    from diffusers import AutoencoderKL

    detection = detect_folder(folder)
    family = detection.family
    if family.sampling == "flow":  # SD 3.x, Flux.1: weights stay in their stored dtype
        from .flow_models import load_folder

        return load_folder(folder, family)

    def part(name: str, load: Callable[[], nn.Module]) -> nn.Module:
        check_running_node()  # each part is a file of its own: an interrupted run stops between them
        try:
            return _checked(load(), folder / name)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"{folder / name}: cannot load ({error})") from error

    common = {"local_files_only": True}
    denoiser_class = getattr(diffusers, family.denoiser_class)
    denoiser = part(family.denoiser_slot, lambda: denoiser_class.from_pretrained(
        folder, subfolder=family.denoiser_slot, torch_dtype=dtype, **common))
    vae = part(VAE_SLOT, lambda: AutoencoderKL.from_pretrained(folder, subfolder=VAE_SLOT, torch_dtype=dtype, **common))
    encoders = []
    for spec in family.encoders:
        encoder_class = getattr(transformers, spec.model_class)
        model = part(spec.slot, lambda: encoder_class.from_pretrained(folder, subfolder=spec.slot, dtype=dtype, **common))
        encoders.append(LoadedEncoder(spec, model, load_tokenizer(folder / spec.tokenizer, spec)))
    return LoadedCheckpoint(family, denoiser, vae, tuple(encoders), _read_scheduler_config(folder),
                            detection.prediction_type, folder)


def _decide_prediction(detection: Detection, config_dir: Path | None, scheduler_config: Mapping[str, Any]) -> str:
    """The file's own say wins; then the caller's config folder; then the family rule."""
    if detection.explicit or config_dir is None:
        return detection.prediction_type
    return scheduler_config.get("prediction_type", "epsilon")


def _key_names(path: Path) -> list[str] | None:
    """A safetensors file's tensor names from its header, without reading tensors; ``None`` otherwise."""
    from gouache.nodes.folders import SAFETENSORS_SUFFIXES, safetensors_header

    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return None
    try:
        return [key for key in safetensors_header(path) if key != "__metadata__"]
    except (OSError, ValueError):
        return None  # read_state_dict names what is wrong with the file


def _load_single_file(path: Path, config_dir: Path | None, dtype: torch.dtype) -> LoadedCheckpoint:
    import diffusers
    from diffusers import AutoencoderKL

    from .flow_models import detect_flow_family, load_single_file

    keys = _key_names(path)
    flow = detect_flow_family(keys) if keys is not None else None
    if flow is not None:  # SD 3.x, Flux.1: configs come from the tensors' shapes, weights keep their dtype
        return load_single_file(path, flow, read_state_dict(path))
    # Tensors arrive already in ``dtype``, one at a time when the file holds another: an fp16 file loaded
    # for fp32 never has its fp16 and fp32 copies in memory at once.
    state_dict = read_state_dict(path, cast_to=dtype)
    flow = detect_flow_family(state_dict) if keys is None else None
    if flow is not None:  # a pickled SD 3.x / Flux.1 file, found only once read
        return load_single_file(path, flow, read_state_dict(path))
    detection = detect_checkpoint(state_dict, path, read_metadata(path))
    family = detection.family
    if config_dir is not None:
        folder_family = detect_folder(config_dir).family
        if folder_family.name != family.name:
            raise ModelLoadError(
                f"{path} is a {family.label} checkpoint but config_dir {config_dir} describes a {folder_family.label} "
                "model; pass the config folder that matches the file, or none to use the shipped one"
            )
    folder = config_dir if config_dir is not None else shipped_config_dir(family)
    scheduler_config = _read_scheduler_config(folder)
    prediction = _decide_prediction(detection, config_dir, scheduler_config)
    scheduler_config["prediction_type"] = prediction
    # Without a config folder of the caller's, the sizes come from the weights (custom sizes, 9-channel
    # inpainting UNets) and the rest from the family's shipped config; then the variants of a family that
    # differ from it only in sizes the weights do not show (SD 2.x's 512 px base).
    overrides: dict[str, dict[str, Any]] = {}
    if config_dir is None:
        overrides = _sizes_from_weights(state_dict, family, folder)
        for variant, slot, sizes in family.sizes_by_prediction:
            if variant == prediction:
                overrides.setdefault(slot, {}).update(dict(sizes))
    single_file_classes = {family.denoiser_slot: getattr(diffusers, family.denoiser_class), VAE_SLOT: AutoencoderKL}

    def part(name: str, load: Callable[[], nn.Module]) -> nn.Module:
        try:
            return _cast(_checked(load(), path, name, folder), dtype)
        except ModelLoadError:
            raise
        except NotImplementedError as error:
            # from_single_file moves the model to its device at the end, which fails on the meta
            # tensors that weights absent from the file leave behind; say which ones.
            if "meta tensor" not in str(error) or name not in single_file_classes:
                raise
            missing = _missing_weights(single_file_classes[name], state_dict, folder, name)
            raise _missing_error(path, name, folder, missing) from error
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            read = "" if config_dir is not None else (
                " with the sizes read from the weights; what they cannot show (normalisation groups, attention "
                "heads) follows the family's convention, which this model does not")
            raise ModelLoadError(
                f"{path}: the {name} weights do not fit {folder / name / 'config.json'}{read} ({error}). "
                "A model of another architecture loads through load_checkpoint(config_dir=) a diffusers folder "
                "that describes it."
            ) from error

    # Each weight is cast to ``dtype`` as it lands: without torch_dtype diffusers makes every weight fp32
    # first, a full-precision copy of a half-precision file beside the file's own tensors. Weights the file
    # lacks stay on the meta device for _checked to name.
    common = {"config": str(folder), "local_files_only": True, "torch_dtype": dtype}

    def single(slot: str) -> nn.Module:
        return single_file_classes[slot].from_single_file(state_dict, subfolder=slot, **overrides.get(slot, {}), **common)

    denoiser = part(family.denoiser_slot, lambda: single(family.denoiser_slot))
    vae = part(VAE_SLOT, lambda: single(VAE_SLOT))

    def text_encoder(spec: TextEncoder) -> nn.Module:
        own = {k: v for k, v in state_dict.items() if k.startswith(spec.original_prefix)}
        if not own:
            raise ModelLoadError(f"{path}: no {spec.slot} weights ({spec.original_prefix}*); the checkpoint is incomplete")
        return _clip_from_original(spec, own, folder, overrides.get(spec.slot, {}))

    encoders = tuple(
        LoadedEncoder(spec, part(spec.slot, lambda: text_encoder(spec)), load_tokenizer(folder / spec.tokenizer, spec))
        for spec in family.encoders
    )
    return LoadedCheckpoint(family, denoiser, vae, encoders, scheduler_config, prediction, path)


def _sizes_from_weights(state_dict: Mapping[str, torch.Tensor], family: Family, folder: Path) -> dict[str, dict[str, Any]]:
    """Config values per slot read off the tensors' shapes (``sizes.py``), for a file without a config folder."""
    shipped = json.loads((folder / family.denoiser_slot / "config.json").read_text(encoding="utf-8"))
    out = {spec.slot: text_encoder_sizes(state_dict, spec) for spec in family.encoders}
    pooled = next((out[spec.slot].get("projection_dim") for spec in family.encoders if spec.pooled), None)
    out[family.denoiser_slot] = unet_sizes(state_dict, family, shipped, pooled)
    out[VAE_SLOT] = vae_sizes(state_dict)
    return {slot: sizes for slot, sizes in out.items() if sizes}


def _clip_from_original(spec: TextEncoder, own: Mapping[str, torch.Tensor], folder: Path,
                        sizes: Mapping[str, Any]) -> nn.Module:
    """A text encoder from its original-layout tensors: ``folder``'s config with ``sizes`` over it.

    diffusers' own key conversions, as ``create_diffusers_clip_model_from_ldm`` uses them; that function
    takes no sizes and, with both SDXL encoders present, picks by comparing widths, which tiny or custom
    encoders of equal width would defeat, so each encoder gets only its own tensors here.
    """
    import transformers
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    cls = getattr(transformers, spec.model_class)
    config = cls.config_class.from_pretrained(folder, subfolder=spec.slot, local_files_only=True)
    for key, value in sizes.items():
        setattr(config, key, value)
    with init_empty_weights():
        model = cls(config)
    if spec.layout == "open_clip":
        converted = convert_open_clip_checkpoint(model, own, prefix=spec.original_prefix)
    else:
        converted = convert_ldm_clip_checkpoint(own, spec.original_prefix)
    if not hasattr(model, "text_model"):  # transformers 5's CLIPTextModel is the text model itself
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    model.load_state_dict(converted, strict=False, assign=True)
    return model.eval()


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
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
    config = cls.load_config(folder, subfolder=subfolder, local_files_only=True)
    with init_empty_weights():
        expected = cls.from_config(config).state_dict().keys()
    return sorted(set(expected) - set(convert(config=config, checkpoint=dict(state_dict))))
