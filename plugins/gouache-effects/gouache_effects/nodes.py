"""The node types of the effects pack. Each wraps one function of :mod:`gouache_effects.effects`.

Declarations import no torch: ``effects`` (and torch with it) is imported when a node first runs,
so listing nodes and validating workflows stay fast.
"""

from __future__ import annotations

from typing import Any

from gouache.engine import Input, Node, Output, RunContext

CATEGORY = "image/effects"
COLOR_WIDGET = "gouache-effects.color"
"""The colour picker this pack's web extension adds to the editor (``web/effects.js``)."""


def _image_in(**options: Any) -> Input:
    return Input("image", "IMAGE", link="wire", **options)


IMAGE_OUT = [Output("image", "IMAGE")]


class TestPattern(Node):
    """A test image: a hue sweep, darker towards the bottom, with a grey disc in the middle."""

    __test__ = False  # not a pytest test class, despite its name
    type_name = "TestPattern"
    category = CATEGORY
    inputs = [Input("width", "INT", default=256, min=8, max=4096, step=8),
              Input("height", "INT", default=256, min=8, max=4096, step=8)]
    outputs = IMAGE_OUT

    def run(self, ctx: RunContext, width: int, height: int) -> dict[str, Any]:
        from gouache_effects import effects

        return {"image": effects.test_pattern(width, height)}


class Pixelate(Node):
    """Pixelate: each block of pixels becomes its mean colour."""

    type_name = "Pixelate"
    category = CATEGORY
    inputs = [_image_in(), Input("block_size", "INT", default=8, min=1, max=512, step=1,
                                 description="side of each square cell, in pixels")]
    outputs = IMAGE_OUT

    def run(self, ctx: RunContext, image, block_size: int) -> dict[str, Any]:
        from gouache_effects import effects

        return {"image": effects.pixelate(image, block_size)}


class PaletteQuantize(Node):
    """Reduce each image to a few colours: its own best palette (k-means) or a palette you give."""

    type_name = "PaletteQuantize"
    category = CATEGORY
    inputs = [
        _image_in(),
        Input("colors", "INT", default=8, min=2, max=256, step=1, description="palette size when none is given"),
        Input("dither", "BOOLEAN", default=False, description="ordered (Bayer) dithering instead of bands"),
        Input("palette", "STRING", default="", optional=True,
              description="fixed palette, hex colours separated by commas (e.g. #000000, #ffffff); empty: find one"),
    ]
    outputs = IMAGE_OUT

    def run(self, ctx: RunContext, image, colors: int, dither: bool, palette: str | None) -> dict[str, Any]:
        from gouache_effects import effects

        fixed = effects.parse_palette(palette) if palette else None
        return {"image": effects.quantize(image, colors, dither, fixed)}


class FilmGrain(Node):
    """Add film grain: seeded, so the same seed gives the same grain every time."""

    type_name = "FilmGrain"
    category = CATEGORY
    inputs = [
        _image_in(),
        Input("amount", "FLOAT", default=0.08, min=0.0, max=1.0, step=0.01),
        Input("size", "FLOAT", default=1.5, min=1.0, max=16.0, step=0.1, description="grain size in pixels"),
        Input("seed", "INT", default=0, min=0, max=2**32 - 1, seed=True),
        Input("monochrome", "BOOLEAN", default=True, description="the same grain on every channel"),
    ]
    outputs = IMAGE_OUT

    def run(self, ctx: RunContext, image, amount: float, size: float, seed: int, monochrome: bool) -> dict[str, Any]:
        from gouache_effects import effects

        return {"image": effects.film_grain(image, amount, size, seed, monochrome)}


class ColorGrade(Node):
    """Grade colours: lift, gamma and gain, then temperature, a tint colour and saturation."""

    type_name = "ColorGrade"
    category = CATEGORY
    inputs = [
        _image_in(),
        Input("lift", "FLOAT", default=0.0, min=-1.0, max=1.0, step=0.01, description="raise (or lower) the blacks"),
        Input("gamma", "FLOAT", default=1.0, min=0.1, max=10.0, step=0.01, description="above 1 brightens midtones"),
        Input("gain", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01, description="scale the whites"),
        Input("temperature", "FLOAT", default=0.0, min=-1.0, max=1.0, step=0.01, description="warmer above 0, cooler below"),
        Input("tint", "STRING", default="#ffffff", link="widget", widget=COLOR_WIDGET,
              description="multiply by this colour (#rrggbb); white leaves the image as it is"),
        Input("saturation", "FLOAT", default=1.0, min=0.0, max=4.0, step=0.01, description="0 is grey, 1 unchanged"),
    ]
    outputs = IMAGE_OUT

    def run(self, ctx: RunContext, image, lift: float, gamma: float, gain: float, temperature: float,
            tint: str, saturation: float) -> dict[str, Any]:
        from gouache_effects import effects

        graded = effects.color_grade(image, lift, gamma, gain, temperature, effects.parse_color(tint), saturation)
        return {"image": graded}


NODES = [TestPattern, Pixelate, PaletteQuantize, FilmGrain, ColorGrade]
