"""The whole story in the browser with the real built-in pack: open, edit the prompt, run, see the image.

``test_text_to_image_by_hand`` uses the embedded model gouache-tiny, which ships with gouache;
``test_text_to_image_by_hand_on_a_random_tiny_checkpoint`` tells the same story on a tiny random
SD 1.x checkpoint built by the diffusion tests' helper, so the mechanics are tested either way.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def real_server(tmp_path):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path / "home")  # the built-in pack, through its entry point like any other
    if "Sampler" not in engine.registry:
        pytest.fail("the built-in diffusion pack did not load: " + "; ".join(
            f"{pack.name}: {pack.error}" for pack in engine.packs if pack.error))
    if "gouache-tiny" not in engine.models.names("checkpoints"):
        pytest.fail("the embedded model gouache-tiny is missing from the checkpoints: "
                    f"{engine.models.names('checkpoints')}")
    with BackgroundServer(engine) as server:
        yield server


def test_text_to_image_by_hand(browser, real_server, tmp_path):
    tell_the_story(browser, real_server, tmp_path, checkpoint=None)


@pytest.fixture
def random_checkpoint_server(tmp_path):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    nodes_tests = Path(__file__).resolve().parents[1] / "nodes"
    if str(nodes_tests) not in sys.path:
        sys.path.append(str(nodes_tests))
    try:
        import tiny_models
    except ImportError as error:
        pytest.fail(f"the diffusion tests' tiny model builder is not importable: {error}")
    home = tmp_path / "home"
    tiny_models.build_diffusers_folder("sd1", home / "models" / "checkpoints" / "tiny-sd1", seed=1)
    engine = Engine(home=home)
    if "Sampler" not in engine.registry:
        pytest.fail("the built-in diffusion pack did not load")
    with BackgroundServer(engine) as server:
        yield server


def test_text_to_image_by_hand_on_a_random_tiny_checkpoint(browser, random_checkpoint_server, tmp_path):
    tell_the_story(browser, random_checkpoint_server, tmp_path, checkpoint="tiny-sd1")


def choose(ui, node: str, widget: str, entry: str) -> None:
    """Pick ``entry`` in a combo widget's menu, as a person does."""
    x, y = ui.js("([n, w]) => window.gouache.widgetPosition(n, w)", [node, widget])
    ui.page.mouse.click(x, y)
    ui.page.locator(".litecontextmenu .litemenu-entry", has_text=entry).first.click()


def tell_the_story(browser, server, tmp_path, checkpoint: str | None) -> None:
    from web_browser import EditorPage

    real_server = server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    ui = EditorPage(context.new_page(), real_server.url, tmp_path).open("")
    try:
        assert ui.page.inner_text("#workflow-name") == "text-to-image"
        if checkpoint:
            choose(ui, "checkpoint", "name", checkpoint)
            assert ui.js("window.gouache.exportWorkflow()")["nodes"]["checkpoint"]["inputs"]["name"] == checkpoint
        ui.type_value("positive", "text", "a small green square on a white background")
        ui.type_value("sampler", "steps", "8")
        exported = ui.js("window.gouache.exportWorkflow()")
        assert exported["nodes"]["positive"]["inputs"]["text"] == "a small green square on a white background"
        assert exported["nodes"]["sampler"]["inputs"]["steps"] == 8
        ui.shot("before")
        ui.page.click("#run")
        ui.wait_for(lambda: (s := ui.state("sampler")) and s["progress"] and s["progress"]["max"] == 8,
                    timeout=300, what="sampler progress")
        ui.wait_for(lambda: ui.state("sampler")["preview"], timeout=300, what="a live latent preview")
        ui.shot("sampling")
        done = ui.wait_for(lambda: (s := ui.state("save")) and s["images"] and s, timeout=300, what="the saved image")
        ui.page.wait_for_selector("#history li[data-status=succeeded]")
        ui.shot("result")
        with urllib.request.urlopen(f"{real_server.url}/api/files/output/{done['images'][0]}") as reply:
            assert reply.read(8) == b"\x89PNG\r\n\x1a\n"
        assert not ui.errors, ui.errors
    finally:
        context.close()
