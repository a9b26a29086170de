"""VAE encode and decode in overlapping tiles, so a large image needs only one tile's worth of device memory.

Tiles are laid on the latent grid (one cell = the VAE's factor in pixels), decoded or encoded one at a
time with :func:`gouache.nodes.latent.decode` / :func:`~gouache.nodes.latent.encode`, and blended into a
CPU accumulator with weights that ramp linearly across each overlap. A tiled result is not bit-equal to
the whole-image one: the VAE's GroupNorm layers normalise each tile by its own statistics and its
mid-block attention sees only the tile, so a tile's colours drift a little from the whole image's; the
ramps hide the seams that drift would leave (``docs/builtin-nodes.md`` gives the figures measured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gouache.engine import InputError


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` cells overlapping by ``overlap`` start along a side of ``size`` cells.

    The last tile ends at the border, so every tile has the full size (when the side allows it).
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, before: bool, after: bool) -> Any:
    """1-D blending weights of one tile: rising over ``overlap`` where a neighbour comes before, falling where one follows."""
    import torch

    weights = torch.ones(length)
    if overlap <= 0:
        return weights
    rising = (torch.arange(min(overlap, length), dtype=torch.float32) + 0.5) / overlap
    if before:
        weights[: rising.numel()] = torch.minimum(weights[: rising.numel()], rising)
    if after:
        weights[length - rising.numel():] = torch.minimum(weights[length - rising.numel():], rising.flip(0))
    return weights


def tiled(grid: tuple[int, int], tile: int, overlap: int, out_unit: int,
          run_tile: Callable[[int, int, int, int], Any], check_interrupt: Callable[[], None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> Any:
    """Blend ``run_tile(top, left, height, width)`` over a grid of ``grid`` = (rows, cols) cells.

    ``run_tile`` gets a tile in cells and returns a [B,H,W,C] tensor of ``out_unit`` elements per cell;
    the blended result covers the whole grid. Only the accumulator and one tile are held at a time.
    """
    import torch

    rows, cols = grid
    tops, lefts = tile_starts(rows, tile, overlap), tile_starts(cols, tile, overlap)
    total = len(tops) * len(lefts)
    result = weight_sum = None
    done = 0
    for top in tops:
        height = min(tile, rows)
        row_weights = _ramp(height * out_unit, overlap * out_unit, top > 0, top + height < rows)
        for left in lefts:
            if check_interrupt is not None:
                check_interrupt()
            width = min(tile, cols)
            out = run_tile(top, left, height, width).float()
            col_weights = _ramp(width * out_unit, overlap * out_unit, left > 0, left + width < cols)
            weights = (row_weights[:, None] * col_weights[None, :])[None, :, :, None]
            if result is None:
                result = torch.zeros(out.shape[0], rows * out_unit, cols * out_unit, out.shape[-1])
                weight_sum = torch.zeros(1, rows * out_unit, cols * out_unit, 1)
            ys = slice(top * out_unit, (top + height) * out_unit)
            xs = slice(left * out_unit, (left + width) * out_unit)
            result[:, ys, xs] += out * weights
            weight_sum[:, ys, xs] += weights
            done += 1
            if progress is not None:
                progress(done, total)
    return result / weight_sum


def _cells(tile_size: int, overlap: int, factor: int) -> tuple[int, int]:
    """Tile size and overlap in latent cells; an overlap of a whole tile or more is refused."""
    tile = max(1, tile_size // factor)
    cells = overlap // factor
    if cells >= tile:
        raise InputError("overlap", f"{overlap} px is not below the tile size {tile_size} px; lower it", "overlap_too_large")
    return tile, cells


def decode_tiled(manager: Any, loaded: Any, latent: dict[str, Any], tile_size: int, overlap: int,
                 check_interrupt: Callable[[], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Any:
    """IMAGE [B,H,W,3] from a LATENT, decoded ``tile_size`` pixels at a time with ``overlap`` pixels blended."""
    from gouache.nodes.latent import decode, vae_scale_factor

    factor = vae_scale_factor(loaded.vae)
    tile, cells = _cells(tile_size, overlap, factor)
    samples = latent["samples"]

    def run_tile(top: int, left: int, height: int, width: int) -> Any:
        part = samples[:, :, top:top + height, left:left + width]
        return decode(manager, loaded, {"samples": part}, check_interrupt)

    image = tiled(tuple(samples.shape[-2:]), tile, cells, factor, run_tile, check_interrupt, progress)
    return image.clamp(0, 1).contiguous()


def encode_tiled(manager: Any, loaded: Any, image: Any, tile_size: int, overlap: int,
                 check_interrupt: Callable[[], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """A LATENT from an IMAGE, encoded ``tile_size`` pixels at a time with ``overlap`` pixels blended.

    Sides that are not multiples of the VAE's factor are cropped, as :func:`gouache.nodes.latent.encode` does.
    """
    from gouache.nodes.latent import encode, vae_scale_factor

    if not hasattr(image, "shape") or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError("image", f"expected an IMAGE tensor [B,H,W,C], got {getattr(image, 'shape', type(image))}",
                         "wrong_shape")
    factor = vae_scale_factor(loaded.vae)
    tile, cells = _cells(tile_size, overlap, factor)
    grid = (image.shape[1] // factor, image.shape[2] // factor)
    if 0 in grid:
        raise InputError("image", f"{image.shape[2]}x{image.shape[1]} is smaller than one latent cell ({factor} px)",
                         "too_small")

    def run_tile(top: int, left: int, height: int, width: int) -> Any:
        part = image[:, top * factor:(top + height) * factor, left * factor:(left + width) * factor]
        return encode(manager, loaded, part, check_interrupt)["samples"].movedim(1, -1)

    samples = tiled(grid, tile, cells, 1, run_tile, check_interrupt, progress)
    return {"samples": samples.movedim(-1, 1).contiguous()}
