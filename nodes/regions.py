"""Conditioning entries with areas, masks and timestep ranges: where each applies and how predictions combine.

As ComfyUI's ``calc_cond_batch`` does it: at each step every entry active at that step's timestep
predicts on its own region of the latent; the predictions are summed weighted by each entry's
``strength`` times its mask (or, for an area without a mask, ones fading over 8 latent cells at
every edge of the area that is inside the image), and divided by the sum of the weights. Where no
entry applies the prediction is 0. Areas resolve to latent cells once, before the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gouache.engine import InputError
from gouache.nodes.types import Conditioning

FEATHER_CELLS = 8
"""How many latent cells an area's weight takes to rise from 1/8 to 1 at an edge inside the image."""
MIN_BOUNDS_CELLS = 8
"""The smallest side of a mask's bounding box (``mask_bounds``), in latent cells, as ComfyUI uses."""


@dataclass(frozen=True, eq=False)
class Region:
    """One entry resolved on a latent: the box it predicts on (latent cells) and its weights there."""

    entry: Conditioning
    top: int
    left: int
    bottom: int
    right: int
    weight: Any
    """[B or 1, 1, bottom - top, right - left] float32 weights."""


def resolve(cond: Conditioning, name: str, latent_shape: tuple[int, ...], scale: int, device: Any) -> list[Region]:
    """The regions of every entry of ``cond`` on a latent of ``latent_shape`` ([B, C, h, w]); ``scale``
    is the VAE's pixels per latent cell. An area reaching outside the image fails naming ``name``."""
    import torch

    _, _, height, width = latent_shape
    regions = []
    for entry in cond.entries():
        top, left, bottom, right = 0, 0, height, width
        if entry.area is not None:
            top, left, bottom, right = _area_cells(entry.area, name, height, width, scale)
        mask = None
        if entry.mask is not None:
            mask = entry.mask.to(device=device, dtype=torch.float32)
            mask = mask.reshape(-1, 1, *mask.shape[-2:])
            if mask.shape[-2:] != (height, width):
                mask = torch.nn.functional.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
            if entry.mask_bounds:
                top, left, bottom, right = _bounds(mask, height, width)
            weight = mask[..., top:bottom, left:right] * entry.mask_strength * entry.strength
        else:
            weight = torch.full((1, 1, bottom - top, right - left), float(entry.strength), device=device)
            if entry.area is not None:
                weight = weight * _feather(top, left, bottom, right, height, width, device)
        regions.append(Region(entry, top, left, bottom, right, weight))
    return regions


def matching_areas(sources: list[Region], targets: list[Region]) -> list[Region]:
    """For each area of ``sources`` that no ``targets`` entry has, a copy of the smallest ``targets`` entry
    containing it, moved onto that area with the source's weights (ComfyUI's
    ``create_cond_with_same_area_if_none``): the other side of the guidance is then weighed alike there."""
    from dataclasses import replace

    added = []
    for source in sources:
        if not _has_area(source.entry):
            continue
        box = (source.top, source.left, source.bottom, source.right)
        smallest = None
        for target in targets:
            if not _has_area(target.entry):
                smallest = smallest or target
            elif (target.top <= box[0] and target.left <= box[1] and target.bottom >= box[2]
                  and target.right >= box[3]) and (smallest is None or not _has_area(smallest.entry)
                                                   or _cells(target) < _cells(smallest)):
                smallest = target
        if smallest is None or (_has_area(smallest.entry) and
                                (smallest.top, smallest.left, smallest.bottom, smallest.right) == box):
            continue
        entry = replace(source.entry, embeds=smallest.entry.embeds, pooled=smallest.entry.pooled,
                        size=smallest.entry.size, text=smallest.entry.text)
        added.append(Region(entry, *box, source.weight))
    return added


def _has_area(entry: Conditioning) -> bool:
    return entry.area is not None or (entry.mask is not None and entry.mask_bounds)


def _cells(region: Region) -> int:
    return (region.bottom - region.top) * (region.right - region.left)


def _area_cells(area: tuple[str, float, float, float, float], name: str, height: int, width: int,
                scale: int) -> tuple[int, int, int, int]:
    unit, x, y, w, h = area
    if unit == "fraction":
        top, left = round(y * height), round(x * width)
        rows, cols = max(1, round(h * height)), max(1, round(w * width))
    else:
        top, left, rows, cols = int(y) // scale, int(x) // scale, max(1, int(h) // scale), max(1, int(w) // scale)
    if top + rows > height or left + cols > width:
        raise InputError(name, f"an area of {w:g} x {h:g} at ({x:g}, {y:g}) {'of the image' if unit == 'fraction' else 'px'} "
                               f"reaches outside the {width * scale} x {height * scale} px image; make it fit",
                         "outside_image")
    return top, left, top + rows, left + cols


def _bounds(mask: Any, height: int, width: int) -> tuple[int, int, int, int]:
    """The bounding box of the mask's non-zero cells over the batch, at least 8 cells a side."""
    import torch

    rows, cols = torch.where(mask.abs().amax(dim=(0, 1)) > 0)
    if len(rows) == 0:
        return 0, 0, min(MIN_BOUNDS_CELLS, height), min(MIN_BOUNDS_CELLS, width)
    top, left = int(rows.min()), int(cols.min())
    bottom = min(max(int(rows.max()) + 1, top + MIN_BOUNDS_CELLS), height)
    right = min(max(int(cols.max()) + 1, left + MIN_BOUNDS_CELLS), width)
    return top, left, bottom, right


def _feather(top: int, left: int, bottom: int, right: int, height: int, width: int, device: Any) -> Any:
    """Weights fading toward each edge of the area that lies inside the image (ComfyUI's ``rr = 8``)."""
    import torch

    rows, cols = torch.ones(bottom - top, device=device), torch.ones(right - left, device=device)
    ramp = torch.arange(1, FEATHER_CELLS + 1, device=device, dtype=torch.float32) / FEATHER_CELLS
    for line, start, end, size in ((rows, top, bottom, height), (cols, left, right, width)):
        count = min(FEATHER_CELLS, len(line))
        if start > 0:
            line[:count] *= ramp[:count]
        if end < size:
            line[len(line) - count:] *= ramp[:count].flip(0)
    return (rows[:, None] * cols[None, :])[None, None]


def active(entry: Conditioning, timestep: float, train_steps: int) -> bool:
    """Whether ``entry``'s timestep range holds ``timestep`` (0 .. train_steps - 1; the schedule runs down)."""
    start, end = entry.timestep_range
    last = train_steps - 1
    return (1.0 - end) * last <= float(timestep) <= (1.0 - start) * last


def combine(regions: list[Region], latents: Any, timestep: float, train_steps: int,
            predict: Callable[[Conditioning, Any, tuple[int, int]], Any]) -> Any:
    """The weighted average of the active regions' predictions over ``latents`` [B, C, h, w].

    ``predict(entry, crop, (rows, cols))`` runs the model on a crop of the (scaled) latents.
    """
    import torch

    total = torch.zeros_like(latents)
    count = torch.full_like(latents, 1e-37)
    for region in regions:
        if not active(region.entry, timestep, train_steps):
            continue
        box = (..., slice(region.top, region.bottom), slice(region.left, region.right))
        crop = latents[box]
        prediction = predict(region.entry, crop, (region.bottom - region.top, region.right - region.left))
        total[box] += prediction * region.weight
        count[box] += region.weight.expand_as(prediction)
    return total / count


def check_area(x: float, y: float, width: float, height: float) -> list[InputError]:
    """Why a fraction box does not lie inside the image: one problem per side that reaches past it."""
    problems = []
    if x + width > 1.0 + 1e-9:
        problems.append(InputError("width", f"x + width is {x + width:g}, past the image's right edge (1); make "
                                            "them add up to at most 1", "outside_image"))
    if y + height > 1.0 + 1e-9:
        problems.append(InputError("height", f"y + height is {y + height:g}, past the image's bottom edge (1); "
                                             "make them add up to at most 1", "outside_image"))
    return problems
