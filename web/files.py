"""Serving files from a fixed folder only, and accepting image uploads without overwriting anything.

A client names a file by a path *relative to a folder the server chose*; :func:`safe_path` resolves
it (symlinks included) and refuses anything that lands outside that folder, whatever the spelling:
``..``, absolute paths, backslashes, NUL bytes, percent-encodings decoded on the way in.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
from pathlib import Path, PurePosixPath

from aiohttp import web

IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".bmp": "image/bmp",
}
UPLOAD_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
MAX_UPLOAD_PIXELS = 64 * 1024 * 1024
"""Images larger than this (in pixels) are refused: a small file must not decode to gigabytes."""


class UploadRejected(ValueError):
    """An upload that is not an image we accept; the message says why."""


def safe_path(base: Path, relative: str) -> Path | None:
    """``base/relative`` if it is an existing file inside ``base`` (after resolving links), else None."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part in ("..", "") for part in relative.split("/")) or re.match(r"^[A-Za-z]:", relative):
        return None
    root = base.resolve()
    try:
        target = (root / pure).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def file_response(path: Path, *, scripts: bool = False) -> web.FileResponse:
    """Serve ``path``; only images (and, for extensions, scripts and styles) get a renderable type.

    Anything else is sent as a download, so a file a node wrote can never run as a page here.
    """
    response = web.FileResponse(path)
    suffix = path.suffix.lower()
    content_type = IMAGE_TYPES.get(suffix)
    if scripts and suffix in (".js", ".mjs"):
        content_type = "text/javascript"
    elif scripts and suffix == ".css":
        content_type = "text/css"
    elif scripts and content_type is None:
        guessed = mimetypes.guess_type(path.name)[0]
        if guessed and guessed.split("/")[0] in ("font", "image") and guessed != "image/svg+xml":
            content_type = guessed
    if content_type is None:
        response.content_type = "application/octet-stream"
        response.headers["Content-Disposition"] = "attachment"
    else:
        response.content_type = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def check_image(data: bytes) -> str:
    """The file extension for an uploaded image, after decoding it fully; raises UploadRejected."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as probe:
            image_format = probe.format
            width, height = probe.size
        if image_format not in UPLOAD_FORMATS:
            raise UploadRejected(f"{image_format or 'this'} images are not accepted; upload PNG, JPEG, WEBP, GIF or BMP")
        if width * height > MAX_UPLOAD_PIXELS:
            raise UploadRejected(f"the image is {width}x{height}; the limit is {MAX_UPLOAD_PIXELS} pixels")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except UploadRejected:
        raise
    except Exception as error:
        raise UploadRejected(f"not a readable image: {type(error).__name__}: {error}") from None
    return UPLOAD_FORMATS[image_format]


def clean_name(filename: str, extension: str) -> str:
    """A safe file name from a client's: its last path part, plain characters, the real extension."""
    stem = PurePosixPath(filename.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" .")[:100] or "upload"
    return stem + extension


def store_upload(folder: Path, name: str, data: bytes) -> str:
    """Write ``data`` under a free name in ``folder``: ``name``, else ``stem-1.ext``, ``stem-2.ext``...

    Files are created exclusively, so two uploads with one name never overwrite each other; the
    same bytes uploaded again under the same name reuse the existing file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem, extension = os.path.splitext(name)
    for attempt in range(10_000):
        candidate = name if attempt == 0 else f"{stem}-{attempt}{extension}"
        try:
            with open(folder / candidate, "xb") as handle:
                handle.write(data)
            return candidate
        except FileExistsError:
            if (folder / candidate).read_bytes() == data:
                return candidate  # the same image uploaded again: reuse it
            continue
    raise UploadRejected(f"too many files named like {name!r}; rename the file")
