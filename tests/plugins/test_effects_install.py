"""The first-party effects pack, installed the way CI and users install it, running its workflow."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from PIL import Image

from pack_sandbox import REPO, sandbox  # noqa: F401 (fixture)

PACK = REPO / "plugins" / "gouache-effects"
NODE_TYPES = ["ColorGrade", "FilmGrain", "PaletteQuantize", "Pixelate", "TestPattern"]


@pytest.mark.slow
def test_install_run_the_shipped_workflow_and_remove(sandbox, tmp_path):
    with_builtin = {"GOUACHE_PACKS_BLOCK": ""}
    # CI may have installed the pack into the running environment already; the sandbox sees that copy.
    try:
        metadata.version("gouache-effects")
        kind = "reinstall"
    except metadata.PackageNotFoundError:
        kind = "new"
    done = sandbox("packs", "install", str(PACK), "--yes", **with_builtin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pack 'effects' loaded; node types: " in done.stdout
    # Nothing gouache runs on was touched: the pack brings only itself.
    assert "would change this environment" in done.stdout
    assert f"installed: gouache-effects 0.1.0 ({kind})\n" in done.stdout

    info = sandbox.json("packs", "info", "effects", **with_builtin)
    assert info["status"] == "loaded" and sorted(info["node_types"]) == NODE_TYPES
    assert info["web_extensions"] == ["gouache-effects"]
    tint = next(i for node in info["nodes"] if node["type"] == "ColorGrade" for i in node["inputs"] if i["name"] == "tint")
    assert tint["widget"] == "gouache-effects.color"

    output = tmp_path / "out"
    done = sandbox("run", str(PACK / "workflows" / "effects.json"), "--json", "--output-dir", str(output),
                   **with_builtin)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    [saved] = result["images"]["save"]
    with Image.open(saved["file"]) as image:
        assert image.size == (256, 192)
        assert "gouache" in json.dumps(dict(image.text)), "the workflow travels inside the PNG"

    done = sandbox("packs", "remove", "effects", "--yes", **with_builtin)
    assert done.returncode == 0, done.stderr
    if kind == "new":
        assert "effects" not in sandbox.packs(**with_builtin)
        done = sandbox("validate", str(PACK / "workflows" / "effects.json"), **with_builtin)
        assert done.returncode == 2 and "unknown node type 'Pixelate'" in done.stderr
