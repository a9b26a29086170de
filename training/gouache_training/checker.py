"""Read back what an image shows: background colour, shape colour, shape class, size and position.

Used to score generated images against their prompts. It snaps pixels to the nearest palette
colour, takes the border's colour as the background, and classifies the largest region that
differs from it by fill ratio (area over bounding box) and solidity (area over convex hull).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .data import AREA_FACTOR, COLOURS, PALETTE, Scene

_PALETTE = np.array([PALETTE[c] for c in COLOURS], np.float32)
# Radius thresholds halfway between the nominal radius ranges of data.RADIUS_RANGE.
SMALL_BELOW = 20.5
LARGE_ABOVE = 31.0
# Centroid offsets from the centre beyond which a shape counts as placed off centre.
OFF_CENTRE = 13.0
MIN_AREA = 12


@dataclass(frozen=True)
class Reading:
    """What the checker saw in one image."""

    background: str
    colour: str | None
    shape: str | None
    size: str | None
    position: str | None
    area: int
    fill: float
    solidity: float
    interior_background: float  # share of the shape's inside that shows the background


def palette_labels(image: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest palette colour, per pixel."""
    px = image.astype(np.float32)[..., None, :]
    return np.argmin(((px - _PALETTE) ** 2).sum(-1), axis=-1)


def _solidity(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    # Corners of every pixel, so the hull encloses whole pixels like the area count does.
    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return 1.0
    return float(mask.sum() / hull.volume)


def classify(fill: float, solidity: float) -> str:
    """Shape class from fill ratio and solidity of a filled region."""
    if solidity < 0.75:
        return "star"
    if fill >= 0.89:
        return "square"
    if fill >= 0.64:
        return "circle"
    return "triangle"


def _border_colour(labels: np.ndarray) -> int:
    """The commonest palette label on the two-pixel border: the background."""
    border = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    return int(np.bincount(border, minlength=len(COLOURS)).argmax())


def _largest_region(labels: np.ndarray, bg: int) -> np.ndarray | None:
    """The largest connected region that is not background, or None when there is none."""
    regions, count = ndimage.label(labels != bg)
    if count == 0:
        return None
    sizes = np.bincount(regions.ravel())[1:]
    return regions == (1 + int(sizes.argmax()))


def hollowness(plain: np.ndarray, styled: np.ndarray, margin: int = 4) -> float:
    """Share of the inside of the shape in ``plain`` that shows the background in ``styled``.

    Scores a style that hollows shapes (the outline LoRA) against the same seed's plain render:
    an outline that is open or faint encloses no region the checker could read in ``styled``
    alone, yet its inside still shows the background where the plain render put the shape.
    ``margin`` pixels next to the shape's edge, where the outline itself is drawn, are left out.
    """
    labels = palette_labels(plain)
    region = _largest_region(labels, _border_colour(labels))
    if region is None:
        return 0.0
    inside = ndimage.binary_erosion(ndimage.binary_fill_holes(region), iterations=margin)
    if not inside.any():
        return 0.0
    styled_labels = palette_labels(styled)
    return float((styled_labels[inside] == _border_colour(styled_labels)).mean())


def centroid(image: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centre in pixels of the largest non-background region (holes filled), or None when there is none."""
    labels = palette_labels(image)
    region = _largest_region(labels, _border_colour(labels))
    if region is None or region.sum() < MIN_AREA:
        return None
    ys, xs = np.nonzero(ndimage.binary_fill_holes(region))
    return float(xs.mean()), float(ys.mean())


def read(image: np.ndarray) -> Reading:
    """Read an RGB uint8 (H, W, 3) image."""
    labels = palette_labels(image)
    bg = _border_colour(labels)
    region = _largest_region(labels, bg)
    if region is None:
        return Reading(COLOURS[bg], None, None, None, None, 0, 0.0, 0.0, 1.0)
    if region.sum() < MIN_AREA:
        return Reading(COLOURS[bg], None, None, None, None, int(region.sum()), 0.0, 0.0, 1.0)
    # The colour is the commonest label inside the region, away from blended edge pixels.
    core = ndimage.binary_erosion(region)
    votes = labels[core if core.any() else region]
    colour = int(np.bincount(votes, minlength=len(COLOURS)).argmax())
    filled = ndimage.binary_fill_holes(region)
    area = int(filled.sum())
    ys, xs = np.nonzero(filled)
    fill = area / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    solidity = _solidity(filled)
    shape = classify(fill, solidity)
    radius = float(np.sqrt(area / AREA_FACTOR[shape]))
    size = "small" if radius < SMALL_BELOW else "large" if radius > LARGE_ABOVE else None
    h, w = labels.shape
    dx, dy = xs.mean() - (w - 1) / 2, ys.mean() - (h - 1) / 2
    position = None
    if max(abs(dx), abs(dy)) > OFF_CENTRE:
        position = ("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("top" if dy < 0 else "bottom")
    inside = ndimage.binary_erosion(filled, iterations=5)
    interior = float((labels[inside] == bg).mean()) if inside.any() else 0.0
    return Reading(COLOURS[bg], COLOURS[colour], shape, size, position, area, fill, solidity, interior)


def fully_right(reading: Reading, scene: Scene) -> bool:
    """Shape colour, background colour and shape class all match the scene."""
    return (reading.colour, reading.shape, reading.background) == scene.triple
