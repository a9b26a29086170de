"""The server learns node types from the registry only: the built-in pack appears like any plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from web_support import Client
from gouache.web.files import safe_path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_the_web_package_never_imports_the_diffusion_nodes():
    for source in WEB.rglob("*.py"):
        text = source.read_text()
        assert "import gouache.nodes" not in text and "from gouache.nodes" not in text, source
    script = ("import sys, tempfile; sys.path[:0] = ['tests/web', 'tests/engine'];"
              "from web_support import toy_engine; from gouache.web.server import create_app;"
              "create_app(toy_engine(tempfile.mkdtemp())); assert 'gouache.nodes' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=WEB.parent)


@pytest.mark.slow
def test_the_built_in_pack_is_served_through_the_registry(tmp_path):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path / "home")
    if "Sampler" not in engine.registry:
        pytest.fail("the built-in pack did not load")
    with BackgroundServer(engine) as server:
        body = Client(server.url).get("/api/nodes").json
    nodes = {node["type"]: node for node in body["nodes"]}
    assert {"CheckpointLoader", "TextEncode", "EmptyLatent", "Sampler", "VAEDecode", "SaveImage"} <= set(nodes)
    loader = {spec["name"]: spec for spec in nodes["CheckpointLoader"]["inputs"]}["name"]
    assert loader["choices_from"] == "checkpoints"
    assert loader["choices"] == engine.models.names("checkpoints")
    colours = {socket["name"] for socket in body["types"]}
    assert {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE"} <= colours


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("./\\%2eE:aA\x00~ ")), max_size=24))
def test_safe_path_never_leaves_its_folder(tmp_path_factory, relative):
    base = tmp_path_factory.getbasetemp() / "safe"
    (base / "inner").mkdir(parents=True, exist_ok=True)
    (base / "inner" / "a").write_text("x")
    (base / "outside").write_text("secret")
    found = safe_path(base / "inner", relative)
    assert found is None or found.is_relative_to((base / "inner").resolve())
