"""The Open dialog as a workflow browser: shipped and saved workflows with their descriptions and
thumbnails; a workflow shows its description when it opens."""

from __future__ import annotations

import pytest

from web_support import Client, chain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_the_open_dialog_shows_descriptions_and_thumbnails_and_an_opened_workflow_says_what_it_is_for(editor_page, server):
    client = Client(server.url)
    mine = chain(("number", {"type": "Number", "inputs": {"value": 2.0}}),
                 ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "number", "output": "value"}}}),
                 meta={"title": "Two", "description": "Paints the number two."})
    client.put("/api/workflows/two", mine)
    plain = chain(("number", {"type": "Number", "inputs": {"value": 1.0}}))
    client.put("/api/workflows/plain", plain)
    ui = editor_page.open()
    ui.page.click("#open")
    ui.page.wait_for_selector("#open-dialog[open]")
    card = ui.page.locator("#workflow-list button[data-name='two']")
    assert "Two" in card.inner_text() and "Paints the number two." in card.inner_text()
    assert card.locator("img").count() == 0  # never run, nothing shipped: no picture
    shipped = ui.page.locator("#workflow-list button[data-name='text-to-image']")
    assert "shipped" in shipped.inner_text() and "128 px" in shipped.inner_text()
    ui.wait_for(lambda: shipped.locator("img").evaluate("(img) => img.complete && img.naturalWidth") == 128,
                what="the shipped thumbnail")
    card.click()
    ui.page.wait_for_selector("#open-dialog:not([open])", state="attached")
    ui.page.wait_for_selector("#workflow-about:not([hidden])")
    assert ui.page.inner_text("#workflow-about-title") == "Two"
    assert ui.page.inner_text("#workflow-about-text") == "Paints the number two."
    ui.page.click("#workflow-about-close")
    assert ui.page.locator("#workflow-about").is_hidden()

    ui.page.click("#run")  # its output becomes its thumbnail
    ui.wait_for(lambda: (s := ui.state("swatch")) and s["images"], what="the swatch")
    ui.page.click("#open")
    card = ui.page.locator("#workflow-list button[data-name='two']")
    ui.wait_for(lambda: card.locator("img").count() == 1 and card.locator("img").evaluate(
        "(img) => img.complete && img.naturalWidth") == 48, what="the workflow's last output as its thumbnail")
    ui.page.click("#workflow-list button[data-name='plain']")  # no description: nothing shown
    ui.wait_for(lambda: ui.node_ids() == ["number"], what="the plain workflow")
    assert ui.page.locator("#workflow-about").is_hidden()
