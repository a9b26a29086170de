"""ComfyUI's classic examples, converted by the importer for gouache-tiny, ship in ``workflows/comfyui/`` (issue 15).

The originals are kept as ComfyUI saves them (``comfy_files/originals/``: the default workflow and the LoRA one
in the UI format, img2img, hires fix and upscale in the API format, each naming SD checkpoints). Each shipped
file is what ``gouache import ORIGINAL --model-map ... --set ...`` writes, and says so in ``meta.import_changes``:
re-importing the originals with those options must give the shipped files byte for byte, so they cannot drift
from the importer. Each then runs through ``gouache run`` on the embedded models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ORIGINALS = Path(__file__).parent / "comfy_files" / "originals"
SHIPPED = ROOT / "workflows" / "comfyui"
NAMES = sorted(path.stem for path in SHIPPED.glob("*.json"))


def gouache(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gouache", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def import_arguments(shipped: dict) -> list[str]:
    """The ``gouache import`` options the shipped file records it was made with."""
    changes = shipped["meta"]["import_changes"]
    arguments = [f"--model-map={old}={new}" for old, new in changes.get("model_map", {}).items()]
    for target, value in changes.get("set", {}).items():
        arguments.append(f"--set={target}={value if isinstance(value, str) else json.dumps(value)}")
    return arguments


def test_the_five_classic_examples_ship_beside_their_originals():
    assert NAMES == ["default", "hires_fix", "img2img", "lora", "upscale"]
    assert sorted(path.stem for path in ORIGINALS.glob("*.json")) == NAMES
    for name in NAMES:
        original = json.loads((ORIGINALS / f"{name}.json").read_text())
        models = json.dumps(original)
        assert "gouache" not in models, name  # the originals name SD models, as ComfyUI users have them
        assert ".safetensors" in models or ".pth" in models, name


@pytest.mark.parametrize("name", NAMES)
def test_re_importing_the_original_gives_the_shipped_file(tmp_path, name):
    shipped = json.loads((SHIPPED / f"{name}.json").read_text())
    out = tmp_path / f"{name}.json"
    done = gouache("--home", str(tmp_path / "home"), "import", str(ORIGINALS / f"{name}.json"), "-o", str(out),
                   *import_arguments(shipped), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr  # every model it names is one gouache ships
    assert out.read_text() == (SHIPPED / f"{name}.json").read_text(), \
        f"workflows/comfyui/{name}.json differs from what the importer writes now: regenerate it (docs/import.md)"


def test_a_model_map_that_matches_nothing_is_refused_naming_the_models_there(tmp_path):
    done = gouache("--home", str(tmp_path / "home"), "import", str(ORIGINALS / "upscale.json"), "-o",
                   str(tmp_path / "out.json"), "--model-map", "v1-5-pruned.ckpt=gouache-tiny", cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "out.json").exists()
    assert "[unknown_model_name] --model-map v1-5-pruned.ckpt=..." in done.stderr
    assert "RealESRGAN_x4plus.pth, v1-5-pruned-emaonly.safetensors" in done.stderr


def test_the_rewrite_is_for_gouache_tiny():
    for name in NAMES:
        shipped = json.loads((SHIPPED / f"{name}.json").read_text())
        nodes = shipped["nodes"].values()
        assert {entry["inputs"]["name"] for entry in nodes if entry["type"] == "CheckpointLoader"} == {"gouache-tiny"}
        assert all(entry["inputs"]["cfg"] == 3 for entry in nodes if entry["type"] == "Sampler"), name
        sizes = {(entry["inputs"]["width"], entry["inputs"]["height"]) for entry in nodes if entry["type"] == "EmptyLatent"}
        assert sizes <= {(128, 128)}, name


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_converted_example_runs_with_gouache_run(tmp_path, name):
    done = gouache("--home", str(tmp_path / "home"), "run", str(SHIPPED / f"{name}.json"), "--quiet", "--json",
                   "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    [image] = (tmp_path / "out").glob("*.png")
    expected = {"hires_fix": (192, 192), "upscale": (512, 512)}.get(name, (128, 128))
    assert Image.open(image).size == expected
