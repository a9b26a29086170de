"""A node pack that fails to load is reported in /api/nodes and shown in the editor, and the rest works."""

from __future__ import annotations

import pytest

import toy_pack
from web_support import Client

from gouache.engine import Engine, hookimpl
from gouache.web.background import BackgroundServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


class BrokenPack:
    """A pack whose registration hook raises."""

    @hookimpl
    def gouache_register_nodes(self):
        raise RuntimeError("needs libfoo 2, found 1")


@pytest.fixture
def broken_server(tmp_path):
    engine = Engine(packs={"toy": toy_pack, "broken": BrokenPack()}, entry_points=False, home=tmp_path / "home")
    with BackgroundServer(engine) as server:
        yield server


def test_a_broken_pack_is_listed_with_its_error_and_shown_in_the_editor(browser, broken_server, tmp_path):
    from web_browser import EditorPage

    packs = {pack["name"]: pack for pack in Client(broken_server.url).get("/api/nodes").json["packs"]}
    assert packs["toy"]["status"] == "loaded" and "Add" in packs["toy"]["node_types"]
    assert packs["broken"]["status"] == "error" and "needs libfoo 2" in packs["broken"]["error"]
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    editor = EditorPage(page, broken_server.url, tmp_path).open()
    shown = page.locator('#pack-errors li[data-pack="broken"]')
    shown.wait_for(timeout=10_000)
    assert "needs libfoo 2, found 1" in shown.inner_text()
    assert page.locator('#pack-errors li[data-pack="toy"]').count() == 0
    editor.add_from_palette("Add")  # the packs that loaded still work
    editor.shot("pack-error")
