"""What the built-in nodes share: the model manager, model lookup by name, file fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gouache.engine import InputError

MAX_SIDE = 16384
"""Largest image side, in pixels, any node accepts."""
MAX_SEED = 2**64 - 1
"""Largest seed: seeds are unsigned 64-bit integers, as ComfyUI's."""


def manager_of(ctx: Any) -> Any:
    """The engine's model manager (``gouache.nodes.model_manager``), for this run."""
    from gouache.nodes.model_manager import manager

    return manager(ctx)


def resolve(ctx: Any, kind: str, name: str, input_name: str = "name") -> Any:
    """The model entry ``name`` of folder kind ``kind``; an ``InputError`` on ``input_name`` if absent."""
    try:
        return ctx.models.resolve(kind, name)
    except KeyError as error:
        raise InputError(input_name, error.args[0], "model_not_found") from None


def input_image(ctx: Any, image: str) -> Path:
    """The file ``image`` names: in the input folder (never outside it), else an image the pack ships."""
    folder = ctx.settings.folder("input").resolve()
    path = (folder / image).resolve()
    if not path.is_relative_to(folder):
        raise InputError("image", f"{image!r} is outside the input folder; name a file inside {folder}",
                         "outside_folder")
    if path.is_file():
        return path
    return resolve(ctx, "input_images", image, "image").path  # one of the images the pack ships


def input_image_fingerprint(ctx: Any, image: str) -> str:
    """A cache key for the input image ``image``: its name, size and modification time."""
    stat = input_image(ctx, image).stat()
    return f"{image}:{stat.st_size}:{stat.st_mtime_ns}"


def fingerprint_of(path: Path) -> str:
    """The cache key of a model file or folder's content (path, size, modification time)."""
    from gouache.nodes.loading import fingerprint

    return fingerprint(path)
