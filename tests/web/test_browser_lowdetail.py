"""Zoomed far out, the canvas draws each node as a box in its colours (with its run marks) and links as straight lines
(web/static/js/lowdetail.js, issue 16): checked by the pixels Chromium drew, so the cheap drawing
can never become a blank or wrong canvas."""

from __future__ import annotations

import pytest

from web_support import Client, big_workflow

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

COUNT = 300
COLOURED = {"color": "#a03030", "bgcolor": "#30a040"}  # every 7th node: its own title and body colours


def grid_workflow() -> dict:
    """The benchmark's big graph (bench/bench_editor.py), smaller, some nodes in their own colours."""
    workflow = big_workflow(COUNT)
    for position, place in enumerate(workflow["layout"].values()):
        if position % 7 == 3:
            place.update(COLOURED)
    return workflow


# For each node: the pixel at the middle of its body and of its title bar against the colours it should
# have; for each link between neighbours on a row, the pixel halfway along it against the background.
SAMPLE = """async () => {
    const { isLowDetail } = await import("/static/js/lowdetail.js");
    const canvas = window.gouache.canvas;
    canvas.draw(true, true);
    const ctx = canvas.canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const rgb = (colour) => { ctx.fillStyle = colour; const hex = ctx.fillStyle; return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); };
    const pixel = (graphPoint) => {
        const [x, y] = canvas.ds.convertOffsetToCanvas(graphPoint);
        return [...ctx.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data.slice(0, 3)];
    };
    const title = window.gouache.LiteGraph.NODE_TITLE_HEIGHT;
    const nodes = window.gouache.graph._nodes.map((node) => ({
        id: node.properties.id,
        body: pixel([node.pos[0] + node.size[0] / 2, node.pos[1] + node.size[1] / 2]), bodyColour: rgb(node.renderingBgColor),
        title: pixel([node.pos[0] + node.size[0] / 2, node.pos[1] - title / 2]), titleColour: rgb(node.renderingColor),
    }));
    const links = [...window.gouache.graph._links.values()].map((link) => {
        const from = window.gouache.graph.getNodeById(link.origin_id);
        const to = window.gouache.graph.getNodeById(link.target_id);
        const [a, b] = [from.getOutputPos(link.origin_slot), to.getInputPos(link.target_slot)];
        return { neighbours: Math.abs(to.pos[0] - from.pos[0] - 300) < 1 && to.pos[1] === from.pos[1],
                 middle: pixel([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]) };
    });
    const visible = canvas.visible_nodes.length;
    return { low: isLowDetail(canvas), scale: canvas.ds.scale, nodes, links, visible,
             background: [...ctx.getImageData(canvas.canvas.width - 3, canvas.canvas.height - 3, 1, 1).data.slice(0, 3)] };
}"""


def close(a: list[int], b: list[int], tolerance: int = 24) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def zoom_out_with_the_wheel(ui, offset: tuple[int, int]) -> list[float]:
    """Turn the mouse wheel over the graph point ``offset`` until the canvas is below 0.15x; the page point it turned at."""
    origin = ui.js("""([x0, y0]) => { const c = window.gouache.canvas; const [x, y] = c.ds.convertOffsetToCanvas([x0, y0]);
        const r = document.querySelector('#graph').getBoundingClientRect(); return [r.left + x, r.top + y]; }""", list(offset))
    ui.page.mouse.move(*origin)
    for _ in range(60):
        if ui.js("window.gouache.canvas.ds.scale") < 0.15:
            break
        ui.page.mouse.wheel(0, 120)
        ui.page.wait_for_timeout(20)
    return origin


def test_zoomed_far_out_every_node_is_a_box_in_its_own_colours_and_links_are_drawn(editor_page, server):
    ui = editor_page
    assert Client(server.url).put("/api/workflows/grid", grid_workflow()).status == 201
    ui.open("?workflow=grid")
    opening = ui.js(SAMPLE)
    assert not opening["low"], opening["scale"]  # the editor opens at a readable zoom: full detail

    # Zoom out with the mouse wheel over the graph's top left corner until the whole grid is in view.
    origin = zoom_out_with_the_wheel(ui, (0, -40))
    far = ui.js(SAMPLE)
    assert far["low"] and far["scale"] < 0.15, far["scale"]
    assert far["visible"] == COUNT
    background = far["background"]
    wrong = [(n["id"], n["body"], n["bodyColour"], n["title"], n["titleColour"]) for n in far["nodes"]
             if not (close(n["body"], n["bodyColour"]) and close(n["title"], n["titleColour"]))]
    assert not wrong, (background, wrong[:5], len(wrong))
    coloured = [n for n in far["nodes"] if close(n["body"], [0x30, 0xa0, 0x40])]
    assert len(coloured) == len([p for p in range(COUNT) if p % 7 == 3])
    neighbours = [link for link in far["links"] if link["neighbours"]]
    assert len(neighbours) > COUNT / 2
    blank = [link["middle"] for link in neighbours if close(link["middle"], background, 8)]
    assert not blank, (background, blank[:5], len(blank))

    # Zoomed back in, litegraph draws every detail again (what the other browser tests check).
    ui.page.mouse.move(*origin)
    for _ in range(60):
        if ui.js("window.gouache.canvas.ds.scale") >= opening["scale"]:
            break
        ui.page.mouse.wheel(0, -120)
        ui.page.wait_for_timeout(20)
    again = ui.js(SAMPLE)
    assert not again["low"]


# The pixels across a node's left edge, halfway down, in the canvas (client pixels around the outline).
EDGE = """(id) => {
    const canvas = window.gouache.canvas;
    canvas.draw(true, true);
    const node = window.gouache.editor.nodeById(id);
    const ctx = canvas.canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const [x, y] = canvas.ds.convertOffsetToCanvas([node.pos[0] - 2, node.pos[1] + node.size[1] / 2]);
    const row = ctx.getImageData(Math.round(x * ratio) - 3, Math.round(y * ratio), 7, 1).data;
    return { scale: canvas.ds.scale, pixels: [0, 1, 2, 3, 4, 5, 6].map((i) => [...row.slice(4 * i, 4 * i + 3)]) };
}"""


def test_zoomed_far_out_a_failed_node_keeps_its_red_outline(editor_page, server):
    """Run marks stay visible: the outline is at least two screen pixels wide at any zoom."""
    workflow = big_workflow(40)
    workflow["nodes"]["fail"] = {"type": "Fail"}
    workflow["nodes"]["record"] = {"type": "Record", "inputs": {"value": {"node": "fail", "output": "x"}}}
    workflow["layout"]["fail"] = {"pos": [0, 600], "size": [240, 100]}
    workflow["layout"]["record"] = {"pos": [300, 600], "size": [240, 100]}
    assert Client(server.url).put("/api/workflows/failing-grid", workflow).status == 201
    ui = editor_page.open("?workflow=failing-grid")
    ui.page.click("#run")
    ui.page.wait_for_selector("#problems li[data-node=fail]")
    assert ui.state("fail")["state"] == "error"
    zoom_out_with_the_wheel(ui, (0, 600))
    edge = ui.js(EDGE, "fail")
    assert edge["scale"] < 0.15
    assert any(close(pixel, [0xE0, 0x5A, 0x5A], 40) for pixel in edge["pixels"]), edge
