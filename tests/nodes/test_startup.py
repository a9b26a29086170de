"""What a fresh process pays for before it works: the server lists models without torch.

Each check runs in a new interpreter, because an import made by another test would hide one here.
Times are the benchmark's business (``bench/bench_startup.py``); these tests only check what is imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "yaml")

SERVE_AND_ASK = """
import json, sys, urllib.request
from gouache.engine import Engine
from gouache.web.background import BackgroundServer

engine = Engine(home=sys.argv[1])
with BackgroundServer(engine) as server:
    bodies = {route: json.load(urllib.request.urlopen(server.url + route, timeout=60))
              for route in ("/api/nodes", "/api/models")}
print(json.dumps({"bodies": bodies, "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _in_fresh_process(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_server_lists_checkpoints_without_importing_torch(tmp_path, tiny_sd1):
    checkpoints = tmp_path / "home" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(tiny_sd1.safetensors, checkpoints / "single.safetensors")
    shutil.copytree(tiny_sd1.folder, checkpoints / "folder")

    found = _in_fresh_process(SERVE_AND_ASK, str(tmp_path / "home"))

    models = {entry["name"]: entry for entry in found["bodies"]["/api/models"]["checkpoints"]}
    assert models["single.safetensors"]["family"] == "sd1"
    assert models["folder"]["format"] == "diffusers" and models["folder"]["family"] == "sd1"
    loader = next(node for node in found["bodies"]["/api/nodes"]["nodes"] if node["type"] == "CheckpointLoader")
    choices = next(spec for spec in loader["inputs"] if spec["name"] == "name")["choices"]
    assert {"single.safetensors", "folder", "gouache-tiny"} <= set(choices)
    assert found["imported"] == [], f"listing models imported {found['imported']}"


def test_fingerprints_and_detection_import_no_torch(tiny_sd1):
    script = f"""
import json, sys
from gouache.nodes.models import detect_folder, fingerprint
from gouache.nodes.folders import describe_checkpoint
from pathlib import Path
fingerprint(Path({str(tiny_sd1.safetensors)!r}))
described = describe_checkpoint(Path({str(tiny_sd1.safetensors)!r}))
family = detect_folder(Path({str(tiny_sd1.folder)!r})).family.name
print(json.dumps({{"family": [described["family"], family],
                   "imported": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    found = _in_fresh_process(script)
    assert found == {"family": ["sd1", "sd1"], "imported": []}


def test_the_models_package_still_offers_every_public_name():
    import gouache.nodes.models as models

    for name in models.__all__:
        assert getattr(models, name) is not None, name
    with pytest.raises(AttributeError):
        models.no_such_name  # noqa: B018
