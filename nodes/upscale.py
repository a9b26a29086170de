"""Model-based upscaling through spandrel, tiled with overlap so large images fit in memory.

Each tile is cut with ``overlap`` pixels of context on every side, upscaled, and only its core
(the part without the context margin) is kept. For a convolutional model whose receptive field is
within the overlap, the result equals the untiled one up to floating-point rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gouache.engine import InputError

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32


def load_upscaler(path: Path) -> Any:
    """A spandrel ``ImageModelDescriptor`` in eval mode on the CPU; ``ValueError`` if it is not one."""
    import spandrel

    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(str(path))
    except Exception as error:  # spandrel raises several types for "not a model I know"
        raise ValueError(f"{Path(path).name}: spandrel cannot load it as an upscale model ({error})") from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"{Path(path).name} is a {type(descriptor).__name__}, not an image-to-image model")
    descriptor.model.eval()
    return descriptor


def upscale(descriptor: Any, image: Any, device: Any, tile: int = DEFAULT_TILE,
            overlap: int = DEFAULT_OVERLAP, progress: Any = None, check_interrupt: Any = None) -> Any:
    """IMAGE [B,H,W,C] upscaled by the model's scale; ``tile=0`` runs the whole image at once.

    ``check_interrupt`` is called before every layer of the model, so even one large tile stops
    within a layer when the run is interrupted.
    """
    import torch

    from gouache.nodes.interrupt import interruptible

    if not hasattr(image, "shape") or image.ndim != 4 or image.shape[-1] != 3:
        raise InputError("image", f"expected an RGB IMAGE tensor [B,H,W,3], got {getattr(image, 'shape', type(image))}",
                         "wrong_shape")
    scale = int(descriptor.scale)
    model = descriptor.model.to(device)
    dtype = next(model.parameters()).dtype
    pixels = image.movedim(-1, 1)
    batch, channels, height, width = pixels.shape
    if tile <= 0 or (height <= tile and width <= tile):
        with torch.no_grad(), interruptible([model], check_interrupt):
            out = model(pixels.to(device, dtype)).float().to("cpu")
        return out.clamp(0, 1).movedim(1, -1).contiguous()
    out = torch.zeros(batch, channels, height * scale, width * scale)
    rows = list(range(0, height, tile))
    cols = list(range(0, width, tile))
    done, total = 0, len(rows) * len(cols)
    for top in rows:
        for left in cols:
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
            with torch.no_grad(), interruptible([model], check_interrupt):
                result = model(pixels[:, :, y0:y1, x0:x1].to(device, dtype)).float().to("cpu")
            core = result[:, :, (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] = core
            done += 1
            if progress is not None:
                progress(done, total)
    return out.clamp(0, 1).movedim(1, -1).contiguous()
