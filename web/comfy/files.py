"""ComfyUI's file routes: GET /view, POST /upload/image and /upload/mask.

A file is named as ComfyUI names it, ``filename`` + ``subfolder`` + ``type`` (output, input, temp),
and resolved with gouache's own :func:`~gouache.web.files.safe_path`: nothing outside the type's
folder is ever read or written, whatever the spelling. Uploads are decoded fully before they are
kept (gouache's :func:`~gouache.web.files.check_image`), and stored under a cleaned name.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gouache.engine import jsonio

from gouache.web.bodies import Refused, check_announced, too_large, unreadable
from gouache.web.files import UploadRejected, check_image, clean_name, file_response, safe_path, store_upload

FILE_TYPES = ("output", "input", "temp")
ANNOTATION = re.compile(r"^(?P<name>.*) \[(?P<type>output|input|temp)\]$")
"""ComfyUI's annotated names, ``name.png [output]``: the type in brackets."""
PREVIEW_FORMATS = ("webp", "jpeg")
CHANNELS = ("rgba", "rgb", "a")


def folder_type(value: str | None, default: str) -> str:
    """A ``type`` parameter, checked."""
    kind = value or default
    if kind not in FILE_TYPES:
        raise Refused(400, f"type {jsonio.shorten(kind)} is not a folder; use output, input or temp")
    return kind


def relative(filename: str, subfolder: str) -> str:
    """``subfolder/filename``, refused (400) when either part could leave the folder."""
    for label, part in (("filename", filename), ("subfolder", subfolder)):
        if "\x00" in part or "\\" in part or part.startswith("/") or re.match(r"^[A-Za-z]:", part) \
                or ".." in part.split("/"):
            raise Refused(400, f"{label} {jsonio.shorten(part)} leaves the folder; name a file inside it")
    if not filename or "/" in filename:
        raise Refused(400, "filename must be a file's name (put folders in subfolder)")
    return "/".join(part for part in (subfolder.strip("/"), filename) if part)


def view(folders: Any, query: Any) -> web.StreamResponse:
    """GET /view?filename=&subfolder=&type=[&channel=rgb|a][&preview=webp;90]."""
    raw = query.get("filename")
    if not raw:
        raise Refused(400, "name the file: /view?filename=NAME&subfolder=SUB&type=output")
    annotated = ANNOTATION.match(raw)
    name, kind = (annotated["name"], annotated["type"]) if annotated else (raw, folder_type(query.get("type"), "output"))
    path = safe_path(folders(kind), relative(name, query.get("subfolder", "")))
    if path is None:
        raise Refused(404, f"no file {jsonio.shorten(raw)} in the {kind} folder")
    channel = query.get("channel", "rgba")
    if channel not in CHANNELS:
        raise Refused(400, f"channel {jsonio.shorten(channel)} is not one of {', '.join(CHANNELS)}")
    preview = query.get("preview")
    if preview is None and channel == "rgba":
        return file_response(path)
    return _converted(path, channel, preview)


def _converted(path: Path, channel: str, preview: str | None) -> web.Response:
    from PIL import Image

    image_format, quality = "png", 90
    if preview is not None:
        parts = preview.split(";")
        image_format = parts[0] if parts[0] in PREVIEW_FORMATS else "webp"
        if channel == "a":
            image_format = "webp"  # JPEG has no alpha
        if parts[-1].isdigit():
            quality = max(1, min(100, int(parts[-1])))
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened
            if channel == "a":
                alpha = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
                image = Image.new("RGBA", image.size)
                image.putalpha(alpha)
            elif channel == "rgb" or image_format == "jpeg":
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format=image_format.upper(), quality=quality)
    except OSError as error:
        raise Refused(415, f"{path.name} is not an image gouache can convert: {error}") from None
    return web.Response(body=buffer.getvalue(), content_type=f"image/{image_format}",
                        headers={"X-Content-Type-Options": "nosniff"})


async def read_form(request: web.Request, limit: int) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The multipart form's text fields and its ``image`` file (name, bytes), within ``limit`` bytes."""
    check_announced(request, limit, "the upload", 64 * 1024)
    if not request.content_type.startswith("multipart/"):
        raise Refused(415, "send the image as multipart/form-data in a field named 'image'")
    fields: dict[str, str] = {}
    image: tuple[str, bytes] | None = None
    reader = await request.multipart()
    total = 0
    while (part := await reader.next()) is not None:
        data = bytearray()
        while chunk := await part.read_chunk(256 * 1024):
            data += chunk
            total += len(chunk)
            if len(data) > limit or total > limit + 64 * 1024:  # many parts must not add up past it either
                raise too_large("the upload", None, limit)
        if part.name == "image" and part.filename:
            image = (part.filename, bytes(data))
        elif part.name:
            fields[part.name] = data.decode("utf-8", "replace")
    return fields, image


def _flag(value: str | None) -> bool:
    return value in ("true", "1")


def keep_upload(folder: Path, subfolder: str, filename: str, data: bytes, overwrite: bool) -> str:
    """Write an upload under ``folder/subfolder``: replace a file of that name when ``overwrite``,
    else take a free name (the same bytes uploaded again reuse their file); returns the name used."""
    extension = check_image(data)
    name = clean_name(filename, extension)
    target = folder
    if subfolder:
        relative(name, subfolder)  # refuses a subfolder that leaves the folder
        target = folder / PurePosixPath(subfolder.strip("/"))
        if not target.resolve().is_relative_to(folder.resolve()):
            raise Refused(400, f"subfolder {jsonio.shorten(subfolder)} leaves the folder")
    target.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        return store_upload(target, name, data)
    handle, temporary = tempfile.mkstemp(dir=target, prefix=".upload-")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(temporary, target / name)  # a reader sees the old file or the new one, never half of one
    return name


def mask_upload(original: Path, mask: bytes) -> bytes:
    """ComfyUI's mask editor upload: the original image with the uploaded image's alpha as its own (PNG)."""
    from PIL import Image

    check_image(mask)
    with Image.open(original) as source, Image.open(io.BytesIO(mask)) as painted:
        if source.size != painted.size:
            raise UploadRejected(f"the mask is {painted.size[0]}x{painted.size[1]} but the image is "
                                 f"{source.size[0]}x{source.size[1]}; paint the mask at the image's size")
        merged = source.convert("RGBA")
        merged.putalpha(painted.convert("RGBA").getchannel("A"))
        buffer = io.BytesIO()
        merged.save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(request: web.Request, folders: Any, limit: int, *, mask: bool) -> dict[str, str]:
    """POST /upload/image (``mask``: /upload/mask): fields ``image``, ``overwrite``, ``subfolder``, ``type``
    (and ``original_ref`` for a mask); the stored file's ``{name, subfolder, type}``."""
    try:
        fields, image = await read_form(request, limit)
    except (ValueError, LookupError, HttpProcessingError, RequestPayloadError) as error:  # a malformed multipart body
        raise Refused(400, f"cannot read the multipart body: {unreadable(error)}") from None
    if image is None:
        raise Refused(400, "no file in a multipart field named 'image'")
    kind = folder_type(fields.get("type"), "input")
    subfolder = fields.get("subfolder", "")
    known = {"overwrite", "subfolder", "type"} | ({"original_ref"} if mask else set())
    unknown = sorted(set(fields) - known)
    if unknown:
        raise Refused(400, f"gouache does not act on the field(s) {', '.join(unknown)}; send only "
                           f"image, {', '.join(sorted(known))}")
    filename, data = image
    try:
        if mask:
            data = await asyncio.to_thread(mask_upload, _original(folders, fields.get("original_ref")), data)
            filename = PurePosixPath(filename).stem + ".png"
        name = await asyncio.to_thread(keep_upload, folders(kind), subfolder, filename, data,
                                       _flag(fields.get("overwrite")))
    except UploadRejected as rejected:
        raise Refused(415, str(rejected)) from None
    return {"name": name, "subfolder": subfolder.strip("/"), "type": kind}


def _original(folders: Any, raw: str | None) -> Path:
    if not raw:
        raise Refused(400, "a mask upload names the image it masks in original_ref: "
                           '{"filename": ..., "subfolder": ..., "type": ...}')
    try:
        ref = jsonio.loads(raw)
    except jsonio.JsonError as error:
        raise Refused(400, f"original_ref is not JSON: {error}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise Refused(400, "original_ref must be {\"filename\", \"subfolder\", \"type\"}")
    annotated = ANNOTATION.match(ref["filename"])
    name, kind = (annotated["name"], annotated["type"]) if annotated else (ref["filename"],
                                                                            folder_type(ref.get("type"), "output"))
    path = safe_path(folders(kind), relative(name, str(ref.get("subfolder") or "")))
    if path is None:
        raise Refused(404, f"no image {jsonio.shorten(ref['filename'])} in the {kind} folder to mask")
    return path
