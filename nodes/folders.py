"""The model folders the pack reads, what ``gouache models`` says about each file, and built-ins.

``describe`` must stay cheap: it reads safetensors headers (the JSON before the tensors) and
diffusers JSON configs, never the weights, and imports no torch.
"""

from __future__ import annotations

import json
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from gouache.engine import ModelEntry, ModelFolder
from gouache.nodes.families import FAMILIES

TINY = "gouache-tiny"
TINY_LORA = "gouache-tiny-outline.safetensors"
TINY_UPSCALER = "gouache-tiny-4x.safetensors"
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
    from gouache.nodes.models.detect import detect_family

    tensors = {k: _Shape(v.get("shape", [])) for k, v in header.items() if k != "__metadata__"}
    try:
        return detect_family(tensors).name  # type: ignore[arg-type]
    except ValueError:
        return None


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """Format and family of a checkpoint, from its header or folder configs."""
    if path.is_dir():
        from gouache.nodes.models.detect import detect_folder

        detection = detect_folder(path)
        return {"format": "diffusers", "family": detection.family.name, "prediction_type": detection.prediction_type}
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return {"format": "safetensors", "family": _family_of_keys(safetensors_header(path))}
    return {"format": path.suffix.lower().lstrip("."), "family": None}


def lora_format(keys: list[str]) -> str:
    """``kohya`` (``lora_unet_*`` / ``lora_te*_`` keys) or ``diffusers`` (``unet.*`` / peft keys)."""
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or "_lora.down." in k for k in keys):
        return "diffusers"
    return "unknown"


def lora_family(keys: list[str]) -> str | None:
    """A guess at the base family from key names: SDXL LoRAs touch a second text encoder."""
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return "sdxl"
    if any(k.startswith(("lora_te_", "lora_unet_", "text_encoder.", "unet.")) for k in keys):
        return "sd1/sd2"
    return None


def describe_lora(path: Path) -> dict[str, Any]:
    """Format and likely family of a LoRA, from its safetensors header."""
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {"format": path.suffix.lower().lstrip(".")}
    keys = [k for k in safetensors_header(path) if k != "__metadata__"]
    return {"format": lora_format(keys), "family": lora_family(keys), "tensors": len(keys)}


def describe_file(path: Path) -> dict[str, Any]:
    """Just the file format (upscalers, VAEs, embeddings: spandrel decides the architecture on load)."""
    return {"format": "diffusers" if path.is_dir() else path.suffix.lower().lstrip(".")}


def builtin_checkpoints() -> list[ModelEntry]:
    """``gouache-tiny``: the single file, described by the shipped diffusers folder of the same model."""
    folder = weights_dir() / TINY
    single = weights_dir() / f"{TINY}.safetensors"
    info = {"format": "safetensors", "family": "sd1", "builtin": True}
    if single.is_file() and (folder / "model_index.json").is_file():
        return [ModelEntry(TINY, single, {**info, "config_dir": str(folder)})]
    if (folder / "model_index.json").is_file():
        return [ModelEntry(TINY, folder, {**info, "format": "diffusers"})]
    return []


def _builtin_file(name: str, describe: Any) -> list[ModelEntry]:
    path = weights_dir() / name
    if not path.is_file():
        return []
    return [ModelEntry(name, path, {**describe(path), "builtin": True})]


def model_folders() -> list[ModelFolder]:
    """The kinds of model folder this pack registers."""
    return [
        ModelFolder("checkpoints", CHECKPOINT_SUFFIXES, directories=True, describe=describe_checkpoint,
                    builtin=builtin_checkpoints,
                    description=f"{' / '.join(f.label for f in FAMILIES.values())} checkpoints: "
                                "single files or diffusers folders"),
        ModelFolder("loras", SAFETENSORS_SUFFIXES, describe=describe_lora,
                    builtin=lambda: _builtin_file(TINY_LORA, describe_lora),
                    description="LoRA files in kohya/A1111 or diffusers/peft layout"),
        ModelFolder("vae", CHECKPOINT_SUFFIXES, describe=describe_file,
                    description="Standalone VAEs"),
        # Split files, as ComfyUI's models/ tree holds them (SD 3.x, Flux.1).
        ModelFolder("diffusion_models", CHECKPOINT_SUFFIXES, directories=True, describe=describe_file,
                    description="Diffusion models alone (SD 3.x, Flux.1 transformers): original, "
                                "ComfyUI or diffusers layout"),
        ModelFolder("text_encoders", CHECKPOINT_SUFFIXES, describe=describe_file,
                    description="Text encoders alone (CLIP-L, CLIP-G, T5-XXL) in transformers' layout"),
        ModelFolder("upscale_models", (".pth", ".pt", ".safetensors"), describe=describe_file,
                    builtin=lambda: _builtin_file(TINY_UPSCALER, describe_file),
                    description="Super-resolution models spandrel can load (ESRGAN, Real-ESRGAN, SwinIR, ...)"),
        ModelFolder("embeddings", CHECKPOINT_SUFFIXES, describe=describe_file,
                    description="Textual-inversion embeddings"),
        # The shipped example image is offered beside the user's own, so the shipped
        # image-to-image workflow runs in a fresh home; a file of that name in input/ wins.
        ModelFolder("input_images", IMAGE_EXTENSIONS, home_folder="input",
                    builtin=lambda: [ModelEntry(EXAMPLE_IMAGE, example_image(), {"builtin": True})],
                    description="Images in the input folder, offered by LoadImage"),
    ]
