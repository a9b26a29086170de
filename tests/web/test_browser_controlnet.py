"""The shipped ControlNet workflow in the editor: open it, swap the control image through LoadImage's upload
button, run it, and see the shape drawn where the new silhouette is (read back by the training checker)."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def real_server(tmp_path):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path / "home")  # a fresh home: the model, its ControlNet and the image all ship
    if "ControlNetApply" not in engine.registry:
        pytest.fail("the built-in diffusion pack did not load")
    with BackgroundServer(engine) as server:
        yield server


def test_swap_the_control_image_through_the_upload_button_and_run(browser, real_server, tmp_path):
    from gouache_training import checker, data, evaluate
    from web_browser import EditorPage

    # A star of the workflow's size in the lower right, where no prompt can put it.
    scene = data.Scene("yellow", "star", "blue", None, None, 25.0, 90.0, 84.0)
    assert not evaluate.expressible(scene.cx, scene.cy)
    upload = tmp_path / "my-silhouette.png"
    Image.fromarray(data.silhouette(scene)).save(upload)
    want = checker.centroid(np.asarray(Image.open(upload).convert("RGB")))

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    console: list[str] = []
    try:
        ui = EditorPage(context.new_page(), real_server.url, tmp_path).open("?workflow=controlnet")
        ui.page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
        assert {"controlnet", "control", "apply", "sampler", "save"} <= set(ui.node_ids())
        shipped = ui.js("window.gouache.exportWorkflow()")["nodes"]["control"]["inputs"]["image"]
        assert shipped == "controlnet-silhouette.png"
        with ui.page.expect_file_chooser() as chooser:
            x, y = ui.js("([n, w]) => window.gouache.widgetPosition(n, w)", ["control", "upload image…"])
            ui.page.mouse.click(x, y)
        chooser.value.set_files(str(upload))
        ui.wait_for(lambda: ui.js("window.gouache.exportWorkflow()")["nodes"]["control"]["inputs"]["image"]
                    == upload.name, what="the uploaded control image in the LoadImage node")
        ui.shot("swapped")
        ui.page.click("#run")
        done = ui.wait_for(lambda: (s := ui.state("save")) and s["images"] and s, timeout=300, what="the saved image")
        ui.page.wait_for_selector("#history li[data-status=succeeded]")
        ui.shot("result")
        with urllib.request.urlopen(f"{real_server.url}/api/files/output/{done['images'][0]}") as reply:
            image = np.asarray(Image.open(io.BytesIO(reply.read())).convert("RGB"))
        got = checker.centroid(image)
        assert got is not None, "the output shows no shape"
        distance = float(np.hypot(got[0] - want[0], got[1] - want[1]))
        assert distance <= evaluate.CONTROL_TOLERANCE, f"drawn at {got}, the uploaded silhouette is at {want}"
        assert checker.read(image).shape == "star"
        exported = ui.js("window.gouache.exportWorkflow()")
        assert exported["nodes"]["apply"]["inputs"]["image"] == {"node": "control", "output": "image"}
        assert not ui.errors, ui.errors
        assert not console, console
    finally:
        context.close()
