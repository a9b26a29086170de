"""Text-to-image built by hand from an empty canvas on the editor's defaults: nodes added by search,
wired with the mouse, only the prompt typed. The new nodes take gouache-tiny's recommended settings
(128 px, CFG 3, 20 Euler steps), the loader shows that it loads, and the embedded model's checker
reads the picture the prompt asked for."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest

from test_browser_text_to_image import real_server  # noqa: F401  (the real built-in pack and gouache-tiny)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

# Where each node goes (canvas pixels from the top-left corner), in the order they are added.
PLACES = {"CheckpointLoader": (30, 60), "TextEncode": (310, 40), "EmptyLatent": (310, 500), "Sampler": (590, 40),
          "VAEDecode": (590, 460), "SaveImage": (590, 590)}


def test_text_to_image_from_an_empty_canvas_on_the_model_defaults(browser, real_server, tmp_path):  # noqa: F811
    from PIL import Image

    from gouache_training.checker import read
    from web_browser import EditorPage

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    ui = EditorPage(context.new_page(), real_server.url, tmp_path).open("?new=1")
    try:
        assert ui.node_ids() == []

        def add(query: str, place: tuple[int, int]) -> str:
            return ui.add_from_search(query, at=(place[0] + 200, place[1] + 40))

        latent = add("EmptyLatent", PLACES["EmptyLatent"])  # before any loader: the default checkpoint's settings
        checkpoint = add("CheckpointLoader", PLACES["CheckpointLoader"])
        positive = add("TextEncode", PLACES["TextEncode"])
        negative = add("TextEncode", (PLACES["TextEncode"][0], PLACES["TextEncode"][1] + 230))
        sampler = add("Sampler", PLACES["Sampler"])
        decode = add("VAEDecode", PLACES["VAEDecode"])
        save = add("SaveImage", PLACES["SaveImage"])
        ui.shot("added")
        for wire in ((checkpoint, "model", sampler, "model"), (checkpoint, "clip", positive, "clip"),
                     (checkpoint, "clip", negative, "clip"), (positive, "conditioning", sampler, "positive"),
                     (negative, "conditioning", sampler, "negative"), (latent, "latent", sampler, "latent"),
                     (sampler, "latent", decode, "latent"), (checkpoint, "vae", decode, "vae"),
                     (decode, "image", save, "images")):
            ui.connect(*wire)
        assert len(ui.links()) == 9, ui.links()
        ui.type_value(positive, "text", "a large red circle on a blue background")
        ui.page.click("#graph")  # nothing else typed: every other value is the editor's default
        exported = ui.js("window.gouache.exportWorkflow()")["nodes"]
        assert exported[checkpoint]["inputs"]["name"] == "gouache-tiny"
        assert {k: exported[sampler]["inputs"][k] for k in ("steps", "cfg", "sampler_name", "scheduler")} == {
            "steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "normal"}
        assert (exported[latent]["inputs"]["width"], exported[latent]["inputs"]["height"]) == (128, 128)
        ui.shot("wired")

        ui.page.keyboard.press("Control+Enter")
        loading = ui.wait_for(lambda: (s := ui.state(checkpoint)) and s["note"] and s, timeout=120,
                              what="the loader saying it loads")
        assert loading["state"] == "running" and loading["note"] == "loading gouache-tiny…"
        assert "loading gouache-tiny" in ui.page.inner_text("#message")
        done = ui.wait_for(lambda: (s := ui.state(save)) and s["images"] and s, timeout=300, what="the image")
        ui.page.wait_for_selector("#history li[data-status=succeeded]")
        ui.shot("result")
        with urllib.request.urlopen(f"{real_server.url}/api/files/output/{done['images'][0]}") as reply:
            image = np.asarray(Image.open(io.BytesIO(reply.read())).convert("RGB"))
        assert image.shape == (128, 128, 3)
        reading = read(image)
        assert (reading.colour, reading.shape, reading.background) == ("red", "circle", "blue"), reading
        assert not ui.errors, ui.errors
    finally:
        context.close()
