"""The image operations: shapes, value ranges, determinism, and that inputs are never changed."""

from __future__ import annotations

import sys
from pathlib import Path

# Importable from the source tree whether or not the pack is installed. (No conftest.py here: other
# test folders import helpers with `from conftest import ...`, which a second conftest would break.)
PACK_ROOT = Path(__file__).resolve().parents[1]
if str(PACK_ROOT) not in sys.path:
    sys.path.insert(0, str(PACK_ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

from gouache_effects import effects  # noqa: E402


@pytest.fixture
def image() -> torch.Tensor:
    """A 2-image batch, 37 x 53 (sizes no block divides), RGB in 0..1, different per image."""
    generator = torch.Generator().manual_seed(7)
    return torch.rand(2, 37, 53, 3, generator=generator)


def unchanged(operation, image, *args):
    """Run ``operation`` and check it left ``image`` exactly as it was."""
    before = image.clone()
    result = operation(image, *args)
    assert torch.equal(image, before), "the input image was modified"
    assert result.data_ptr() != image.data_ptr()
    assert result.shape == image.shape and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    return result


def test_pixelate_makes_uniform_blocks_of_the_mean_colour(image):
    result = unchanged(effects.pixelate, image, 8)
    block = result[0, :8, :8]
    assert torch.allclose(block, block[0, 0].expand_as(block))
    assert torch.allclose(block[0, 0], image[0, :8, :8].mean(dim=(0, 1)), atol=1e-6)
    # The partial cell at the bottom-right edge is a block too, not a darkened one.
    edge = result[0, 32:, 48:]
    assert torch.allclose(edge, edge[0, 0].expand_as(edge))
    assert torch.equal(effects.pixelate(image, 1), image)


def test_quantize_leaves_at_most_n_colours_per_image(image):
    result = unchanged(effects.quantize, image, 4)
    for frame in result:
        assert len(torch.unique(frame.reshape(-1, 3), dim=0)) <= 4
    assert torch.equal(result, effects.quantize(image, 4)), "quantizing is deterministic"


def test_quantize_with_a_fixed_palette_uses_only_its_colours(image):
    palette = effects.parse_palette("#000000, #ffffff #ff0000")
    result = unchanged(effects.quantize, image, 2, False, palette)
    colours = {tuple(round(v, 4) for v in c.tolist()) for c in torch.unique(result.reshape(-1, 3), dim=0)}
    assert colours <= {(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)}


def test_dithering_turns_a_gradient_into_a_pattern_of_neighbouring_colours():
    gradient = torch.linspace(0, 1, 64).view(1, 1, 64, 1).expand(1, 16, 64, 3).contiguous()
    palette = [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]
    banded = effects.quantize(gradient, 2, False, palette)
    dithered = unchanged(effects.quantize, gradient, 2, True, palette)
    # Without dithering the mean brightness per column jumps once; with it, it follows the ramp.
    assert len(torch.unique(banded[0, :, :, 0].mean(dim=0))) == 2
    column_means = dithered[0, :, :, 0].mean(dim=0)
    assert len(torch.unique(column_means)) > 4
    assert torch.allclose(column_means.mean(), gradient[0, 0, :, 0].mean(), atol=0.05)


def test_film_grain_is_seeded_and_deterministic(image):
    first = unchanged(effects.film_grain, image, 0.2, 1.5, 42, True)
    assert torch.equal(first, effects.film_grain(image, 0.2, 1.5, 42, True))
    assert not torch.equal(first, effects.film_grain(image, 0.2, 1.5, 43, True))
    assert torch.equal(effects.film_grain(image, 0.0, 1.0, 42, True), image)


def test_monochrome_grain_is_the_same_on_every_channel():
    grey = torch.full((1, 16, 16, 3), 0.5)
    delta = effects.film_grain(grey, 0.1, 1.0, 1, True) - grey
    assert torch.allclose(delta[..., 0], delta[..., 1]) and torch.allclose(delta[..., 1], delta[..., 2])
    colour = effects.film_grain(grey, 0.1, 1.0, 1, False) - grey
    assert not torch.allclose(colour[..., 0], colour[..., 1])


def test_neutral_colour_grade_is_the_identity(image):
    result = unchanged(effects.color_grade, image, 0.0, 1.0, 1.0, 0.0, (1.0, 1.0, 1.0), 1.0)
    assert torch.allclose(result, image, atol=1e-6)


def test_colour_grade_controls_do_what_they_say(image):
    grey = effects.color_grade(image, 0.0, 1.0, 1.0, 0.0, (1.0, 1.0, 1.0), 0.0)
    assert torch.allclose(grey[..., 0], grey[..., 1], atol=1e-6)
    warm = effects.color_grade(image, 0.0, 1.0, 1.0, 0.5, (1.0, 1.0, 1.0), 1.0)
    assert warm[..., 0].mean() > image[..., 0].mean() and warm[..., 2].mean() < image[..., 2].mean()
    brighter = effects.color_grade(image, 0.0, 2.0, 1.0, 0.0, (1.0, 1.0, 1.0), 1.0)
    assert brighter.mean() > image.mean()
    red = effects.color_grade(image, 0.0, 1.0, 1.0, 0.0, effects.parse_color("#ff0000"), 1.0)
    assert red[..., 1:].abs().max() == 0
    lifted = effects.color_grade(torch.zeros(1, 4, 4, 3), 0.25, 1.0, 1.0, 0.0, (1.0, 1.0, 1.0), 1.0)
    assert torch.allclose(lifted, torch.full_like(lifted, 0.25))


def test_an_alpha_channel_passes_through(image):
    rgba = torch.cat([image, torch.full_like(image[..., :1], 0.3)], dim=-1)
    for result in (effects.quantize(rgba, 4), effects.film_grain(rgba, 0.2, 1.0, 1, False),
                   effects.color_grade(rgba, 0.1, 1.2, 0.9, 0.3, (1.0, 0.5, 0.5), 1.5)):
        assert result.shape == rgba.shape and torch.equal(result[..., 3], rgba[..., 3])


@pytest.mark.parametrize("text", ["red", "#12345", "#gg0000", ""])
def test_a_bad_colour_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="#rrggbb"):
        effects.parse_color(text)


def test_test_pattern_is_an_image():
    pattern = effects.test_pattern(64, 48)
    assert pattern.shape == (1, 48, 64, 3) and pattern.dtype == torch.float32
    assert 0 <= pattern.min() and pattern.max() <= 1 and pattern.std() > 0.1
