"""The editor in Debian's Chromium: build a graph by hand, run it, watch it, reload mid-run."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest

from web_support import Client, add_chain, chain, steps_workflow

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_build_a_graph_by_hand_run_it_and_see_the_result(editor_page, server):
    ui = editor_page.open()
    number = ui.add_from_palette("Number")
    steps = ui.add_from_search("Steps")
    swatch = ui.add_from_palette("Swatch")
    assert (number, steps, swatch) == ("number1", "steps1", "swatch1")
    ui.connect(number, "value", steps, "x")
    ui.connect(steps, "x", swatch, "value")
    assert sorted((link["from"], link["to"]) for link in ui.links()) == [(number, steps), (steps, swatch)]
    ui.type_value(number, "value", "7.5")
    ui.type_value(steps, "steps", "30")
    ui.type_value(steps, "delay", "0.05")
    exported = ui.js("window.gouache.exportWorkflow()")
    assert exported["nodes"][number]["inputs"]["value"] == 7.5
    assert exported["nodes"][steps]["inputs"]["steps"] == 30
    assert exported["nodes"][swatch]["inputs"]["value"] == {"node": steps, "output": "x"}
    ui.shot("built")

    ui.page.click("#run")
    running = ui.wait_for(lambda: (s := ui.state(steps)) and s["state"] == "running" and s["progress"] and s, what="progress")
    assert running["progress"]["max"] == 30
    ui.page.wait_for_selector("#queue li[data-status=running] progress")
    ui.wait_for(lambda: ui.state(steps)["preview"], what="a live preview")
    ui.shot("running")
    done = ui.wait_for(lambda: (s := ui.state(swatch)) and s["images"] and s, what="the image")
    assert done["images"] == ["swatch_00000.png"] and done["state"] == "done"
    ui.page.wait_for_selector("#history li[data-status=succeeded]")
    assert ui.state(number)["state"] == "done"
    ui.shot("finished")

    ui.page.click("#run")  # the same graph again: Number comes from the cache
    ui.wait_for(lambda: ui.state(number)["state"] == "cached", what="a cached node")


def test_a_reloaded_page_catches_up_with_the_running_node(editor_page, server):
    client = Client(server.url)
    workflow = steps_workflow(steps=400, delay=0.02)
    client.put("/api/workflows/long", workflow)
    ui = editor_page.open("?workflow=long")
    ui.page.click("#run")
    ui.wait_for(lambda: (ui.state("steps") or {}).get("progress"), what="progress")
    ui.page.reload()
    ui.page.wait_for_selector("body[data-ready=true]")
    caught = ui.wait_for(lambda: (s := ui.state("steps")) and s["state"] == "running" and s["progress"] and s, what="catch-up")
    assert caught["progress"]["max"] == 400
    assert ui.state("number")["state"] == "done"
    ui.page.wait_for_selector("#queue li[data-status=running]")
    ui.shot("caught-up")
    queued = client.post("/api/runs", {"workflow": steps_workflow(steps=1)}).json["run_id"]
    ui.page.click(f"#queue li[data-run='{queued}'] button.cancel")
    ui.page.wait_for_selector(f"#history li[data-run='{queued}'][data-status=cancelled]")
    ui.page.click("#queue li[data-status=running] button.cancel")
    ui.page.wait_for_selector("#history li[data-status=interrupted]")
    assert ui.page.locator("#queue li").count() == 0


def test_the_events_of_a_500_node_run_arrive_in_batches_and_every_node_shows_them(editor_page, server):
    client = Client(server.url)
    client.put("/api/workflows/wide", add_chain(500))
    ui = editor_page.open("?workflow=wide")
    ui.page.wait_for_selector("#connection[data-state=open]")
    ui.js("() => { window.seen = {node_finished: 0, node_cached: 0, finished: 0};"
          " for (const type of Object.keys(window.seen)) window.gouache.on(type, () => window.seen[type]++); }")
    for kind, state in (("node_finished", "done"), ("node_cached", "cached")):  # a run, then all from the cache
        ui.page.click("#run")
        ui.wait_for(lambda: ui.js(f"window.seen.{kind}") == 500,
                    what=f"500 {kind} events")
        ui.wait_for(lambda: ui.js("window.seen.finished") == (1 if state == "done" else 2), what="finished")
        states = ui.js("() => window.gouache.nodeIds().map((id) => window.gouache.nodeState(id).state)")
        assert states == [state] * 500
    assert ui.page.locator("#connection[data-state=open]").count() == 1  # never dropped
    ui.page.wait_for_selector("#history li[data-status=succeeded]")


def test_an_incompatible_link_cannot_be_made(editor_page):
    ui = editor_page.open()
    blob = ui.add_from_palette("Blob")
    add = ui.add_from_palette("Add")
    integer = ui.add_from_palette("Int")
    ui.connect(blob, "blob", add, "a")  # BLOB into FLOAT: refused
    assert ui.links() == []
    ui.connect(integer, "value", add, "b")  # INT into FLOAT: a declared conversion
    assert [(link["from"], link["to"]) for link in ui.links()] == [(integer, add)]
    ui.shot("links")


def test_a_validation_error_shows_on_its_node_and_input(editor_page, server):
    workflow = chain(("int", {"type": "Int", "inputs": {"value": 5000}}),
                     ("record", {"type": "Record", "inputs": {"value": {"node": "int", "output": "value"}}}))
    Client(server.url).put("/api/workflows/bad", workflow)
    ui = editor_page.open("?workflow=bad")
    ui.page.click("#run")
    item = ui.page.wait_for_selector("#problems li[data-node=int]")
    assert item.get_attribute("data-input") == "value"
    assert "1000" in item.inner_text()
    errors = ui.state("int")["errors"]
    assert errors and errors[0]["input"] == "value"
    ui.shot("problem")
    ui.type_value("int", "value", "5")  # fixing the input clears its error
    assert ui.state("int")["errors"] == []


def test_a_failing_node_shows_its_message(editor_page, server):
    Client(server.url).put("/api/workflows/failing", chain(("fail", {"type": "Fail"}), ("record", {
        "type": "Record", "inputs": {"value": {"node": "fail", "output": "x"}}})))
    ui = editor_page.open("?workflow=failing")
    ui.page.click("#run")
    item = ui.page.wait_for_selector("#problems li[data-node=fail]")
    assert "always fails" in item.inner_text()
    assert ui.state("fail")["state"] == "error"


RING = (0xE0, 0x5A, 0x5A)  # editor.js draws errors in #e05a5a


def ringed(ui, node: str, widget: str) -> bool:
    """Whether the editor draws the error ring around ``widget``: red pixels at its left edge."""
    from PIL import Image

    x, y = ui.js("""([n, w]) => {
        const editor = window.gouache.editor, node = editor.nodeById(n), widget = editor.widgetFor(node, w);
        editor.canvas.draw(true, true);
        const [cx, cy] = editor.canvas.ds.convertOffsetToCanvas([node.pos[0] + 12, node.pos[1] + widget.y + 10]);
        const r = document.querySelector('#graph').getBoundingClientRect();
        return [Math.round(r.left + cx), Math.round(r.top + cy)]; }""", [node, widget])
    image = Image.open(ui.shot(f"ring-{node}-{widget}")).convert("RGB")
    near = [image.getpixel((x + dx, y + dy)) for dx in range(-4, 5) for dy in range(-4, 5)]
    return any(all(abs(c - r) < 40 for c, r in zip(pixel, RING)) for pixel in near)


def test_a_run_time_error_rings_the_input_it_names(editor_page, server):
    Client(server.url).put("/api/workflows/lookup", chain(
        ("lookup", {"type": "Lookup", "inputs": {"key": "three"}}),
        ("record", {"type": "Record", "inputs": {"value": {"node": "lookup", "output": "value"}}})))
    ui = editor_page.open("?workflow=lookup")
    assert not ringed(ui, "lookup", "key")
    ui.page.click("#run")
    item = ui.page.wait_for_selector("#problems li[data-node=lookup]")
    assert (item.get_attribute("data-input"), item.get_attribute("data-code")) == ("key", "unknown_key")
    assert "lookup.key" in item.inner_text() and "no entry 'three'; use one of one, two" in item.inner_text()
    state = ui.state("lookup")
    assert state["state"] == "error"
    assert state["errors"] == [{"input": "key", "message": "no entry 'three'; use one of one, two"}]
    assert ringed(ui, "lookup", "key")
    ui.type_value("lookup", "key", "two")  # fixing the input clears its error, as for validation problems
    assert ui.state("lookup")["errors"] == []


def test_the_format_round_trips_through_the_editor(editor_page, server):
    workflow = {
        "format": "gouache/1",
        "nodes": {
            "n": {"type": "Number", "inputs": {"value": 2.5}},
            "i": {"type": "Int", "inputs": {}},
            "sum": {"type": "Sum", "inputs": {"a": {"node": "n", "output": "value"}, "c": {"node": "i", "output": "value"}}},
            "mystery": {"type": "FromAPluginNotInstalled", "inputs": {"x": {"node": "n", "output": "value"}, "k": 3}},
            "use": {"type": "Record", "inputs": {"value": {"node": "mystery", "output": "y"}, "seed": 7}},
            "scale": {"type": "Scale", "inputs": {"x": {"node": "sum", "output": "sum"}, "factor": 2.0, "label": "two\nlines"}},
        },
        "layout": {"n": {"pos": [10, 20], "size": [250, 80], "note": "kept"}},
        "groups": [{"title": "g", "bounding": [0, 0, 10, 10]}],
        "meta": {"title": "Round trip", "description": "x"},
    }
    Client(server.url).put("/api/workflows/roundtrip", workflow)
    ui = editor_page.open("?workflow=roundtrip")
    exported = ui.js("window.gouache.exportWorkflow()")
    assert exported["nodes"] == workflow["nodes"]
    assert list(exported["nodes"]) == list(workflow["nodes"])
    assert exported["meta"] == workflow["meta"] and exported["groups"] == workflow["groups"]
    assert exported["layout"]["n"]["pos"] == [10, 20] and exported["layout"]["n"]["note"] == "kept"
    assert set(exported["layout"]) == set(workflow["nodes"])
    ui.move_node("i", 80, 40)
    assert ui.js("window.gouache.exportWorkflow()")["nodes"] == workflow["nodes"]


def test_undo_redo_copy_paste(editor_page):
    ui = editor_page.open()
    number = ui.add_from_palette("Number")
    ui.type_value(number, "value", "4")
    time.sleep(0.2)
    ui.page.click("#graph", position={"x": 500, "y": 800})  # clear of the minimap (bottom right)
    ui.page.keyboard.press("Control+z")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"][number]["inputs"]["value"] == 0
    ui.page.keyboard.press("Control+z")
    assert ui.node_ids() == []
    ui.page.keyboard.press("Control+y")
    ui.page.keyboard.press("Control+y")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"][number]["inputs"]["value"] == 4
    ui.js("(n) => window.gouache.canvas.selectNodes([window.gouache.editor.nodeById(n)])", number)
    ui.page.keyboard.press("Control+c")
    ui.page.mouse.move(800, 600)
    ui.page.keyboard.press("Control+v")
    nodes = ui.js("window.gouache.exportWorkflow()")["nodes"]
    assert len(nodes) == 2 and all(entry == {"type": "Number", "inputs": {"value": 4}} for entry in nodes.values())


def png_with_workflow(workflow) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("workflow", json.dumps(workflow))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["png", "json"])
def test_dropping_a_png_or_json_loads_its_workflow(editor_page, kind):
    workflow = steps_workflow(steps=2)
    data = png_with_workflow(workflow) if kind == "png" else json.dumps(workflow).encode()
    ui = editor_page.open()
    ui.js("""([b64, name, type]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type }));
        document.querySelector('#canvas-box').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(data).decode(), f"dropped.{kind}", "image/png" if kind == "png" else "application/json"])
    ui.wait_for(lambda: ui.node_ids() == ["number", "steps", "swatch"], what="the dropped workflow")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"] == workflow["nodes"]


def test_an_extension_provides_a_custom_widget(editor_page):
    ui = editor_page.open()
    assert ui.js("window.__dialExtensionLoaded") is True
    dial = ui.add_from_palette("Dial")
    widget = ui.js("(n) => { const w = window.gouache.editor.widgetFor(window.gouache.editor.nodeById(n), 'angle'); return [w.type, w.dial, w.value]; }", dial)
    assert widget == ["slider", True, 45]


def test_an_image_input_offers_an_upload(editor_page, engine, tmp_path):
    from test_api_files import png

    picture = tmp_path / "mine.png"
    picture.write_bytes(png((1, 2, 3)))
    ui = editor_page.open()
    node = ui.add_from_palette("Picture")
    with ui.page.expect_file_chooser() as chooser:
        x, y = ui.js("([n, w]) => window.gouache.widgetPosition(n, w)", [node, "upload image…"])
        ui.page.mouse.click(x, y)
    chooser.value.set_files(str(picture))
    ui.wait_for(lambda: ui.js("window.gouache.exportWorkflow()")["nodes"][node]["inputs"]["image"] == "mine.png", what="upload")
    assert (engine.settings.folder("input") / "mine.png").is_file()


def test_the_editor_opens_the_shipped_text_to_image_workflow(editor_page):
    ui = editor_page.open("")
    assert ui.page.inner_text("#workflow-name") == "text-to-image"
    assert {"checkpoint", "positive", "negative", "latent", "sampler", "decode", "save"} <= set(ui.node_ids())


def test_save_and_open_on_the_server_and_export_a_file(editor_page, server):
    ui = editor_page.open()
    scale = ui.add_from_palette("Scale")
    ui.type_value(scale, "label", "two\nlines")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"][scale]["inputs"]["label"] == "two\nlines"
    ui.page.once("dialog", lambda dialog: dialog.accept("saved-by-ui"))
    ui.page.click("#save")
    ui.wait_for(lambda: ui.page.inner_text("#workflow-name") == "saved-by-ui", what="the saved name")
    saved = Client(server.url).get("/api/workflows/saved-by-ui").json
    assert saved["nodes"] == ui.js("window.gouache.exportWorkflow()")["nodes"]
    with ui.page.expect_download() as download:
        ui.page.click("#export")
    assert json.loads(open(download.value.path()).read())["nodes"] == saved["nodes"]

    ui.open()
    assert ui.node_ids() == []
    ui.page.click("#open")
    ui.page.click("#workflow-list button[data-name='saved-by-ui']")
    ui.wait_for(lambda: ui.node_ids() == [scale], what="the opened workflow")
    assert ui.page.inner_text("#workflow-name") == "saved-by-ui"


def test_dropping_a_png_saved_by_gouache_loads_its_workflow(editor_page):
    from pathlib import Path

    from gouache.engine.workflow import load_source

    example = Path(__file__).resolve().parents[2] / "workflows" / "example.png"
    expected = load_source(example)["nodes"]  # example.png was made by gouache: it carries its workflow
    ui = editor_page.open()
    ui.js("""([b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'example.png', { type: 'image/png' }));
        document.querySelector('#canvas-box').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(example.read_bytes()).decode()])
    ui.wait_for(lambda: ui.node_ids() == list(expected), what="the example's workflow")
    assert ui.js("window.gouache.exportWorkflow()")["nodes"] == expected


def test_a_seed_set_to_randomize_changes_after_each_run(editor_page, server):
    ui = editor_page.open()
    number = ui.add_from_palette("Number")
    record = ui.add_from_palette("Record")
    ui.connect(number, "value", record, "value")
    ui.type_value(record, "seed", "1234")
    assert ui.js("window.gouache.exportWorkflow()")["layout"][record]["seed_control"] == {"seed": "randomize"}
    ui.page.click("#run")
    ui.wait_for(lambda: ui.js("window.gouache.exportWorkflow()")["nodes"][record]["inputs"]["seed"] != 1234, what="a new seed")
    runs = Client(server.url).get("/api/runs").json
    submitted = (runs["queue"] + runs["history"])[0]["run_id"]
    workflow = Client(server.url).get(f"/api/runs/{submitted}?workflow=1").json["workflow"]
    assert workflow["nodes"][record]["inputs"]["seed"] == 1234  # the run used the value shown when it was queued
