"""Control-image preprocessing that needs no model file: Canny edges, written with torch ops.

The steps follow kornia's ``canny`` (which ComfyUI's Canny node calls), so thresholds carry over:
grey from RGB, a 5x5 Gaussian (sigma 1), normalised Sobel gradients, non-maximum suppression along
the gradient's direction rounded to 45 degrees, then hysteresis from the strong edges through the weak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gouache.nodes.masks import gaussian_blur


def _grey(image: Any) -> Any:
    """[B,1,H,W] luminance (ITU-R 601, as kornia's rgb_to_grayscale) of an IMAGE [B,H,W,C]."""
    import torch

    pixels = image[..., :3].float()
    if pixels.shape[-1] == 1:
        return pixels.movedim(-1, 1)
    weights = torch.tensor([0.299, 0.587, 0.114])
    return (pixels * weights).sum(-1, keepdim=True).movedim(-1, 1)


def canny(image: Any, low: float, high: float, check_interrupt: Callable[[], None] | None = None) -> Any:
    """Canny edges of an IMAGE as a MASK [B,H,W]: 1 on an edge, else 0.

    ``low`` and ``high`` are thresholds on the gradient magnitude of the 0..1 image (a sharp black to
    white step gives about 0.5 after the normalised Sobel): pixels above ``high`` are edges, pixels
    above ``low`` are edges when connected to one.
    """
    import math

    import torch
    import torch.nn.functional as F

    grey = gaussian_blur(_grey(image), 2, 1.0)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel.t().contiguous().view(1, 1, 3, 3))
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)

    # Non-maximum suppression: keep a pixel only where it beats both neighbours along its gradient.
    angle = torch.atan2(gy, gx)
    sector = (torch.round(angle / (math.pi / 4)) % 4).long()  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
    around = F.pad(magnitude, (1, 1, 1, 1))
    height, width = magnitude.shape[-2:]

    def shifted(dy: int, dx: int) -> Any:
        return around[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]

    pairs = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for index, (ahead, behind) in enumerate(pairs):
        local_max = (magnitude > shifted(*ahead)) & (magnitude >= shifted(*behind))
        keep |= (sector == index) & local_max
    thin = magnitude * keep

    strong = thin > high
    weak = thin > low
    # Hysteresis: grow the strong edges through 8-connected weak pixels until nothing changes.
    edges = strong.float()
    while True:
        if check_interrupt is not None:
            check_interrupt()
        grown = F.max_pool2d(edges, 3, stride=1, padding=1) * weak
        grown = torch.maximum(grown, edges)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.squeeze(1)
