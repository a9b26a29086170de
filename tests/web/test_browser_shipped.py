"""Every shipped workflow opens in the editor with the built-in pack and round-trips unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path_factory.mktemp("home"))
    if "Sampler" not in engine.registry:
        pytest.fail("the built-in pack did not load")
    with BackgroundServer(engine) as server:
        yield server


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_a_shipped_workflow_round_trips(browser, builtin_server, tmp_path, path):
    from web_browser import EditorPage

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        ui = EditorPage(context.new_page(), builtin_server.url, tmp_path).open(f"?workflow={path.stem}")
        original = json.loads(path.read_text())
        exported = ui.js("window.gouache.exportWorkflow()")
        assert exported["nodes"] == original["nodes"]
        assert list(exported["nodes"]) == list(original["nodes"])
        assert exported.get("meta") == original.get("meta", {})
        assert set(exported["layout"]) == set(original["nodes"])
        ui.shot(path.stem)
        assert not ui.errors, ui.errors
    finally:
        context.close()
