"""Fixtures for the web tests: the real server on a free port, a client, a browser page.

Every body the client receives and every websocket message the server sends during a test are
checked against the API's models (``gouache.web.schemas``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from web_support import Client, MessageCheck, toy_engine

from gouache.engine import Engine
from gouache.web.background import BackgroundServer


def pytest_collection_modifyitems(items):
    """A default time limit for every web test that does not set its own."""
    for item in items:
        if item.get_closest_marker("timeout") is None and "tests/web" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(60))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return toy_engine(tmp_path / "home")


@pytest.fixture
def server(engine: Engine):
    with BackgroundServer(engine) as running, MessageCheck(running.url):
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Client:
    return Client(server.url)


@pytest.fixture(scope="session")
def browser():
    from web_browser import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium); .ci/run does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def editor_page(browser, server, tmp_path):
    from web_browser import EditorPage

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    editor = EditorPage(page, server.url, tmp_path)
    yield editor
    editor.shot("last")
    context.close()
    assert not editor.errors, editor.errors
