"""Images in and out: reading the input folder, PNGs that carry their workflow, resizing.

IMAGE values are float32 tensors [B,H,W,C] in 0..1 and MASK values float32 [B,H,W] in 0..1, on the
CPU. A saved PNG holds two tEXt chunks: ``workflow`` (the workflow JSON that made it, which
``gouache run image.png`` reads back) and ``parameters`` (the generation settings, A1111-style).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from gouache.engine import InputError

PARTIAL_SUFFIX = ".partial"
PARTIAL_MAX_AGE = 600
"""Seconds after which a temporary file left by a killed process is removed."""
RESIZE_METHODS = ("nearest-exact", "bilinear", "bicubic", "area", "lanczos")
_COUNTER = re.compile(r"_(\d{5})\.png$")


def load_image(path: Path) -> tuple[Any, Any]:
    """An IMAGE [1,H,W,3] and a MASK [1,H,W] (1 where the picture is transparent) from a file."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened)
            picture.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path.name} is not an image PIL can read ({error})") from None
    has_alpha = "A" in picture.getbands() or (picture.mode == "P" and "transparency" in picture.info)
    rgba = picture.convert("RGBA") if has_alpha else None
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(rgb).unsqueeze(0)
    if rgba is not None:
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0
        mask = 1.0 - torch.from_numpy(alpha).unsqueeze(0)
    else:
        mask = torch.zeros(image.shape[:3], dtype=torch.float32)
    return image, mask


def to_pil(image_row: Any) -> Any:
    """One [H,W,C] image tensor in 0..1 as a PIL RGB image."""
    from PIL import Image

    pixels = image_row.detach().float().clamp(0, 1).mul(255).round().to("cpu").numpy().astype("uint8")
    if pixels.shape[-1] == 1:
        return Image.fromarray(pixels[..., 0], "L").convert("RGB")
    return Image.fromarray(pixels[..., :3], "RGB")


def save_png(image_row: Any, folder: Path, prefix: str, text: dict[str, str]) -> Path:
    """Write ``image_row`` as ``<prefix>_NNNNN.png`` in ``folder``, never overwriting; return the path.

    ``prefix`` may hold sub-folders (``portraits/test``) but not leave ``folder``.
    """
    from PIL.PngImagePlugin import PngInfo

    prefix = prefix.strip() or "gouache"
    target_dir = (folder / prefix).parent.resolve()
    if not target_dir.is_relative_to(folder.resolve()):
        raise InputError("filename_prefix", f"{prefix!r} leaves the output folder; use a relative name", "outside_folder")
    target_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(prefix).name
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    picture = to_pil(image_row)
    # Written whole to a temporary file first, then linked to its name: a process killed mid-write
    # leaves a .partial file (removed by a later save), never a cut PNG under a real name.
    partial = target_dir / f".{stem}.{os.getpid()}.{time.monotonic_ns()}{PARTIAL_SUFFIX}"
    try:
        with open(partial, "xb") as handle:
            picture.save(handle, format="PNG", pnginfo=info, compress_level=4)
            handle.flush()
            os.fsync(handle.fileno())
        counter = _next_counter(target_dir, stem)
        while True:
            path = target_dir / f"{stem}_{counter:05d}.png"
            try:
                os.link(partial, path)  # exclusive: a file another run just wrote is never replaced
            except FileExistsError:
                counter += 1
                continue
            return path
    finally:
        partial.unlink(missing_ok=True)


def _next_counter(folder: Path, stem: str) -> int:
    """The number after the highest ``stem_NNNNN.png``; removes stale ``.partial`` files on the way."""
    highest = 0
    stale_before = time.time() - PARTIAL_MAX_AGE
    for entry in os.scandir(folder):
        if entry.name.endswith(PARTIAL_SUFFIX):
            try:
                if entry.stat().st_mtime < stale_before:
                    os.unlink(entry.path)
            except OSError:
                pass  # another process removed or is finishing it
            continue
        if entry.name.startswith(stem + "_"):
            match = _COUNTER.search(entry.name)
            if match and entry.name[: -len(match.group(0))] == stem:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def resize(image: Any, width: int, height: int, method: str) -> Any:
    """IMAGE [B,H,W,C] resized to ``width`` x ``height`` with ``method``."""
    import torch

    if method not in RESIZE_METHODS:
        raise InputError("method", f"unknown resize method {method!r}; choose one of {', '.join(RESIZE_METHODS)}", "not_a_choice")
    if (image.shape[2], image.shape[1]) == (width, height):
        return image.clone()
    if method == "lanczos":
        import numpy as np
        from PIL import Image

        rows = []
        for row in image:
            resized = to_pil(row).resize((width, height), Image.Resampling.LANCZOS)
            rows.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0))
        return torch.stack(rows)
    channels_first = image.movedim(-1, 1)
    kwargs = {"align_corners": False, "antialias": True} if method in ("bilinear", "bicubic") else {}
    out = torch.nn.functional.interpolate(channels_first, size=(height, width), mode=method, **kwargs)
    return out.movedim(1, -1).clamp(0, 1).contiguous()


def target_size(width: int, height: int, scale_by: float, new_width: int, new_height: int,
                multiple: int = 1) -> tuple[int, int]:
    """The size asked for: explicit width/height win (0 keeps the aspect ratio), else ``scale_by``."""
    if new_width <= 0 and new_height <= 0:
        if scale_by <= 0:
            raise InputError("scale_by", "must be above 0 when width and height are 0", "out_of_range")
        new_width, new_height = round(width * scale_by), round(height * scale_by)
    elif new_width <= 0:
        new_width = round(width * new_height / height)
    elif new_height <= 0:
        new_height = round(height * new_width / width)
    round_to = lambda value: max(multiple, int(round(value / multiple)) * multiple)  # noqa: E731
    return round_to(new_width), round_to(new_height)


def generation_parameters(workflow: Any, node_id: str) -> str:
    """A1111-style text of the settings behind ``node_id``: its nearest upstream Sampler's inputs.

    Read from the workflow itself (what was asked), so it works for any graph shape; a workflow
    without a Sampler upstream yields an empty string.
    """
    nodes = workflow.nodes

    def upstream(start: str) -> list[str]:
        seen, order, queue = {start}, [], [start]
        while queue:
            current = queue.pop(0)
            order.append(current)
            for value in nodes[current].inputs.values():
                source = getattr(value, "node", None)
                if source in nodes and source not in seen:
                    seen.add(source)
                    queue.append(source)
        return order

    sampler = next((n for n in upstream(node_id) if nodes[n].type == "Sampler"), None)
    if sampler is None:
        return ""
    inputs = nodes[sampler].inputs

    def text_of(name: str) -> str:
        link = inputs.get(name)
        source = getattr(link, "node", None)
        if source in nodes and isinstance(nodes[source].inputs.get("text"), str):
            return nodes[source].inputs["text"]
        return ""

    checkpoint = next((nodes[n].inputs.get("name") for n in upstream(sampler)
                       if nodes[n].type == "CheckpointLoader"), None)
    fields = {"Steps": inputs.get("steps"), "Sampler": inputs.get("sampler_name"),
              "Schedule type": inputs.get("scheduler"), "CFG scale": inputs.get("cfg"),
              "Seed": inputs.get("seed"), "Denoising strength": inputs.get("denoise"), "Model": checkpoint}
    settings = ", ".join(f"{key}: {value}" for key, value in fields.items()
                         if value is not None and not isinstance(value, dict) and not hasattr(value, "node"))
    return f"{text_of('positive')}\nNegative prompt: {text_of('negative')}\n{settings}"


def png_text(ctx: Any) -> dict[str, str]:
    """The tEXt chunks for an image saved by node ``ctx.node_id``."""
    return {"workflow": json.dumps(ctx.workflow.to_json(), separators=(",", ":")),
            "parameters": generation_parameters(ctx.workflow, ctx.node_id)}
