"""Outputs and history in the editor: cached runs show their images, the history opens runs, the
gallery enlarges, opens, loads and downloads, and the status line tells the truth after a run."""

from __future__ import annotations

import urllib.request

import pytest

from web_support import Client, chain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def swatch_workflow(value: float = 0.5) -> dict:
    return chain(("number", {"type": "Number", "inputs": {"value": value}}),
                 ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "number", "output": "value"}}}),
                 layout={"number": {"pos": [40, 60]}, "swatch": {"pos": [360, 60], "title": "Colour swatch"}},
                 meta={"title": "Swatch", "description": "One number painted as a swatch."})


def test_a_fully_cached_run_shows_its_image_and_the_status_line_says_it_finished(editor_page, server):
    client = Client(server.url)
    client.put("/api/workflows/swatch", swatch_workflow())
    first = client.post("/api/runs", {"workflow": swatch_workflow()}).json["run_id"]
    client.wait_run(first)
    ui = editor_page.open("?workflow=swatch")
    ui.page.wait_for_selector("#connection[data-state=open]")
    assert ui.state("swatch") is None or not ui.state("swatch")["images"]
    ui.page.click("#run")
    done = ui.wait_for(lambda: (s := ui.state("swatch")) and s["images"] and s, what="the cached image")
    assert done["state"] == "cached" and done["images"] == ["swatch_00000.png"]
    entry = ui.page.locator("#history li[data-status=succeeded]").first
    entry.wait_for()
    assert "0 ran · 2 cached" in entry.inner_text()
    # The POST reply may come after the run's events: the line must not go back to "queued".
    ui.wait_for(lambda: ui.page.inner_text("#message").startswith("run succeeded"), what="the finished status")
    ui.page.wait_for_timeout(300)
    assert ui.page.inner_text("#message").startswith("run succeeded"), ui.page.inner_text("#message")
    assert "queued" not in ui.page.inner_text("#message")


def test_history_and_gallery_open_the_run_load_its_workflow_and_download(editor_page, server):
    client = Client(server.url)
    run_id = client.post("/api/runs", {"workflow": swatch_workflow(3.0)}).json["run_id"]
    record = client.wait_run(run_id)
    path = record["outputs"]["swatch"]["images"][0]["path"]
    ui = editor_page.open()  # an empty canvas: the history and gallery come from the server
    ui.page.wait_for_selector(f"#gallery .thumb[data-run='{run_id}']")
    entry = ui.page.locator(f"#history li[data-run='{run_id}']")
    assert "succeeded" in entry.inner_text() and "1 ran · 1 cached" not in entry.inner_text()
    assert "2 ran · 0 cached" in entry.inner_text() and " s" in entry.inner_text()

    entry.click()  # the history entry opens the run
    ui.page.wait_for_selector("#run-dialog[open]")
    assert ui.page.get_attribute("#run-dialog", "data-run") == run_id
    assert ui.page.inner_text("#run-facts dd[data-fact=status]") == "succeeded"
    assert ui.page.inner_text("#run-facts dd[data-fact=executed]").startswith("2")
    assert ui.page.inner_text("#run-facts dd[data-fact=cached]").startswith("0")
    ui.page.keyboard.press("Escape")
    ui.page.wait_for_selector("#run-dialog:not([open])", state="attached")

    ui.page.click(f"#gallery .thumb[data-run='{run_id}']")  # the gallery enlarges the image
    ui.page.wait_for_selector("#image-dialog[open]")
    ui.wait_for(lambda: ui.js("document.querySelector('#image-big').naturalWidth") == 48, what="the enlarged image")
    href = ui.page.get_attribute("#image-download", "href")
    assert href.endswith(f"/api/files/output/{path}") and ui.page.get_attribute("#image-download", "download") == path
    with ui.page.expect_download() as download:
        ui.page.click("#image-download")
    assert download.value.suggested_filename == path
    with urllib.request.urlopen(server.url + href) as reply:
        assert reply.read(8) == b"\x89PNG\r\n\x1a\n"

    ui.page.click("#image-open-run")  # ... opens the run that made it
    ui.page.wait_for_selector("#run-dialog[open]")
    assert ui.page.get_attribute("#run-dialog", "data-run") == run_id
    ui.page.click("#run-images .thumb")  # the run's own images enlarge too
    ui.page.wait_for_selector("#image-dialog[open]")
    ui.page.click("#image-load")  # ... and loads the workflow that made it
    ui.wait_for(lambda: sorted(ui.node_ids()) == ["number", "swatch"], what="the run's workflow")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"]["number"]["inputs"]["value"] == 3.0
    assert ui.state("swatch")["images"] == [path]
    assert ui.page.inner_text("#workflow-name") == "Swatch"


def test_a_run_made_while_the_page_is_open_joins_history_and_gallery(editor_page, server):
    ui = editor_page.open()
    ui.page.wait_for_selector("#connection[data-state=open]")
    client = Client(server.url)
    runs = [client.post("/api/runs", {"workflow": swatch_workflow(value)}).json["run_id"] for value in (5.0, 6.0)]
    for run_id in runs:
        ui.page.wait_for_selector(f"#gallery .thumb[data-run='{run_id}']")
    order = ui.js("[...document.querySelectorAll('#history li')].map((li) => li.dataset.run)")
    assert order[:2] == runs[::-1]  # newest first
    gallery = ui.js("[...document.querySelectorAll('#gallery .thumb')].map((b) => b.dataset.run)")
    assert gallery[:2] == runs[::-1]


def test_every_image_of_a_batch_shows_in_its_node(editor_page, server):
    from web_pack import Swatches

    client = Client(server.url)
    client.put("/api/workflows/batch", chain(("swatches", {"type": "Swatches", "inputs": {"count": 4}}),
                                             layout={"swatches": {"pos": [60, 60], "size": [300, 300]}}))
    ui = editor_page.open("?workflow=batch")
    ui.page.click("#run")
    done = ui.wait_for(lambda: (s := ui.state("swatches")) and len(s["images"]) == 4 and s, what="four images")
    assert done["images"] == [f"batch_{index:05d}.png" for index in range(4)]
    ui.wait_for(lambda: ui.js("window.gouache.editor.status.get('swatches').images.every((i) => i.complete)"),
                what="the images to load")
    # Read the canvas at the middle of each cell of the 2 x 2 grid the node draws below its widgets.
    colours = ui.js("""() => {
        const editor = window.gouache.editor, node = editor.nodeById('swatches');
        editor.canvas.draw(true, true);
        const top = node.baseHeight + 4, width = node.size[0] - 10, height = node.size[1] - top - 5;
        const context = document.querySelector('#graph').getContext('2d');
        return [0, 1, 2, 3].map((index) => {
          const x = node.pos[0] + 5 + (index % 2 + 0.5) * width / 2, y = node.pos[1] + top + (Math.floor(index / 2) + 0.5) * height / 2;
          const [cx, cy] = editor.canvas.ds.convertOffsetToCanvas([x, y]);
          return Array.from(context.getImageData(Math.round(cx), Math.round(cy), 1, 1).data.slice(0, 3));
        });
      }""")
    for seen, wanted in zip(colours, Swatches.COLOURS):
        assert max(abs(a - b) for a, b in zip(seen, wanted)) < 12, (colours, Swatches.COLOURS)


def test_a_page_opened_mid_run_says_what_runs(editor_page, server):
    from web_support import steps_workflow

    client = Client(server.url)
    client.put("/api/workflows/long", steps_workflow(steps=300, delay=0.02))
    run_id = client.post("/api/runs", {"workflow": steps_workflow(steps=300, delay=0.02)}).json["run_id"]
    ui = editor_page.open("?workflow=long")
    ui.wait_for(lambda: ui.page.inner_text("#message").startswith("running steps"), what="the running node named")
    client.delete(f"/api/runs/{run_id}")
    ui.wait_for(lambda: ui.page.inner_text("#message").startswith("run interrupted"), what="the run's end")
