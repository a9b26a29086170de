"""The editor opens ComfyUI and A1111 files (issue 15): dropped on the canvas or chosen in the Open dialog, they
go through the server's importers; what could not be converted is listed in the problems panel."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from web_support import png_with_text

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

COMFY_FILES = Path(__file__).resolve().parents[1] / "nodes" / "comfy_files"
A1111 = ("a red circle <lora:gouache-tiny-outline:0.5>, blue background\nNegative prompt: blurry\n"
         "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 3, Seed: 7, Size: 128x128, "
         "Model: gouache-tiny, Version: v1.10.1")


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path_factory.mktemp("home"))
    with BackgroundServer(engine) as server:
        yield server


@pytest.fixture
def ui(browser, builtin_server, tmp_path):
    from web_browser import EditorPage

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    editor = EditorPage(page, builtin_server.url, tmp_path).open()
    editor.console = console
    yield editor
    editor.shot("last")
    context.close()
    assert not editor.errors, editor.errors
    assert not console, console


def drop(ui, data: bytes, name: str, kind: str) -> None:
    ui.js("""([b64, name, type]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type }));
        document.querySelector('#canvas-box').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(data).decode(), name, kind])


def types(ui) -> dict[str, str]:
    return {node_id: entry["type"] for node_id, entry in ui.js("window.gouache.exportWorkflow()")["nodes"].items()}


def problems(ui) -> list[dict[str, str]]:
    return ui.js("""() => [...document.querySelectorAll('#problems li')].map(
        (li) => ({ node: li.dataset.node, code: li.dataset.code, text: li.textContent }))""")


def test_dropping_a_comfyui_png_opens_its_graph_with_layout_and_titles(ui):
    workflow = json.loads((COMFY_FILES / "default_ui.json").read_text())
    workflow["nodes"].append({"id": 40, "type": "UltimateSDUpscale", "mode": 0, "inputs": [], "outputs": [],
                              "properties": {"cnr_id": "comfyui_ultimatesdupscale"}, "widgets_values": []})
    data = png_with_text(workflow=json.dumps(workflow), prompt=(COMFY_FILES / "default_api_tiny.json").read_text())
    drop(ui, data, "ComfyUI_00001_.png", "image/png")
    ui.wait_for(lambda: set(ui.node_ids()) == {"3", "4", "5", "6", "7", "8", "9"}, what="the ComfyUI graph")
    assert types(ui) == {"3": "Sampler", "4": "CheckpointLoader", "5": "EmptyLatent", "6": "TextEncode",
                         "7": "TextEncode", "8": "VAEDecode", "9": "SaveImage"}
    exported = ui.js("window.gouache.exportWorkflow()")
    assert exported["layout"]["6"]["title"] == "Positive prompt"
    [listed] = problems(ui)  # the custom node ComfyUI had and gouache has not: named, with its pack
    assert listed["node"] == "40" and listed["code"] == "unmapped_node" and "comfyui_ultimatesdupscale" in listed["text"]
    assert "imported ComfyUI_00001_.png: 1 problem" in ui.page.inner_text("#message")
    ui.shot("comfyui-png")


def test_dropping_an_a1111_png_opens_its_settings_as_a_graph(ui):
    drop(ui, png_with_text(parameters=A1111), "00001-7.png", "image/png")
    ui.wait_for(lambda: "LoraLoader" in types(ui).values(), what="the A1111 graph")
    nodes = ui.js("window.gouache.exportWorkflow()")["nodes"]
    sampler = next(entry for entry in nodes.values() if entry["type"] == "Sampler")["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (7, 2, 3, "dpmpp_2m", "karras")
    assert problems(ui) == [] and ui.page.inner_text("#message") == "opened 00001-7.png"


def test_the_open_dialog_imports_a_comfyui_json_file(ui, tmp_path):
    path = tmp_path / "comfy_api.json"
    path.write_text((COMFY_FILES / "lora_api.json").read_text())
    ui.page.click("#open")  # the toolbar's Open button shows the dialog with its file input
    ui.page.set_input_files("#open-file", str(path))
    ui.wait_for(lambda: "LoraLoader" in types(ui).values(), what="the imported workflow")
    assert types(ui)["10"] == "LoraLoader" and problems(ui) == []


def test_a_file_no_importer_reads_says_so_and_keeps_the_graph(ui):
    drop(ui, png_with_text(parameters=A1111), "00001-7.png", "image/png")
    before = ui.wait_for(lambda: "LoraLoader" in types(ui).values() and ui.node_ids(), what="the A1111 graph")
    drop(ui, png_with_text(Software="something else"), "photo.png", "image/png")
    ui.wait_for(lambda: "cannot open photo.png" in ui.page.inner_text("#message"), what="the refusal")
    assert ui.node_ids() == before
    [listed] = problems(ui)
    assert listed["code"] == "unreadable_workflow"
    # The 400 that says so is the one error the browser logs (for any failed request); nothing else.
    assert [text for text in ui.console if "status of 400" not in text] == []
    ui.console.clear()
