"""gouache-effects' colour widget in the real editor, in Debian's Chromium (never `playwright install`).

The pack is loaded from the source tree into a server in this process; the editor loads the
pack's web extension, ColorGrade's ``tint`` gets the custom widget, picking a colour changes the
workflow, and the workflow runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pack_sandbox import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

PACK = REPO / "plugins" / "gouache-effects"
CHROMIUM = os.environ.get("GOUACHE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PACK))
    import gouache_effects
    from gouache.engine import Engine
    from gouache.nodes import pack as builtin
    from gouache.web.background import BackgroundServer

    # Packs given as objects only: pip's in-tree build may leave gouache_effects.egg-info beside the
    # source, which would make the pack look installed a second time through its entry point.
    engine = Engine(packs={"builtin": builtin, "effects": gouache_effects}, entry_points=False, home=tmp_path / "home")
    assert {r.name: r.status for r in engine.packs}["effects"] == "loaded"
    with BackgroundServer(engine) as running:
        yield running
    sys.modules.pop("gouache_effects", None)


@pytest.fixture
def page(server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium); .ci/run does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + "/?new=1")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield page
        page.screenshot(path=str(tmp_path / "last.png"))
        browser.close()
        assert not errors, errors


def test_the_colour_widget_edits_the_tint_and_the_workflow_runs(page, tmp_path):
    workflow = json.loads((PACK / "workflows" / "effects.json").read_text())
    page.evaluate("(w) => window.gouache.loadWorkflow(w, 'effects')", workflow)
    widget = page.evaluate("""() => {
        const editor = window.gouache.editor;
        const w = editor.widgetFor(editor.nodeById('grade'), 'tint');
        return {type: w.type, value: w.value};
    }""")
    assert widget == {"type": "gouache-effects.color", "value": "#fff0dc"}

    # litegraph finds a widget under the pointer only once it is drawn where it is now; the view may
    # still settle after loading, so click again until the picker is there.
    picker = page.locator("input.gouache-effects-picker")
    for _ in range(20):
        x, y = page.evaluate("() => window.gouache.widgetPosition('grade', 'tint')")
        page.mouse.click(x, y)
        if picker.count():
            break
        page.wait_for_timeout(250)
    assert picker.get_attribute("type") == "color"
    assert (picker.get_attribute("data-node"), picker.get_attribute("data-input")) == ("grade", "tint")
    assert picker.input_value() == "#fff0dc"
    picker.evaluate("(e) => { e.value = '#3366ff'; e.dispatchEvent(new Event('input', {bubbles: true})); }")
    exported = page.evaluate("() => window.gouache.exportWorkflow()")
    assert exported["nodes"]["grade"]["inputs"]["tint"] == "#3366ff"
    page.screenshot(path=str(tmp_path / "widget.png"))

    page.click("#run")
    page.wait_for_function("() => (window.gouache.nodeState('save') || {}).state === 'done'", timeout=60_000)
    assert page.evaluate("() => window.gouache.nodeState('save').images") == ["effects_00001.png"]
