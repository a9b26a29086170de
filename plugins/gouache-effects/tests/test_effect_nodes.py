"""The pack through the engine: it registers cleanly and its nodes run in a workflow.

The built-in pack registers IMAGE; here a stand-in pack does, so these tests need only the engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Importable from the source tree whether or not the pack is installed. (No conftest.py here: other
# test folders import helpers with `from conftest import ...`, which a second conftest would break.)
PACK_ROOT = Path(__file__).resolve().parents[1]
if str(PACK_ROOT) not in sys.path:
    sys.path.insert(0, str(PACK_ROOT))

import torch  # noqa: E402

import gouache_effects  # noqa: E402
from gouache.engine import Engine, Input, Node, SocketType, hookimpl  # noqa: E402
from gouache_effects.nodes import COLOR_WIDGET  # noqa: E402


class Keep(Node):
    """Hold on to an image (an output node for the test)."""

    type_name = "Keep"
    output_node = True
    inputs = [Input("image", "IMAGE")]
    outputs = []
    kept: list = []

    def run(self, ctx, image):
        Keep.kept.append(image)
        return {}


class ImageType:
    @hookimpl
    def gouache_register_types(self):
        return [SocketType("IMAGE", "#64b5f6")]

    @hookimpl
    def gouache_register_nodes(self):
        return [Keep]


def engine(tmp_path) -> Engine:
    return Engine(packs={"image": ImageType(), "effects": gouache_effects}, entry_points=False, home=tmp_path)


def test_the_pack_registers_its_nodes_and_web_extension(tmp_path):
    loaded = engine(tmp_path)
    report = next(r for r in loaded.packs if r.name == "effects")
    assert report.status == "loaded", report.error
    assert set(report.node_types) == {"TestPattern", "Pixelate", "PaletteQuantize", "FilmGrain", "ColorGrade"}
    extension = loaded.web_extensions["gouache-effects"]
    for name in (*extension.scripts, *extension.styles):
        assert (extension.directory / name).is_file()
    tint = next(i for i in loaded.registry.get("ColorGrade").inputs if i.name == "tint")
    assert tint.widget == COLOR_WIDGET


def test_a_chain_of_effects_runs_and_is_cached(tmp_path):
    Keep.kept.clear()
    workflow = {"format": "gouache/1", "nodes": {
        "pattern": {"type": "TestPattern", "inputs": {"width": 64, "height": 48}},
        "pixels": {"type": "Pixelate", "inputs": {"image": {"node": "pattern", "output": "image"}, "block_size": 4}},
        "palette": {"type": "PaletteQuantize", "inputs": {"image": {"node": "pixels", "output": "image"},
                                                          "colors": 6, "dither": True}},
        "grain": {"type": "FilmGrain", "inputs": {"image": {"node": "palette", "output": "image"}, "seed": 3}},
        "grade": {"type": "ColorGrade", "inputs": {"image": {"node": "grain", "output": "image"},
                                                   "tint": "#ffe0c0", "saturation": 1.2}},
        "keep": {"type": "Keep", "inputs": {"image": {"node": "grade", "output": "image"}}},
    }}
    loaded = engine(tmp_path)
    first = loaded.run(workflow)
    assert first.status == "succeeded", first.error
    assert Keep.kept[0].shape == (1, 48, 64, 3)
    pattern = first.outputs["pattern"]["image"].clone()
    again = loaded.run(workflow, overrides={"grade.saturation": 0.5})
    assert set(again.cached) == {"pattern", "pixels", "palette", "grain"}
    assert torch.equal(again.outputs["pattern"]["image"], pattern), "no node changed its input"


def test_a_bad_tint_fails_the_node_with_a_clear_message(tmp_path):
    workflow = {"format": "gouache/1", "nodes": {
        "pattern": {"type": "TestPattern", "inputs": {"width": 8, "height": 8}},
        "grade": {"type": "ColorGrade", "inputs": {"image": {"node": "pattern", "output": "image"}, "tint": "orange"}},
        "keep": {"type": "Keep", "inputs": {"image": {"node": "grade", "output": "image"}}},
    }}
    result = engine(tmp_path).run(workflow)
    assert result.status == "failed" and result.error.node == "grade"
    assert "#rrggbb" in result.error.message
