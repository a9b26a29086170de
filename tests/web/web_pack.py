"""Toy nodes for the web tests: slow steps with previews, an image writer, a custom-widget input."""

from __future__ import annotations

import io
import time
from pathlib import Path

from gouache.engine import CachePolicy, Input, InputError, Node, Output, WebExtension, hookimpl


def tiny_jpeg(shade: int) -> bytes:
    """A 32x32 JPEG of one grey level."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (shade % 256, 64, 128)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


class Steps(Node):
    """Take ``steps`` steps of ``delay`` seconds, reporting progress and a preview at each."""

    type_name = "Steps"
    category = "web/test"
    cache = CachePolicy.NEVER
    inputs = [Input("x", "FLOAT", default=0.0),
              Input("steps", "INT", default=5, min=1, max=10_000),
              Input("delay", "FLOAT", default=0.05, min=0.0, max=10.0, step=0.01)]
    outputs = [Output("x", "FLOAT")]

    def run(self, ctx, x, steps, delay):
        for step in range(steps):
            time.sleep(delay)
            if ctx.wants_previews:
                ctx.preview(tiny_jpeg(step * 16))
            ctx.progress(step + 1, steps)
        return {"x": x}


class Busy(Node):
    """Spin the CPU in pure Python (holding the GIL) for ``steps`` steps of ``seconds`` each."""

    type_name = "Busy"
    category = "web/test"
    cache = CachePolicy.NEVER
    inputs = [Input("steps", "INT", default=20, min=1, max=10_000),
              Input("seconds", "FLOAT", default=0.1, min=0.0, max=10.0)]
    outputs = [Output("done", "FLOAT")]

    def run(self, ctx, steps, seconds):
        for step in range(steps):
            end = time.perf_counter() + seconds
            total = 0
            while time.perf_counter() < end:
                total += sum(range(200))
            ctx.progress(step + 1, steps)
        return {"done": float(steps)}


class Swatch(Node):
    """An output node: save a PNG of one colour in the output folder."""

    type_name = "Swatch"
    category = "web/test"
    output_node = True
    inputs = [Input("value", "FLOAT", default=0.0),
              Input("prefix", "STRING", default="swatch")]
    outputs = []

    def run(self, ctx, value, prefix):
        from PIL import Image

        folder = ctx.settings.folder("output")
        index = len(list(folder.glob(f"{prefix}_*.png")))
        path = folder / f"{prefix}_{index:05d}.png"
        shade = int(abs(value) * 10) % 256
        Image.new("RGB", (48, 48), (shade, 120, 200)).save(path)
        ctx.add_image("output", path)
        return {}


class Swatches(Node):
    """An output node that writes a batch: ``count`` PNGs, each of its own colour."""

    type_name = "Swatches"
    category = "web/test"
    output_node = True
    inputs = [Input("count", "INT", default=4, min=1, max=4)]
    outputs = []
    COLOURS = ((230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 220, 20))

    def run(self, ctx, count):
        from PIL import Image

        folder = ctx.settings.folder("output")
        for colour in self.COLOURS[:count]:
            path = folder / f"batch_{len(list(folder.glob('batch_*.png'))):05d}.png"
            Image.new("RGB", (40, 40), colour).save(path)
            ctx.add_image("output", path)
        return {}


class Dial(Node):
    """An input drawn by a custom widget from a web extension."""

    type_name = "Dial"
    category = "web/test"
    inputs = [Input("angle", "FLOAT", default=45.0, min=0, max=360, widget="dial")]
    outputs = [Output("angle", "FLOAT")]

    def run(self, ctx, angle):
        return {"angle": angle}


class Picture(Node):
    """Name an image in the input folder (the editor offers an upload button)."""

    type_name = "Picture"
    category = "web/test"
    inputs = [Input("image", "STRING", default="", upload="image")]
    outputs = [Output("name", "STRING")]

    def run(self, ctx, image):
        return {"name": image}


class Lookup(Node):
    """Look ``key`` up in a small table; an unknown key fails the run naming the input."""

    type_name = "Lookup"
    category = "web/test"
    inputs = [Input("key", "STRING", default="one")]
    outputs = [Output("value", "FLOAT")]
    TABLE = {"one": 1.0, "two": 2.0}

    def run(self, ctx, key):
        if key not in self.TABLE:
            raise InputError("key", f"no entry {key!r}; use one of {', '.join(self.TABLE)}", "unknown_key")
        return {"value": self.TABLE[key]}


NODES = [Steps, Busy, Swatch, Swatches, Dial, Picture, Lookup]


@hookimpl
def gouache_register_nodes():
    return NODES


@hookimpl
def gouache_register_web_extensions():
    return [WebExtension("dial", Path(__file__).parent / "extension", scripts=("dial.js",), styles=("dial.css",))]
