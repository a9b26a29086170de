"""The shipped inpainting and outpainting workflows on the embedded model: they run through `gouache run`
as they ship, repaint only inside the mask (outside within 2/255 of the input), and their quality gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pack_support import WORKFLOWS
from PIL import Image

from gouache.engine import Engine

TOLERANCE = 2
GATE = 0.95


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _gouache_run(tmp_path, name: str, *settings: str) -> np.ndarray:
    from gouache.cli.main import main

    out = tmp_path / "out"
    argv = ["--home", str(tmp_path / "home"), "run", str(WORKFLOWS / name), "--output-dir", str(out)]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 0
    [png] = out.glob("*.png")
    return _png(png)


def test_the_pictures_ship_beside_the_workflows_and_load_in_a_fresh_home(tmp_path):
    engine = Engine(home=tmp_path / "home")
    names = engine.models.names("input_images")
    assert {"example.png", "inpaint.png", "inpaint-mask.png", "outpaint.png"} <= set(names)
    for name in ("inpaint.json", "outpaint.json"):
        workflow = json.loads((WORKFLOWS / name).read_text())
        assert workflow["meta"]["title"] and workflow["meta"]["description"]
        assert set(workflow["layout"]) == set(workflow["nodes"])
        valid, problems = engine.check(workflow)
        assert valid is not None, problems


@pytest.mark.slow
def test_gouache_run_inpaint_repaints_the_circle_yellow_and_keeps_the_rest(tmp_path):
    from gouache_training import checker

    out = _gouache_run(tmp_path, "inpaint.json")
    picture, mask = _png(WORKFLOWS / "inpaint.png"), _png(WORKFLOWS / "inpaint-mask.png")[..., 0] > 127
    assert out.shape == picture.shape
    assert np.abs(out - picture)[~mask].max() <= TOLERANCE, "outside the mask the picture is kept"
    reading = checker.read(out.astype(np.uint8))
    assert (reading.colour, reading.shape, reading.background) == ("yellow", "circle", "blue"), reading


@pytest.mark.slow
def test_gouache_run_outpaint_extends_the_picture_with_its_background(tmp_path):
    from gouache_training import checker

    out = _gouache_run(tmp_path, "outpaint.json")
    picture = _png(WORKFLOWS / "outpaint.png")
    rows = picture.shape[0]
    assert out.shape == (rows + 32, picture.shape[1], 3)
    assert np.abs(out[:rows - 16] - picture[:rows - 16]).max() <= TOLERANCE, "above the feathered rows nothing changes"
    reading = checker.read(out.astype(np.uint8))
    assert (reading.colour, reading.shape, reading.background) == ("green", "star", "white"), reading
    new = checker.palette_labels(out[rows:].astype(np.uint8))
    assert (new == checker.COLOURS.index("white")).mean() >= 0.95, "the new rows continue the white background"


def test_a_mask_of_another_size_than_the_picture_names_the_mask(tmp_path):
    home = tmp_path / "home"
    (home / "input").mkdir(parents=True)
    Image.new("L", (64, 64), 255).save(home / "input" / "small-mask.png")
    result = Engine(home=home).run(WORKFLOWS / "inpaint.json", overrides={"mask.image": "small-mask.png"})
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == ("encode", "mask", "size_mismatch")
    assert "64x64" in result.error.message and "128x128" in result.error.message


@pytest.mark.slow
def test_inpainting_quality_gate(tmp_path):
    """The first 24 cases of the model card's figures (`gouache_training.inpaint`, held-out targets): outside
    the mask nothing changes beyond 2/255, ever; the checker reads the asked scene in at least 90% and the whole
    repaint is right in at least 95%, the issue's target (24 of 24 measured; 97.9% on all 96 cases)."""
    from gouache_training import inpaint

    folder = tmp_path / "home" / "input"
    folder.mkdir(parents=True)
    figures = inpaint.evaluate_inpaint(Engine(home=tmp_path / "home"), inpaint.inpaint_cases(2), folder)
    print("inpainting gate:", figures)
    assert figures["outside"] == 1.0
    assert figures["reading"] >= 0.9, figures
    assert figures["repainted"] >= GATE, figures
