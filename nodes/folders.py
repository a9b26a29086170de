"""The model folders the pack reads, what ``gouache models`` says about each file, and built-ins.

``describe`` must stay cheap: it reads safetensors headers (the JSON before the tensors) and
diffusers JSON configs, never the weights, and imports no torch.
"""

from __future__ import annotations

import json
import re
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from gouache.engine import ModelEntry, ModelFolder
from gouache.nodes.families import FAMILIES

TINY = "gouache-tiny"
TINY_LORA = "gouache-tiny-outline.safetensors"
TINY_UPSCALER = "gouache-tiny-4x.safetensors"
TINY_CONTROLNET = "gouache-tiny-controlnet-silhouette"
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
"""Every suffix a weights file may have: what the folders offer is what the loader reads."""
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
EXAMPLE_IMAGE = "example.png"


def weights_dir() -> Path:
    """Where the embedded model's files ship (``gouache/nodes/embedded/weights``)."""
    return Path(str(resources.files("gouache.nodes").joinpath("embedded", "weights")))


def example_image() -> Path:
    """The picture the shipped image-to-image workflow starts from (``gouache/workflows/example.png``)."""
    return Path(str(resources.files("gouache.workflows").joinpath(EXAMPLE_IMAGE)))


def shipped_images() -> list[ModelEntry]:
    """The pictures the shipped workflows start from (``gouache/workflows/*.png``: the example, the
    inpainting picture and its mask, ...), offered beside the user's own input images."""
    folder = example_image().parent
    return [ModelEntry(path.name, path, {"builtin": True}) for path in sorted(folder.glob("*.png"))]


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file: tensor names with dtype and shape, and metadata."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError("too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024**2:
            raise ValueError("safetensors header larger than 100 MB; the file is damaged")
        return json.loads(handle.read(length))


class _Shape:
    """Stands in for a tensor where family detection only needs a shape."""

    def __init__(self, shape: list[int]) -> None:
        self.shape = tuple(shape)


def _family_of_keys(header: dict[str, Any]) -> str | None:
    from gouache.nodes.loading.detect import detect_family

    tensors = {k: _Shape(v.get("shape", [])) for k, v in header.items() if k != "__metadata__"}
    try:
        return detect_family(tensors).name  # type: ignore[arg-type]
    except ValueError:
        return None


INPAINTING_CHANNELS = 9
"""A UNet that reads the noisy latent (4), the masked image's latent (4) and the mask (1): an inpainting model."""


def _kind(in_channels: int | None) -> str:
    return "inpainting" if in_channels == INPAINTING_CHANNELS else "checkpoint"


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """Format, family, kind (``checkpoint`` or ``inpainting``) and a stated prediction type of a checkpoint,
    from its header or folder configs."""
    if path.is_dir():
        from gouache.nodes.loading.detect import detect_folder

        detection = detect_folder(path)
        try:
            unet = json.loads((path / detection.family.denoiser_slot / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            unet = {}
        return {"format": "diffusers", "family": detection.family.name, "kind": _kind(unet.get("in_channels")),
                "prediction_type": detection.prediction_type}
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from gouache.nodes.families import UNET_PREFIX
        from gouache.nodes.loading.detect import prediction_from_metadata

        header = safetensors_header(path)
        first = header.get(f"{UNET_PREFIX}input_blocks.0.0.weight", {}).get("shape") or [None, None]
        info = {"format": "safetensors", "family": _family_of_keys(header), "kind": _kind(first[1])}
        stated = "v_prediction" if "v_pred" in header else prediction_from_metadata(header.get("__metadata__") or {})
        return {**info, "prediction_type": stated} if stated else info
    return {"format": path.suffix.lower().lstrip("."), "family": None}


def describe_listed_checkpoint(path: Path) -> dict[str, Any]:
    """What ``gouache models`` says of a file in the checkpoints folders: :func:`describe_checkpoint`
    and the settings that suit it (:func:`with_settings`)."""
    return with_settings(describe_checkpoint(path), path)


def with_settings(info: dict[str, Any], path: Path, config_dir: Path | None = None) -> dict[str, Any]:
    """``info`` with ``defaults``: the settings that suit the checkpoint, by the input names the editor
    sets (its settings file's, else its family's; ``gouache.nodes.model_settings``)."""
    from gouache.nodes.model_settings import ModelSettingsError, defaults, input_defaults, read_settings

    family = FAMILIES.get(info.get("family") or "")
    if family is None:
        return info
    try:
        return {**info, "defaults": input_defaults(defaults(family, read_settings(path, config_dir)))}
    except ModelSettingsError as error:
        return {**info, "defaults": input_defaults(family.defaults), "settings_error": str(error)}


def lora_family(header: dict[str, Any]) -> str | None:
    """A guess at a LoRA's base family from its header's names and shapes.

    The UNet's cross-attention keys read the family's context width (768 SD 1.x, 1024 SD 2.x,
    2048 SDXL); without those, a second text encoder means SDXL and a lone CLIP's width tells SD 1.x
    (768) from SD 2.x (1024). ``None`` when nothing tells.
    """
    from gouache.nodes.lora import input_width, parse_keys

    shapes = {key: value.get("shape", []) for key, value in header.items() if key != "__metadata__"}
    layers = list(parse_keys(shapes).values())

    def by_width(width: int | None, encoders: int | None = None) -> str | None:
        found = [f.name for f in FAMILIES.values() if f.context_width == width and f.denoiser_slot == "unet"
                 and (encoders is None or len(f.encoders) == encoders)]
        return found[0] if len(found) == 1 else None

    for layer in layers:
        if layer.component == "unet" and re.search(r"attn2[._]to_[kv]$", layer.module):
            if family := by_width(input_width(layer, shapes)):
                return family
    components = {layer.component for layer in layers}
    if "text_encoder_2" in components:
        return "sdxl"
    for layer in layers:
        if layer.component == "text_encoder" and re.search(r"q_proj$", layer.module):
            if family := by_width(input_width(layer, shapes), encoders=1):
                return family
    return "sd1/sd2" if components & {"unet", "text_encoder"} else None


def describe_lora(path: Path) -> dict[str, Any]:
    """What a LoRA is, from its safetensors header alone: format, layer kinds, the parts it patches, family.

    ``format`` is ``kohya``, ``peft``, ``comfyui``, ``lycoris-loha``, ``lycoris-lokr``, ``dora``, ...
    (``gouache.nodes.lora.describe_keys``); a file gouache cannot apply says why under ``problem``.
    """
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {"format": path.suffix.lower().lstrip(".")}
    from gouache.nodes.lora import describe_keys

    header = safetensors_header(path)
    tensors = sum(1 for key in header if key != "__metadata__")
    try:
        return {**describe_keys(header), "family": lora_family(header), "tensors": tensors}
    except ValueError as error:
        return {"format": "unknown", "tensors": tensors, "problem": str(error)}


def describe_diffusion_model(path: Path) -> dict[str, Any]:
    """Format and family of a diffusion model file alone, from its header's tensor names."""
    from gouache.nodes.loading.detect import denoiser_family

    if path.is_dir():
        return {"format": "diffusers"}
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {"format": path.suffix.lower().lstrip("."), "family": None}
    family = denoiser_family(k for k in safetensors_header(path) if k != "__metadata__")
    return {"format": "safetensors", "family": family.name if family else None}


def describe_vae(path: Path) -> dict[str, Any]:
    """A VAE's format and the families whose latents it could make, by its latent channels (header only)."""
    info: dict[str, Any] = {**describe_file(path), "kind": "vae"}
    channels = None
    if path.is_dir():
        channels = json.loads((path / "config.json").read_text(encoding="utf-8")).get("latent_channels")
    elif path.suffix.lower() in SAFETENSORS_SUFFIXES:
        header = safetensors_header(path)
        for key in ("quant_conv.weight", "encoder.conv_out.weight"):
            found = next((v for k, v in header.items() if k == key or k.endswith(f".{key}")), None)
            if found and found.get("shape"):
                channels = found["shape"][0] // 2  # the mean and the log-variance of each latent channel
                break
    if channels is None:
        return info
    families = [f.name for f in FAMILIES.values() if f.latent.channels == channels]
    return {**info, "latent_channels": channels, "family": "/".join(families) or None}


CONTROLNET_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
"""A ControlNet's family by the text embedding width its cross-attention reads."""


def describe_controlnet(path: Path) -> dict[str, Any]:
    """A ControlNet's format, layout and family (by its cross-attention width), from its config or header."""
    info: dict[str, Any] = {**describe_file(path), "kind": "controlnet"}
    config = path / "config.json" if path.is_dir() else path.with_suffix(".json")
    width = None
    if config.is_file():
        width = json.loads(config.read_text(encoding="utf-8")).get("cross_attention_dim")
    elif path.suffix.lower() in SAFETENSORS_SUFFIXES:
        header = safetensors_header(path)
        info["layout"] = "original" if any(k.startswith("control_model.") for k in header) else "diffusers"
        found = next((v for k, v in header.items() if k.endswith("attn2.to_k.weight")), None)
        width = found["shape"][1] if found and len(found.get("shape", [])) == 2 else None
    if isinstance(width, int):
        info["cross_attention_dim"] = width
        info["family"] = CONTROLNET_WIDTHS.get(width)
    return info


def describe_embedding(path: Path) -> dict[str, Any]:
    """An embedding's vector count, widths and the encoders those widths are (names and shapes only)."""
    from gouache.nodes.embeddings import describe_embedding as describe

    header = safetensors_header(path) if path.suffix.lower() in SAFETENSORS_SUFFIXES else None
    return describe(path, header)


def describe_file(path: Path) -> dict[str, Any]:
    """Just the file format (upscalers, VAEs, embeddings: spandrel decides the architecture on load)."""
    return {"format": "diffusers" if path.is_dir() else path.suffix.lower().lstrip(".")}


def builtin_checkpoints() -> list[ModelEntry]:
    """``gouache-tiny``: the single file, described by the shipped diffusers folder of the same model."""
    folder = weights_dir() / TINY
    single = weights_dir() / f"{TINY}.safetensors"
    info = {"format": "safetensors", "family": "sd1", "builtin": True}
    if single.is_file() and (folder / "model_index.json").is_file():
        return [ModelEntry(TINY, single, with_settings({**info, "config_dir": str(folder)}, single, folder))]
    if (folder / "model_index.json").is_file():
        return [ModelEntry(TINY, folder, with_settings({**info, "format": "diffusers"}, folder))]
    return []


def _builtin_file(name: str) -> list[ModelEntry]:
    """A shipped file, described by its folder kind's ``describe`` when a listing describes."""
    path = weights_dir() / name
    if not path.is_file():
        return []
    return [ModelEntry(name, path, {"builtin": True}, describe_when_listed=True)]


def builtin_controlnets() -> list[ModelEntry]:
    """``gouache-tiny-controlnet-silhouette``: the embedded model's ControlNet, a diffusers folder."""
    folder = weights_dir() / TINY_CONTROLNET
    if not (folder / "config.json").is_file():
        return []
    # Its 128-wide text embedding is no published family's; it steers gouache-tiny, an SD 1.x-layout model.
    return [ModelEntry(TINY_CONTROLNET, folder, {**describe_controlnet(folder), "family": "sd1", "builtin": True})]


def model_folders() -> list[ModelFolder]:
    """The kinds of model folder this pack registers."""
    return [
        ModelFolder("checkpoints", CHECKPOINT_SUFFIXES, directories=True, describe=describe_listed_checkpoint,
                    builtin=builtin_checkpoints,
                    description=f"{' / '.join(f.label for f in FAMILIES.values())} checkpoints: "
                                "single files or diffusers folders"),
        ModelFolder("loras", SAFETENSORS_SUFFIXES, describe=describe_lora,
                    builtin=lambda: _builtin_file(TINY_LORA),
                    description="LoRA files in kohya/A1111 or diffusers/peft layout"),
        ModelFolder("configs", (), directories=True, describe=describe_checkpoint,
                    description="Diffusers-style config folders (JSON only) for checkpoints whose sizes the "
                                "weights cannot show; CheckpointLoader's config input names one"),
        ModelFolder("vae", CHECKPOINT_SUFFIXES, directories=True, marker="config.json", describe=describe_vae,
                    description="Standalone VAEs"),
        ModelFolder("controlnet", SAFETENSORS_SUFFIXES, directories=True, marker="config.json", describe=describe_controlnet,
                    builtin=builtin_controlnets,
                    description="ControlNets for SD 1.x/2.x/SDXL: diffusers folders, original-layout single "
                                "files, or diffusers-layout files with their config .json beside them"),
        # Split files, as ComfyUI's models/ tree holds them (SD 3.x, Flux.1).
        ModelFolder("diffusion_models", CHECKPOINT_SUFFIXES, directories=True, describe=describe_diffusion_model,
                    description="Diffusion models alone (SD 3.x, Flux.1 transformers): original, "
                                "ComfyUI or diffusers layout"),
        ModelFolder("text_encoders", CHECKPOINT_SUFFIXES, describe=describe_file,
                    description="Text encoders alone (CLIP-L, CLIP-G, T5-XXL) in transformers' layout"),
        ModelFolder("upscale_models", (".pth", ".pt", ".safetensors"), describe=describe_file,
                    builtin=lambda: _builtin_file(TINY_UPSCALER),
                    description="Super-resolution models spandrel can load (ESRGAN, Real-ESRGAN, SwinIR, ...)"),
        ModelFolder("embeddings", CHECKPOINT_SUFFIXES, describe=describe_embedding,
                    description="Textual-inversion embeddings"),
        # The shipped pictures are offered beside the user's own, so the shipped workflows that
        # start from an image run in a fresh home; a file of that name in input/ wins.
        ModelFolder("input_images", IMAGE_EXTENSIONS, home_folder="input", builtin=shipped_images,
                    description="Images in the input folder, offered by LoadImage"),
    ]
