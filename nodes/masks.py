"""Mask arithmetic: shape checks, growing and shrinking, feathering, combining, cropping, blurring.

MASK values are float32 [B,H,W] in 0..1 (1 = masked, repaint). Every function returns a new tensor
and leaves its arguments as they were. Problems with a value raise ``InputError`` naming the input,
so the node that called the function fails pointing at it.
"""

from __future__ import annotations

from typing import Any

from gouache.engine import InputError

"""Largest side, in pixels, a size or offset input accepts (the value ``gouache.nodes.pack`` uses)."""
CHANNELS = ("red", "green", "blue", "alpha")
OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


def as_mask(value: Any, name: str) -> Any:
    """``value`` as a float MASK [B,H,W]; a single [H,W] mask gains a batch of one."""
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) not in (2, 3) or 0 in shape:
        raise InputError(name, f"expected a MASK tensor [B,H,W], got {shape if shape is not None else type(value).__name__}",
                         "wrong_shape")
    return (value if value.ndim == 3 else value.unsqueeze(0)).float()


def as_image(value: Any, name: str) -> Any:
    """``value`` checked to be an IMAGE [B,H,W,C] with 1, 3 or 4 channels."""
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4) or 0 in shape:
        raise InputError(name, f"expected an IMAGE tensor [B,H,W,C], got {shape if shape is not None else type(value).__name__}",
                         "wrong_shape")
    return value


def fit_batch(mask: Any, batch: int, name: str) -> Any:
    """``mask`` [B,H,W] for a batch of ``batch``: a single mask serves every item, otherwise the sizes must agree."""
    if mask.shape[0] == batch:
        return mask
    if mask.shape[0] == 1:
        return mask.expand(batch, -1, -1)
    raise InputError(name, f"has {mask.shape[0]} masks for a batch of {batch}; give one mask or one per item",
                     "batch_mismatch")


def same_size(mask: Any, height: int, width: int, name: str, of: str) -> None:
    """Refuse a mask whose size is not ``width`` x ``height`` (the size of ``of``)."""
    if tuple(mask.shape[-2:]) != (height, width):
        raise InputError(name, f"is {mask.shape[-1]}x{mask.shape[-2]} but {of} is {width}x{height}; scale the mask "
                               "(MaskToImage, ImageScale, ImageToMask) or crop it to that size", "size_mismatch")


def image_to_mask(image: Any, channel: str) -> Any:
    """One channel of an IMAGE as a MASK, values as they are (ComfyUI's ImageToMask)."""
    index = CHANNELS.index(channel)
    if index >= image.shape[-1]:
        raise InputError("channel", f"the image has {image.shape[-1]} channel(s) and no {channel}; "
                                    f"choose one of {', '.join(CHANNELS[:image.shape[-1]])}", "no_such_channel")
    return image[..., index].float().clone()


def mask_to_image(mask: Any) -> Any:
    """A grey IMAGE [B,H,W,3] showing the mask (white = masked)."""
    return mask.unsqueeze(-1).expand(-1, -1, -1, 3).float().contiguous()


def grow(mask: Any, pixels: int, tapered: bool) -> Any:
    """Grow (``pixels`` > 0) or shrink (< 0) the mask, as ComfyUI's GrowMask does.

    Each pixel step takes the maximum (minimum to shrink) over a 3x3 square, or over a cross when
    ``tapered``, so tapered corners round off; values outside the image do not count.
    """
    import torch
    import torch.nn.functional as F

    if pixels == 0:
        return mask.clone()
    sign = 1.0 if pixels > 0 else -1.0
    out = mask.unsqueeze(1) * sign  # shrinking is growing the negated mask
    steps = abs(pixels)
    if not tapered:
        # k square steps are one (2k+1) square; max_pool pads with -inf, so the border does not count.
        for done in range(0, steps, 64):  # pooling windows of at most 129 px keep the kernel cheap
            radius = min(64, steps - done)
            out = F.max_pool2d(out, 2 * radius + 1, stride=1, padding=radius)
    else:
        for _ in range(steps):
            padded = F.pad(out, (1, 1, 1, 1), value=float("-inf"))
            out = torch.stack([out, padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                               padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]).amax(0)
    return (out * sign).squeeze(1)


def feather(mask: Any, left: int, top: int, right: int, bottom: int) -> Any:
    """Fade the mask linearly to 0 over ``left``/``top``/``right``/``bottom`` pixels from each edge (ComfyUI's FeatherMask)."""
    import torch

    height, width = mask.shape[-2:]

    def ramp(length: int, start: int, end: int) -> Any:
        position = torch.arange(length, dtype=torch.float32)
        weights = torch.ones(length)
        if start > 0:
            weights = torch.minimum(weights, (position + 1) / start)
        if end > 0:
            weights = torch.minimum(weights, (length - position) / end)
        return weights.clamp(0, 1)

    return mask * ramp(height, top, bottom)[:, None] * ramp(width, left, right)[None, :]


def threshold(mask: Any, value: float) -> Any:
    """1 where the mask is above ``value``, else 0."""
    return (mask > value).float()


def place(destination_shape: tuple[int, int], source_shape: tuple[int, int], x: int, y: int) -> tuple[slice, slice, slice, slice]:
    """Where a source of ``source_shape`` (h, w) lands on a destination at x/y: destination and source slices.

    The offset must fall inside the destination (``InputError`` on ``x`` or ``y`` otherwise); a source
    reaching past the right or bottom edge is cut there.
    """
    height, width = destination_shape
    if x >= width:
        raise InputError("x", f"{x} is outside the destination, which is {width} px wide", "outside_image")
    if y >= height:
        raise InputError("y", f"{y} is outside the destination, which is {height} px high", "outside_image")
    h, w = min(source_shape[0], height - y), min(source_shape[1], width - x)
    return slice(y, y + h), slice(x, x + w), slice(0, h), slice(0, w)


def combine(destination: Any, source: Any, x: int, y: int, operation: str) -> Any:
    """``source`` combined into ``destination`` at x/y by ``operation``, clamped to 0..1 (ComfyUI's MaskComposite)."""
    import torch

    if operation not in OPERATIONS:
        raise InputError("operation", f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}",
                         "not_a_choice")
    batch = max(destination.shape[0], source.shape[0])
    out = fit_batch(destination, batch, "destination").clone()
    source = fit_batch(source, batch, "source")
    dy, dx, sy, sx = place(tuple(out.shape[-2:]), tuple(source.shape[-2:]), x, y)
    below, above = out[:, dy, dx], source[:, sy, sx]
    if operation == "multiply":
        result = below * above
    elif operation == "add":
        result = below + above
    elif operation == "subtract":
        result = below - above
    else:
        below_set, above_set = below.round().bool(), above.round().bool()
        logic = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation]
        result = logic(below_set, above_set).float()
    out[:, dy, dx] = result.clamp(0, 1)
    return out


def crop_box(height: int, width: int, x: int, y: int, crop_width: int, crop_height: int) -> tuple[slice, slice]:
    """The rows and columns of a crop box, which must lie wholly inside an image of ``width`` x ``height``."""
    if x >= width:
        raise InputError("x", f"{x} is outside the image, which is {width} px wide", "outside_image")
    if y >= height:
        raise InputError("y", f"{y} is outside the image, which is {height} px high", "outside_image")
    if x + crop_width > width:
        raise InputError("width", f"{crop_width} px from x={x} reaches past the image's {width} px; "
                                  f"use at most {width - x}", "outside_image")
    if y + crop_height > height:
        raise InputError("height", f"{crop_height} px from y={y} reaches past the image's {height} px; "
                                   f"use at most {height - y}", "outside_image")
    return slice(y, y + crop_height), slice(x, x + crop_width)


def gaussian_blur(planes: Any, radius: int, sigma: float) -> Any:
    """Blur [N,C,H,W] with a (2*radius+1)-wide Gaussian of ``sigma``; borders are reflected (ComfyUI's ImageBlur)."""
    import torch
    import torch.nn.functional as F

    if radius <= 0:
        return planes.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = planes.shape[1]
    mode = "reflect" if min(planes.shape[-2:]) > radius else "replicate"
    out = F.pad(planes.float(), (radius, radius, radius, radius), mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
