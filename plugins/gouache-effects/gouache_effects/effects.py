"""The image operations behind the nodes: pure functions on IMAGE tensors.

An IMAGE is a float32 tensor ``[batch, height, width, channels]`` with values in 0..1. Every
function returns a new tensor and leaves its argument as it was.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

# Rec. 709 luma weights: the brightness a saturation change keeps.
LUMA = (0.2126, 0.7152, 0.0722)
HEX_COLOR = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_color(text: str) -> tuple[float, float, float]:
    """``"#ff8000"`` -> ``(1.0, 0.502, 0.0)``; a ValueError that shows the expected form otherwise."""
    match = HEX_COLOR.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a colour; write it as #rrggbb, e.g. #ff8000")
    digits = match.group(1)
    return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def parse_palette(text: str) -> list[tuple[float, float, float]]:
    """A palette written as hex colours separated by commas or spaces (``"#000000, #ffffff"``)."""
    return [parse_color(part) for part in re.split(r"[\s,]+", text.strip()) if part]


def _channels_first(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2)


def _channels_last(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 2, 3, 1).contiguous()


def pixelate(image: torch.Tensor, block: int) -> torch.Tensor:
    """Replace each ``block`` x ``block`` cell by its mean colour (edge cells are averaged too)."""
    if block <= 1:
        return image.clone()
    batch, height, width, _ = image.shape
    pad_h, pad_w = -height % block, -width % block
    x = _channels_first(image)
    # Replicated padding keeps partial edge cells from being darkened by zeros.
    x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
    cells = F.avg_pool2d(x, block)
    x = cells.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    return _channels_last(x[:, :, :height, :width])


def _sample(pixels: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` pixels, evenly strided (deterministic, unlike a random sample)."""
    step = max(1, pixels.shape[0] // limit)
    return pixels[::step]


def kmeans_palette(pixels: torch.Tensor, colors: int, iterations: int = 12) -> torch.Tensor:
    """``colors`` representative colours of ``pixels`` ``[N, 3]`` by k-means from luma quantiles."""
    sample = _sample(pixels, 16384)
    luma = sample @ sample.new_tensor(LUMA)
    order = torch.argsort(luma, stable=True)
    picks = torch.linspace(0, sample.shape[0] - 1, colors, device=sample.device).round().long()
    centres = sample[order[picks]].clone()
    for _ in range(iterations):
        nearest = torch.cdist(sample, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, sample)
        counts = torch.bincount(nearest, minlength=colors).unsqueeze(1).to(sample.dtype)
        # An empty cluster keeps its centre rather than collapsing to black.
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


def bayer_matrix(size: int = 8) -> torch.Tensor:
    """The ordered-dithering threshold map, values centred on 0 in -0.5..0.5."""
    matrix = torch.zeros(1, 1)
    while matrix.shape[0] < size:
        matrix = torch.cat([torch.cat([4 * matrix, 4 * matrix + 2], 1),
                            torch.cat([4 * matrix + 3, 4 * matrix + 1], 1)], 0)
    return (matrix + 0.5) / matrix.numel() - 0.5


def quantize(image: torch.Tensor, colors: int, dither: bool = False,
             palette: list[tuple[float, float, float]] | None = None) -> torch.Tensor:
    """Map every pixel to the nearest of ``colors`` colours found per image (or of ``palette``).

    ``dither`` adds an ordered (Bayer 8x8) offset first, so gradients become patterns of the
    neighbouring palette colours instead of bands; it is deterministic.
    """
    results = []
    rgb, rest = image[..., :3], image[..., 3:]
    fixed = rgb.new_tensor(palette) if palette else None
    for frame in rgb:
        pixels = frame.reshape(-1, 3)
        centres = fixed if fixed is not None else kmeans_palette(pixels, colors)
        source = frame
        if dither:
            height, width, _ = frame.shape
            threshold = bayer_matrix(8).to(frame)
            tiled = threshold.repeat(height // 8 + 1, width // 8 + 1)[:height, :width, None]
            spread = 1.0 / max(1.0, centres.shape[0] ** (1 / 3))
            source = frame + tiled * spread
        nearest = torch.cdist(source.reshape(-1, 3), centres).argmin(dim=1)
        results.append(centres[nearest].reshape(frame.shape))
    return torch.cat([torch.stack(results), rest], dim=-1)


def film_grain(image: torch.Tensor, amount: float, size: float, seed: int, monochrome: bool) -> torch.Tensor:
    """Add seeded Gaussian grain, strongest in the midtones as on film; same seed, same grain."""
    batch, height, width, channels = image.shape
    generator = torch.Generator(device="cpu").manual_seed(seed)
    grain_h, grain_w = max(1, round(height / size)), max(1, round(width / size))
    noise_channels = 1 if monochrome else min(channels, 3)
    noise = torch.randn(batch, noise_channels, grain_h, grain_w, generator=generator)
    if (grain_h, grain_w) != (height, width):
        noise = F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)
    noise = _channels_last(noise).to(image)
    rgb = image[..., :3]
    midtones = 4 * rgb * (1 - rgb)
    grained = (rgb + amount * noise * (0.25 + 0.75 * midtones)).clamp(0, 1)
    return torch.cat([grained, image[..., 3:]], dim=-1)


def color_grade(image: torch.Tensor, lift: float, gamma: float, gain: float, temperature: float,
                tint: tuple[float, float, float], saturation: float) -> torch.Tensor:
    """Lift/gamma/gain, then white balance (temperature), a colour multiply (tint) and saturation."""
    rgb = image[..., :3]
    x = (gain * (rgb + lift * (1 - rgb))).clamp(0, 1)
    x = x ** (1 / gamma)
    warm = x.new_tensor((1 + 0.2 * temperature, 1.0, 1 - 0.2 * temperature))
    x = x * warm * x.new_tensor(tint)
    luma = (x * x.new_tensor(LUMA)).sum(dim=-1, keepdim=True)
    x = (luma + saturation * (x - luma)).clamp(0, 1)
    return torch.cat([x, image[..., 3:]], dim=-1)


def test_pattern(width: int, height: int) -> torch.Tensor:
    """A 1-image batch: a hue sweep left to right, darker towards the bottom, a grey disc in the middle."""
    ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    xs = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    hue = xs * 6
    channels = [((hue - offset) % 6 - 3).abs().sub(1).clamp(0, 1) for offset in (0, 2, 4)]
    rgb = torch.stack(channels, dim=-1) * (1 - 0.7 * ys).unsqueeze(-1)
    radius = 0.25 * min(width, height)
    disc = ((xs * (width - 1) - width / 2) ** 2 + (ys * (height - 1) - height / 2) ** 2) <= radius**2
    rgb = torch.where(disc.unsqueeze(-1), torch.full_like(rgb, 0.5), rgb)
    return rgb.unsqueeze(0).to(torch.float32).contiguous()
