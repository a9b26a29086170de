"""Queue N runs from the editor, the seed going up by one from run to run (a sweep on the seed)."""

from __future__ import annotations

import pytest

from web_support import Client, chain

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def seeded(seed: int, control: str) -> dict:
    return chain(("number", {"type": "Number", "inputs": {"value": 1.0}}),
                 ("record", {"type": "Record", "inputs": {"value": {"node": "number", "output": "value"}, "seed": seed}}),
                 layout={"number": {"pos": [40, 60]}, "record": {"pos": [360, 60], "seed_control": {"seed": control}}})


def test_three_runs_with_seeds_one_apart(editor_page, server):
    client = Client(server.url)
    client.put("/api/workflows/seeded", seeded(7, "increment"))
    ui = editor_page.open("?workflow=seeded")
    ui.page.wait_for_selector("#connection[data-state=open]")
    ui.page.click("#run-count", click_count=3)
    ui.page.keyboard.type("3")
    ui.page.click("#run")
    ui.wait_for(lambda: ui.page.locator("#history li[data-status=succeeded]").count() == 3, what="three runs")
    ui.wait_for(lambda: ui.page.inner_text("#message").startswith("run succeeded"), what="the status line")
    runs = [item.get_attribute("data-run") for item in ui.page.locator("#history li").all()]
    seeds = sorted(client.get(f"/api/runs/{run}?workflow=1").json["workflow"]["nodes"]["record"]["inputs"]["seed"]
                   for run in runs)
    assert seeds == [7, 8, 9]
    # The seed's control (increment) then moves it past the three runs.
    assert ui.js("window.gouache.exportWorkflow()")["nodes"]["record"]["inputs"]["seed"] == 10


def test_the_editor_says_when_there_is_no_seed_to_vary(editor_page, server):
    client = Client(server.url)
    client.put("/api/workflows/plain", chain(("number", {"type": "Number", "inputs": {"value": 1.0}}),
                                            ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "number", "output": "value"}}})))
    ui = editor_page.open("?workflow=plain")
    ui.page.fill("#run-count", "4")
    ui.page.click("#run")
    ui.wait_for(lambda: "no typed-in seed" in ui.page.inner_text("#message"), what="the refusal")
    assert client.get("/api/runs").json["history"] == [] and client.get("/api/runs").json["queue"] == []
