"""Putting pictures together: pasting through a mask, padding for outpainting, latent composites, the inpaint fill.

Offsets are in pixels; a pasted source must start inside its destination and is cut where it reaches
past the right or bottom edge (``gouache.nodes.masks.place``). A mask given with a picture must have
the picture's size. Every function returns new tensors.
"""

from __future__ import annotations

from typing import Any

from gouache.engine import InputError
from gouache.nodes.masks import as_image, as_mask, fit_batch, place, same_size


def composite_masked(destination: Any, source: Any, x: int, y: int, mask: Any | None) -> Any:
    """``source`` pasted onto ``destination`` at x/y where ``mask`` is 1, blended where it is between (ImageCompositeMasked)."""
    as_image(destination, "destination")
    as_image(source, "source")
    if destination.shape[-1] != source.shape[-1]:
        raise InputError("source", f"has {source.shape[-1]} channels, the destination {destination.shape[-1]}",
                         "channel_mismatch")
    batch = max(destination.shape[0], source.shape[0])
    out = _fit_images(destination, batch, "destination").clone()
    source = _fit_images(source, batch, "source")
    dy, dx, sy, sx = place(tuple(out.shape[1:3]), tuple(source.shape[1:3]), x, y)
    if mask is None:
        out[:, dy, dx] = source[:, sy, sx]
        return out
    mask = as_mask(mask, "mask")
    same_size(mask, source.shape[1], source.shape[2], "mask", "the source")
    weights = fit_batch(mask, batch, "mask")[:, sy, sx, None]
    out[:, dy, dx] = source[:, sy, sx] * weights + out[:, dy, dx] * (1 - weights)
    return out


def _fit_images(images: Any, batch: int, name: str) -> Any:
    if images.shape[0] == batch:
        return images
    if images.shape[0] == 1:
        return images.expand(batch, -1, -1, -1)
    raise InputError(name, f"has {images.shape[0]} images for a batch of {batch}; give one or as many", "batch_mismatch")


def pad_for_outpaint(image: Any, left: int, top: int, right: int, bottom: int, feathering: int) -> tuple[Any, Any]:
    """The image on a larger grey canvas and a MASK that is 1 on the new border (ImagePadForOutpaint).

    Within ``feathering`` pixels of a padded side the mask also rises into the picture, as
    ((feathering - d) / feathering)^2 at distance d from that side (counted from 0 at the top and left
    rows, from 1 at the bottom and right ones, as ComfyUI does), so the repaint blends in. The mask is
    [1,H,W]: one mask for the whole batch.
    """
    import torch

    as_image(image, "image")
    batch, height, width, channels = image.shape
    canvas = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5)
    canvas[:, top:top + height, left:left + width] = image
    mask = torch.ones(1, height + top + bottom, width + left + right)
    inner = torch.zeros(height, width)
    if 0 < feathering and 2 * feathering < min(height, width):  # as ComfyUI: no feathering past the middle
        rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
        cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
        inf = torch.full((height, width), float("inf"))
        distance = torch.minimum(
            torch.minimum(rows if top else inf, (height - rows) if bottom else inf),
            torch.minimum(cols if left else inf, (width - cols) if right else inf))
        inner = torch.where(distance < feathering, ((feathering - distance) / feathering) ** 2, inner)
    mask[:, top:top + height, left:left + width] = inner
    return canvas, mask


def composite_latent(to: dict[str, Any], source: dict[str, Any], x: int, y: int, feather: int, cell: int) -> dict[str, Any]:
    """``source``'s samples pasted into ``to``'s at x/y pixels (``cell`` pixels per latent cell), LatentComposite.

    With ``feather`` pixels, the pasted block fades in linearly over that many pixels on each side
    that lies inside ``to`` (not at its border). ``to``'s noise mask, if any, is kept.
    """
    import torch

    below, above = to["samples"], source["samples"]
    if below.shape[1] != above.shape[1]:
        raise InputError("samples_from", f"has {above.shape[1]} latent channels, samples_to {below.shape[1]}: "
                                         "both must come from the same model family", "channel_mismatch")
    batch = max(below.shape[0], above.shape[0])
    out = _fit_latents(below, batch, "samples_to").clone()
    above = _fit_latents(above, batch, "samples_from")
    cx, cy, cells = x // cell, y // cell, feather // cell
    try:
        dy, dx, sy, sx = place(tuple(out.shape[-2:]), tuple(above.shape[-2:]), cx, cy)
    except InputError as error:
        raise InputError(error.input, f"{x if error.input == 'x' else y} px is outside samples_to "
                                      f"({out.shape[-1] * cell}x{out.shape[-2] * cell} px)", error.code) from None
    block = above[:, :, sy, sx]
    h, w = block.shape[-2:]
    weights = torch.ones(h, w)
    if cells > 0:
        steps = (torch.arange(cells, dtype=torch.float32) + 1) / cells
        sides = ((cy > 0, 0, True), (cy + h < out.shape[-2], 0, False),
                 (cx > 0, 1, True), (cx + w < out.shape[-1], 1, False))
        for inside, axis, leading in sides:
            if not inside:
                continue
            length = weights.shape[axis]
            n = min(cells, length)
            ramp = steps[:n] if leading else steps[:n].flip(0)
            index = slice(0, n) if leading else slice(length - n, length)
            if axis == 0:
                weights[index, :] *= ramp[:, None]
            else:
                weights[:, index] *= ramp[None, :]
    out[:, :, dy, dx] = block * weights + out[:, :, dy, dx] * (1 - weights)
    return {**to, "samples": out}


def _fit_latents(samples: Any, batch: int, name: str) -> Any:
    if samples.shape[0] == batch:
        return samples
    if samples.shape[0] == 1:
        return samples.expand(batch, -1, -1, -1)
    raise InputError(name, f"has {samples.shape[0]} latents for a batch of {batch}; give one or as many", "batch_mismatch")


def inpaint_pixels(image: Any, mask: Any, grow_mask_by: int, factor: int) -> tuple[Any, Any]:
    """What VAEEncodeForInpaint encodes, and its noise mask: the image cropped to multiples of ``factor``
    with the (rounded) masked area set to neutral grey, and the mask grown by a ``grow_mask_by``-wide square.

    Returns (pixels [B,H,W,3], noise mask [B,H,W]).
    """
    import math

    import torch.nn.functional as F

    as_image(image, "pixels")
    mask = as_mask(mask, "mask")
    same_size(mask, image.shape[1], image.shape[2], "mask", "the image")
    mask = fit_batch(mask, image.shape[0], "mask")
    height, width = (image.shape[1] // factor) * factor, (image.shape[2] // factor) * factor
    if height == 0 or width == 0:
        raise InputError("pixels", f"{image.shape[2]}x{image.shape[1]} is smaller than one latent cell ({factor} px)",
                         "too_small")
    pixels = image[:, :height, :width, :3].float()
    mask = mask[:, :height, :width].round()
    keep = (1 - mask)[..., None]
    pixels = (pixels - 0.5) * keep + 0.5
    if grow_mask_by > 0:
        # ComfyUI's kernel: a grow_mask_by-wide square anchored so the mask grows ceil((g-1)/2) px up and left.
        padding = math.ceil((grow_mask_by - 1) / 2)
        grown = F.max_pool2d(mask[:, None], grow_mask_by, stride=1, padding=padding)[:, 0, :height, :width]
        mask = grown
    return pixels.contiguous(), mask.contiguous()
