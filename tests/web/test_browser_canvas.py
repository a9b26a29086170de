"""The canvas in Debian's Chromium, driven by mouse and keyboard: menus, node modes, number
widgets and seeds, groups, reroutes and titles, image drops, zoom, tabs, minimap and shortcuts."""

from __future__ import annotations

import pytest

import canvas_pack
import toy_pack
import web_pack
from web_support import Client, chain

from gouache.engine import Engine

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def engine(tmp_path):
    return Engine(packs={"toy": toy_pack, "web": web_pack, "canvas": canvas_pack}, entry_points=False, home=tmp_path / "home")


@pytest.fixture
def ui(editor_page):
    """The editor page (console and page errors fail the test: web_browser.EditorPage)."""
    return editor_page


def exported(ui):
    return ui.js("window.gouache.exportWorkflow()")


def screen(ui, graph_point: str, arg=None) -> list[float]:
    """Client coordinates of the graph point the JS function ``graph_point(editor, arg)`` returns."""
    return ui.js(f"""([arg]) => {{ const e = window.gouache.editor; e.canvas.draw(true, true);
        const [cx, cy] = e.canvas.ds.convertOffsetToCanvas(({graph_point})(e, arg));
        const r = document.querySelector('#graph').getBoundingClientRect(); return [r.left + cx, r.top + cy]; }}""", [arg])


def point(ui, node: str, dx: float = 60, dy: float = -15) -> list[float]:
    """Client coordinates of a point of ``node`` (default: on its title bar)."""
    return screen(ui, "(e, [n, dx, dy]) => { const node = e.nodeById(n); return [node.pos[0] + dx, node.pos[1] + dy]; }",
                  [node, dx, dy])


def link_centre(ui, target: str) -> list[float]:
    """Client coordinates of the centre of the link into node ``target``."""
    return screen(ui, "(e, t) => [...e.graph._links.values()].find((l) => e.graph.getNodeById(l.target_id).properties.id === t)._pos",
                  target)


def group_title_point(ui, index: int = 0) -> list[float]:
    return screen(ui, "(e, i) => { const g = e.graph._groups[i]; return [g.pos[0] + 20, g.pos[1] + 8]; }", index)


def canvas_point(ui, x: float, y: float) -> list[float]:
    box = ui.page.locator("#graph").bounding_box()
    return [box["x"] + x, box["y"] + y]


def menu_entries(ui) -> list[str]:
    """The entries of the innermost open context menu."""
    ui.page.wait_for_selector(".litecontextmenu")
    return ui.js("() => { const menus = document.querySelectorAll('.litecontextmenu');"
                 " return [...menus[menus.length - 1].querySelectorAll('.litemenu-entry')].map((e) => e.textContent.trim()).filter(Boolean); }")  # no separators


def choose(ui, text: str) -> None:
    """Click the entry ``text`` of the innermost open context menu."""
    ui.page.locator(".litecontextmenu").last.locator(".litemenu-entry", has_text=text).first.click()


def type_in_dialog(ui, text: str) -> None:
    """Answer the canvas's open prompt (a title, a font size) with ``text`` and Enter."""
    field = ui.page.locator(".graphdialog input")
    field.fill(text)
    field.press("Enter")


def right_click(ui, at: list[float]) -> list[str]:
    ui.page.mouse.click(at[0], at[1], button="right")
    return menu_entries(ui)


# ---- 1. menus ---------------------------------------------------------------------------------

def test_the_canvas_menu_adds_a_node_by_category_and_escape_closes_it(ui):
    ui.open()
    entries = right_click(ui, canvas_point(ui, 300, 300))
    assert "Add Node" in entries and "Add Group" in entries
    assert not [entry for entry in entries if "Subgraph" in entry]
    choose(ui, "Add Node")
    categories = menu_entries(ui)
    assert {"toy", "web"} <= set(categories)
    choose(ui, "web")
    assert {"test", "canvas"} <= set(menu_entries(ui))  # "web/test" and "web/canvas" nest under "web"
    choose(ui, "canvas")
    assert menu_entries(ui) == ["Noise"]
    choose(ui, "Noise")
    assert ui.node_ids() == ["noise1"]
    assert ui.page.locator(".litecontextmenu").count() == 0
    node = ui.js("window.gouache.editor.nodeById('noise1').pos")
    click = ui.js("() => window.gouache.canvas.convertOffsetToCanvas([300, 300])")
    assert abs(node[0] - click[0]) < 2 and abs(node[1] - click[1]) < 2  # where the menu was opened

    right_click(ui, canvas_point(ui, 500, 500))
    choose(ui, "Add Node")
    menu_entries(ui)
    ui.page.keyboard.press("Escape")
    assert ui.page.locator(".litecontextmenu").count() == 0

    right_click(ui, canvas_point(ui, 600, 600))
    choose(ui, "Add Group")
    assert [group["title"] for group in exported(ui)["groups"]] == ["Group"]


def test_the_node_menu_sets_title_colour_collapse_modes_clone_and_remove(ui):
    ui.open()
    noise = ui.add_from_palette("Noise")
    entries = right_click(ui, point(ui, noise))
    for wanted in ("Title", "Mode", "Bypass", "Mute", "Collapse", "Pin", "Colors", "Clone", "Remove"):
        assert wanted in entries, (wanted, entries)
    for unsupported in ("Subgraph", "Properties", "Inputs", "Outputs", "Shapes"):
        assert not [entry for entry in entries if unsupported in entry], (unsupported, entries)

    choose(ui, "Mode")
    assert menu_entries(ui) == ["✓ Always", "Never (mute)", "Bypass"]
    choose(ui, "Never (mute)")
    assert exported(ui)["nodes"][noise]["mode"] == "mute"
    right_click(ui, point(ui, noise))
    choose(ui, "Mode")
    choose(ui, "Bypass")
    assert exported(ui)["nodes"][noise]["mode"] == "bypass"
    ui.shot("bypassed")
    right_click(ui, point(ui, noise))
    choose(ui, "Stop bypassing")
    assert "mode" not in exported(ui)["nodes"][noise]
    ui.page.mouse.click(*point(ui, noise))
    ui.page.keyboard.press("Control+m")
    assert exported(ui)["nodes"][noise]["mode"] == "mute"
    ui.page.keyboard.press("Control+b")
    assert exported(ui)["nodes"][noise]["mode"] == "bypass"

    right_click(ui, point(ui, noise))
    choose(ui, "Title")
    type_in_dialog(ui, "Seed source")
    assert exported(ui)["layout"][noise]["title"] == "Seed source"

    right_click(ui, point(ui, noise))
    choose(ui, "Colors")
    choose(ui, "red")
    assert exported(ui)["layout"][noise]["color"]

    right_click(ui, point(ui, noise))
    choose(ui, "Clone")
    assert len(ui.node_ids()) == 2
    clone = [node for node in ui.node_ids() if node != noise][0]
    assert exported(ui)["nodes"][clone]["type"] == "Noise"
    ui.move_node(clone, 0, 250)  # the clone lands on its original: move it aside

    right_click(ui, point(ui, noise))
    choose(ui, "Collapse")
    assert exported(ui)["layout"][noise]["collapsed"] is True

    right_click(ui, point(ui, clone))
    choose(ui, "Remove")
    assert ui.node_ids() == [noise]

    right_click(ui, point(ui, noise))
    choose(ui, "Title")
    ui.page.keyboard.press("Escape")
    assert ui.page.locator(".graphdialog").count() == 0


def test_a_mode_set_in_the_menu_is_saved_and_reopened(ui, server):
    client = Client(server.url)
    client.put("/api/workflows/modes", chain(("a", {"type": "Number", "inputs": {"value": 1.0}}),
                                             ("b", {"type": "Steps", "inputs": {"x": {"node": "a", "output": "value"}}})))
    ui.open("?workflow=modes")
    right_click(ui, point(ui, "b"))
    choose(ui, "Mode")
    choose(ui, "Bypass")
    ui.page.once("dialog", lambda dialog: dialog.accept("modes-saved"))
    ui.page.click("#save")
    ui.wait_for(lambda: ui.page.inner_text("#workflow-name") == "modes-saved", what="the save")
    saved = client.get("/api/workflows/modes-saved").json
    assert saved["nodes"]["b"]["mode"] == "bypass" and "mode" not in saved["nodes"]["a"]
    ui.open("?workflow=modes-saved")
    assert ui.js("window.gouache.editor.nodeById('b').mode") == 4  # litegraph's BYPASS
    assert exported(ui)["nodes"]["b"]["mode"] == "bypass"
    ui.page.mouse.click(*point(ui, "b"))
    ui.page.keyboard.press("Control+c")
    ui.page.mouse.move(*canvas_point(ui, 500, 600))
    ui.page.keyboard.press("Control+v")
    assert exported(ui)["nodes"]["b_2"]["mode"] == "bypass"  # a copy keeps its mode


# ---- 3. number widgets and seeds ---------------------------------------------------------------

def test_number_widgets_take_typed_arithmetic_without_eval(ui):
    ui.open()
    noise = ui.add_from_palette("Noise")
    ui.type_value(noise, "strength", "2*(3+4)")
    assert exported(ui)["nodes"][noise]["inputs"]["strength"] == 14
    ui.type_value(noise, "strength", " 1/4 - -0.5")
    assert exported(ui)["nodes"][noise]["inputs"]["strength"] == 0.75
    ui.type_value(noise, "strength", "3 +")
    assert "the expression ends too early" in ui.page.inner_text("#message")
    ui.type_value(noise, "strength", "alert(1)")
    assert 'unexpected "a"' in ui.page.inner_text("#message")
    ui.type_value(noise, "strength", "500")
    assert "above the maximum 100" in ui.page.inner_text("#message")
    assert exported(ui)["nodes"][noise]["inputs"]["strength"] == 0.75  # each refusal kept the value
    ui.type_value(noise, "seed", "(2+3)*3")
    assert exported(ui)["nodes"][noise]["inputs"]["seed"] == 15
    ui.type_value(noise, "seed", "7/2")
    assert "3.5 is not a whole number" in ui.page.inner_text("#message")


def test_a_seed_holds_the_servers_exact_limit_and_follows_its_control(ui, server):
    client = Client(server.url)
    ui.open()
    noise = ui.add_from_palette("Noise")
    record = ui.add_from_palette("Record")
    ui.connect(noise, "seed", record, "value")
    ui.type_value(noise, "seed", "18446744073709551615")
    assert exported(ui)["nodes"][noise]["inputs"]["seed"] == 2**64 - 1  # exact, past JS's 2**53
    ui.type_value(noise, "seed", "18446744073709551616")
    assert "above the maximum 18446744073709551615" in ui.page.inner_text("#message")
    assert exported(ui)["nodes"][noise]["inputs"]["seed"] == 2**64 - 1
    ui.type_value(noise, "strength", "2")
    ui.page.mouse.click(*canvas_point(ui, 560, 640))
    ui.page.keyboard.press("Control+z")  # undo the strength: the seed comes back from the snapshot exact
    assert exported(ui)["nodes"][noise]["inputs"] == {"seed": 2**64 - 1, "strength": 1}
    x, y = ui.js("([n, w]) => window.gouache.widgetPosition(n, w)", [noise, "seed after run"])
    ui.page.mouse.click(x, y)
    choose(ui, "fixed")
    ui.page.click("#run")
    ui.wait_for(lambda: client.get("/api/runs").json["history"], what="the run with the largest seed")
    run = client.get("/api/runs").json["history"][0]
    assert run["status"] == "succeeded", run
    sent = client.get(f"/api/runs/{run['run_id']}?workflow=1").json["workflow"]
    assert sent["nodes"][noise]["inputs"]["seed"] == 2**64 - 1

    ui.type_value(noise, "seed", "41")
    for control, after in (("increment", 42), ("decrement", 41), ("fixed", 41)):
        ui.page.mouse.click(x, y)
        choose(ui, control)
        ui.page.click("#run")
        ui.wait_for(lambda: exported(ui)["nodes"][noise]["inputs"]["seed"] == after, what=f"the seed after {control}")
        assert exported(ui)["layout"][noise]["seed_control"] == {"seed": control}
    ui.page.mouse.click(x, y)
    choose(ui, "randomize")
    seen = set()
    for _ in range(3):
        ui.page.click("#run")
        ui.wait_for(lambda: exported(ui)["nodes"][noise]["inputs"]["seed"] not in seen | {41}, what="a random seed")
        seed = exported(ui)["nodes"][noise]["inputs"]["seed"]
        assert 0 <= seed <= 2**64 - 1
        seen.add(seed)
    assert max(seen) > 2**53  # drawn from the whole range, not JS's safe integers


# ---- 2. groups, reroutes and titles --------------------------------------------------------------

def test_groups_reroutes_and_titles_round_trip_through_save_reopen_and_export(ui, server):
    import json

    client = Client(server.url)
    client.put("/api/workflows/plain", chain(("a", {"type": "Number", "inputs": {"value": 1.0}}),
                                             ("b", {"type": "Steps", "inputs": {"x": {"node": "a", "output": "value"}, "steps": 1}}),
                                             ("c", {"type": "Swatch", "inputs": {"value": {"node": "b", "output": "x"}}})))
    ui.open("?workflow=plain")
    ui.move_node("c", 0, 220)  # a bend in the b -> c link, so its centre is clear of both nodes
    ui.page.mouse.click(*link_centre(ui, "c"))
    assert "Add Reroute" in menu_entries(ui)
    choose(ui, "Add Reroute")
    assert ui.js("window.gouache.graph.reroutes.size") == 1

    right_click(ui, canvas_point(ui, 700, 60))
    choose(ui, "Add Group")
    right_click(ui, group_title_point(ui))
    choose(ui, "Edit Group")
    choose(ui, "Title")
    type_in_dialog(ui, "Post-processing")
    right_click(ui, point(ui, "a"))
    choose(ui, "Title")
    type_in_dialog(ui, "Base value")

    ui.page.once("dialog", lambda dialog: dialog.accept("organised"))
    ui.page.click("#save")
    ui.wait_for(lambda: ui.page.inner_text("#workflow-name") == "organised", what="the save")
    saved = client.get("/api/workflows/organised").json
    assert saved["nodes"]["c"]["inputs"]["value"] == {"node": "b", "output": "x"}  # the engine sees a direct link
    [bend] = saved["layout"]["c"]["reroutes"]["value"]
    where = ui.js("[...window.gouache.graph.reroutes.values()][0].pos")
    assert all(abs(saved_v - v) <= 0.5 for saved_v, v in zip(bend, where))
    assert [group["title"] for group in saved["groups"]] == ["Post-processing"]
    assert saved["layout"]["a"]["title"] == "Base value"
    with ui.page.expect_download() as download:
        ui.page.click("#export")
    assert json.loads(open(download.value.path()).read()) == saved
    assert client.post("/api/runs", {"workflow": saved}).status == 202  # valid for the engine as saved
    ui.page.wait_for_selector("#history li[data-status=succeeded]")

    ui.open("?workflow=organised")
    assert ui.js("window.gouache.graph.reroutes.size") == 1
    assert ui.js("""() => { const e = window.gouache.editor;
        const link = [...e.graph._links.values()].find((l) => e.graph.getNodeById(l.target_id).properties.id === 'c');
        return e.graph.reroutes.has(link.parentId); }""")
    assert ui.js("window.gouache.graph._groups.map((g) => g.title)") == ["Post-processing"]
    assert ui.js("window.gouache.editor.nodeById('a').title") == "Base value"
    assert exported(ui) == saved

    # A PNG carries the workflow as the run got it (SaveImage writes Workflow.to_json()): dropped on
    # empty canvas it brings back the reroute, the group and the title too.
    from test_browser_editor import png_with_workflow

    from gouache.engine.workflow import parse

    carried, problems = parse(saved)  # what the engine holds, and so writes into the PNG
    assert not problems
    ui.page.click("#tab-new")
    drop(ui, png_with_workflow(carried.to_json()), "organised.png", canvas_point(ui, 560, 640))
    ui.wait_for(lambda: sorted(ui.node_ids()) == ["a", "b", "c"], what="the PNG's workflow")
    assert ui.js("window.gouache.graph.reroutes.size") == 1
    assert ui.js("window.gouache.graph._groups.map((g) => g.title)") == ["Post-processing"]
    assert exported(ui)["layout"] == saved["layout"] and exported(ui)["groups"] == saved["groups"]


# ---- 4. dropping images --------------------------------------------------------------------------

def drop(ui, data: bytes, name: str, at: list[float]) -> None:
    """Drop a file at client coordinates ``at``, as the browser does when a file is dragged in
    (Playwright's mouse cannot carry a file from the desktop: the DragEvent is made in the page)."""
    import base64

    ui.js("""([b64, name, x, y]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'image/png' }));
        const target = document.elementFromPoint(x, y);
        for (const type of ['dragenter', 'dragover', 'drop']) {
            target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true, clientX: x, clientY: y }));
        }
    }""", [base64.b64encode(data).decode(), name, at[0], at[1]])


def test_an_image_dropped_on_an_image_node_is_uploaded_and_chosen(ui, engine):
    from test_api_files import png
    from test_browser_editor import png_with_workflow
    from web_support import steps_workflow

    ui.open()
    picture = ui.add_from_palette("Picture")
    drop(ui, png((10, 20, 30)), "red.png", point(ui, picture, 100, 30))
    ui.wait_for(lambda: exported(ui)["nodes"][picture]["inputs"]["image"] == "red.png", what="the upload")
    assert (engine.settings.folder("input") / "red.png").is_file()
    assert ui.state(picture)["images"] == ["red.png"]

    ui.page.mouse.click(*point(ui, picture))  # selected; then an image dropped on empty canvas is for it
    drop(ui, png((40, 50, 60)), "blue.png", canvas_point(ui, 560, 640))
    ui.wait_for(lambda: exported(ui)["nodes"][picture]["inputs"]["image"] == "blue.png", what="the second upload")

    # A PNG carrying a workflow onto the node is an image for it; onto empty canvas it opens the workflow.
    carrying = png_with_workflow(steps_workflow(steps=2))
    drop(ui, carrying, "made.png", point(ui, picture, 100, 30))
    ui.wait_for(lambda: exported(ui)["nodes"][picture]["inputs"]["image"] == "made.png", what="the third upload")
    drop(ui, carrying, "made.png", canvas_point(ui, 560, 640))
    ui.wait_for(lambda: ui.node_ids() == ["number", "steps", "swatch"], what="the dropped workflow")


# ---- 7. a readable initial zoom ------------------------------------------------------------------

def test_a_shipped_workflow_opens_with_readable_widget_text(browser, tmp_path):
    from web_browser import EditorPage

    from gouache.web.background import BackgroundServer

    with BackgroundServer(Engine(home=tmp_path / "home")) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            ui = EditorPage(context.new_page(), server.url, tmp_path).open("?workflow=text-to-image")
            size = ui.js("() => window.gouache.canvas.ds.scale * window.gouache.LiteGraph.NODE_SUBTEXT_SIZE")
            assert size >= 11, f"widget text is {size:.1f} px on screen"
            # The graph starts on screen: the checkpoint loader (leftmost) is fully visible.
            box = ui.page.locator("#graph").bounding_box()
            left, top = point(ui, "checkpoint", 0, 0)
            assert box["x"] <= left < box["x"] + box["width"] / 2 and box["y"] <= top < box["y"] + box["height"]
            # A widget off screen is brought into view to be clicked (the sampler sits right of the fold).
            x, y = ui.js("([n, w]) => window.gouache.widgetPosition(n, w)", ["sampler", "steps"])
            assert box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
            ui.type_value("sampler", "steps", "12")
            assert ui.js("window.gouache.exportWorkflow()")["nodes"]["sampler"]["inputs"]["steps"] == 12
            ui.shot("readable")
            assert not ui.errors, ui.errors
        finally:
            context.close()


# ---- 5. tabs, the unsaved-changes guard and reloads ---------------------------------------------

def tab_titles(ui) -> list[str]:
    return ui.js("() => [...document.querySelectorAll('#tabs .tab-title')].map((b) => b.textContent)")


def click_tab(ui, title: str) -> None:
    ui.page.locator("#tabs .tab-title", has_text=title).first.click()


def test_tabs_keep_their_own_graphs_and_undo_and_survive_a_reload(ui, server):
    client = Client(server.url)
    client.put("/api/workflows/first", chain(("n", {"type": "Number", "inputs": {"value": 1.0}})))
    ui.open("?workflow=first")
    assert tab_titles(ui) == ["first"]
    ui.type_value("n", "value", "4")
    ui.page.wait_for_timeout(300)
    assert tab_titles(ui) == ["first •"]  # unsaved changes are marked

    ui.page.click("#tab-new")
    assert ui.node_ids() == [] and tab_titles(ui) == ["first •", "untitled"]
    blob = ui.add_from_palette("Blob")
    ui.page.wait_for_timeout(300)
    click_tab(ui, "first")
    assert ui.node_ids() == ["n"] and exported(ui)["nodes"]["n"]["inputs"]["value"] == 4
    ui.page.mouse.click(*canvas_point(ui, 560, 640))
    ui.page.keyboard.press("Control+z")  # this tab's own history: the typed value goes
    assert exported(ui)["nodes"]["n"]["inputs"]["value"] == 1
    click_tab(ui, "untitled")
    assert ui.node_ids() == [blob]
    ui.page.mouse.click(*canvas_point(ui, 560, 640))
    ui.page.keyboard.press("Control+z")
    assert ui.node_ids() == []
    ui.page.keyboard.press("Control+y")
    assert ui.node_ids() == [blob]

    ui.page.reload()
    ui.page.wait_for_selector("body[data-ready=true]")
    assert ui.node_ids() == [blob] and len(tab_titles(ui)) == 2
    click_tab(ui, "first")
    assert ui.node_ids() == ["n"]

    ui.open("?new=1")  # a new empty tab beside what was open: nothing is lost, nothing to ask
    assert ui.node_ids() == [] and len(tab_titles(ui)) == 3
    click_tab(ui, "first")
    assert ui.node_ids() == ["n"]


def test_closing_a_tab_or_the_page_with_unsaved_changes_asks_first(ui):
    ui.open()
    ui.add_from_palette("Number")
    ui.page.wait_for_timeout(300)
    ui.page.click("#tab-new")
    asked = []

    def answer(dialog, accept):
        asked.append((dialog.type, dialog.message))
        dialog.accept() if accept else dialog.dismiss()

    ui.page.once("dialog", lambda dialog: answer(dialog, False))
    ui.page.locator("#tabs .tab-close").first.click()
    assert asked == [("confirm", '"untitled" has unsaved changes. Close it anyway?')]
    assert len(tab_titles(ui)) == 2
    ui.page.locator("#tabs .tab-close").nth(1).click()  # the empty tab closes without a question
    assert len(tab_titles(ui)) == 1 and ui.node_ids() == ["number1"]

    with ui.page.expect_event("dialog") as leaving:
        ui.page.close(run_before_unload=True)
    assert leaving.value.type == "beforeunload"
    leaving.value.dismiss()  # stay
    assert not ui.page.is_closed()
    assert ui.node_ids() == ["number1"]


# ---- 6. minimap and shortcut help ----------------------------------------------------------------

def test_the_minimap_shows_the_graph_and_a_click_moves_the_view_there(ui, server):
    Client(server.url).put("/api/workflows/far", {
        "format": "gouache/1",
        "nodes": {"near": {"type": "Number", "inputs": {}}, "far": {"type": "Number", "inputs": {}}},
        "layout": {"near": {"pos": [0, 0]}, "far": {"pos": [6000, 3000]}}})
    ui.open("?workflow=far")
    ui.page.wait_for_timeout(300)
    transform = ui.js("JSON.parse(document.querySelector('#minimap').dataset.transform)")
    box = ui.page.locator("#minimap").bounding_box()
    target = [box["x"] + transform["x0"] + 6100 * transform["scale"], box["y"] + transform["y0"] + 3020 * transform["scale"]]
    ui.page.mouse.click(*target)
    graph = ui.page.locator("#graph").bounding_box()
    x, y = point(ui, "far", 100, 20)
    centre = [graph["x"] + graph["width"] / 2, graph["y"] + graph["height"] / 2]
    assert abs(x - centre[0]) < 20 and abs(y - centre[1]) < 20, (x, y, centre)
    # The minimap drew the far node: its pixel there is not the background.
    from PIL import Image

    ui.page.wait_for_timeout(300)
    transform = ui.js("JSON.parse(document.querySelector('#minimap').dataset.transform)")  # the view moved
    shot = Image.open(ui.shot("minimap")).convert("RGB")
    far_block = (round(box["x"] + transform["x0"] + 6010 * transform["scale"]), round(box["y"] + transform["y0"] + 3000 * transform["scale"]))
    assert shot.getpixel(far_block) != shot.getpixel((round(box["x"] + 3), round(box["y"] + box["height"] - 3)))


def test_the_help_lists_shortcuts_that_work(ui):
    ui.open()
    ui.page.mouse.click(*canvas_point(ui, 500, 500))
    ui.page.keyboard.press("?")
    ui.page.wait_for_selector("#shortcuts[open]")
    text = ui.page.inner_text("#shortcuts")
    for shortcut in ("Ctrl+Enter", "Ctrl+Z", "Ctrl+B", "Ctrl+M", "Ctrl+A", "Delete", "Escape", "Alt+click a link"):
        assert shortcut in text
    ui.page.keyboard.press("Escape")
    assert ui.page.locator("#shortcuts[open]").count() == 0
    ui.page.click("#help")
    ui.page.wait_for_selector("#shortcuts[open]")
    ui.page.click("#shortcuts button[value=close]")
    assert ui.page.locator("#shortcuts[open]").count() == 0

    # Some of what it lists, done with the keyboard: select all, bypass, remove.
    ui.add_from_palette("Number")
    ui.add_from_palette("Int")
    ui.page.mouse.click(*canvas_point(ui, 560, 640))
    ui.page.keyboard.press("Control+a")
    ui.page.keyboard.press("Control+b")
    assert {entry.get("mode") for entry in exported(ui)["nodes"].values()} == {"bypass"}
    ui.page.keyboard.press("Delete")
    assert ui.node_ids() == []


def test_the_other_menu_entries_do_what_they_say(ui, server):
    Client(server.url).put("/api/workflows/pair", chain(("a", {"type": "Number", "inputs": {"value": 1.0}}),
                                                        ("b", {"type": "Steps", "inputs": {"x": {"node": "a", "output": "value"}}})))
    ui.open("?workflow=pair")
    # Node: pin, fit size.
    right_click(ui, point(ui, "b"))
    choose(ui, "Pin")
    assert exported(ui)["layout"]["b"]["pinned"] is True
    ui.js("window.gouache.editor.nodeById('b').setSize([500, 600])")
    right_click(ui, point(ui, "b"))
    assert "Unpin" in menu_entries(ui)
    choose(ui, "Fit size to widgets")
    assert exported(ui)["layout"]["b"]["size"][1] < 600

    # Canvas, with two nodes selected: group them, align them, fit the view.
    ui.page.mouse.click(*point(ui, "a"))
    ui.page.keyboard.down("Shift")
    ui.page.mouse.click(*point(ui, "b"))
    ui.page.keyboard.up("Shift")
    entries = right_click(ui, canvas_point(ui, 500, 700))
    assert {"Group selected nodes", "Align", "Fit view"} <= set(entries) and not [e for e in entries if "Subgraph" in e]
    choose(ui, "Align")
    choose(ui, "Top")
    layout = exported(ui)["layout"]
    assert layout["a"]["pos"][1] == layout["b"]["pos"][1]
    right_click(ui, canvas_point(ui, 500, 700))
    choose(ui, "Group selected nodes")
    [group] = exported(ui)["groups"]
    x, y, w, h = group["bounding"]
    for node in ("a", "b"):
        nx, ny = layout[node]["pos"]
        assert x <= nx and y <= ny and nx + layout[node]["size"][0] <= x + w
    ui.js("() => { const ds = window.gouache.canvas.ds; ds.offset = [5000, 5000]; ds.scale = 0.3; }")
    right_click(ui, canvas_point(ui, 500, 700))
    choose(ui, "Fit view")
    assert ui.js("window.gouache.canvas.ds.offset[0]") < 1000

    # Group: colour, font size, pin, remove.
    right_click(ui, group_title_point(ui))
    choose(ui, "Edit Group")
    assert menu_entries(ui) == ["Pin", "Title", "Color", "Font size", "Fit to its nodes", "Remove"]
    choose(ui, "Color")
    choose(ui, "green")
    assert exported(ui)["groups"][0]["color"]
    right_click(ui, group_title_point(ui))
    choose(ui, "Edit Group")
    choose(ui, "Font size")
    type_in_dialog(ui, "30")
    assert exported(ui)["groups"][0]["font_size"] == 30
    right_click(ui, group_title_point(ui))
    choose(ui, "Edit Group")
    choose(ui, "Pin")
    assert exported(ui)["groups"][0]["flags"] == {"pinned": True}
    right_click(ui, group_title_point(ui))
    choose(ui, "Edit Group")
    choose(ui, "Remove")
    assert exported(ui)["groups"] == [] and sorted(ui.node_ids()) == ["a", "b"]  # its nodes stay

    # Alt+click on a link adds a reroute there (the help lists it); the link's centre menu deletes it.
    ui.page.keyboard.down("Alt")
    ui.page.mouse.click(*link_centre(ui, "b"))
    ui.page.keyboard.up("Alt")
    assert ui.js("window.gouache.graph.reroutes.size") == 1 and "reroutes" in exported(ui)["layout"]["b"]
    bend = screen(ui, "(e) => [...e.graph.reroutes.values()][0].pos")
    assert "Delete Reroute" in right_click(ui, bend)
    choose(ui, "Delete Reroute")
    assert ui.js("window.gouache.graph.reroutes.size") == 0 and "reroutes" not in exported(ui)["layout"]["b"]
    ui.page.mouse.click(*link_centre(ui, "b"))
    assert menu_entries(ui) == ["Add Node", "Add Reroute", "Delete"]
    choose(ui, "Delete")
    assert ui.links() == []


def test_a_node_bypassed_in_the_editor_does_not_run(ui, server):
    Client(server.url).put("/api/workflows/through", chain(
        ("n", {"type": "Number", "inputs": {"value": 2.0}}),
        ("steps", {"type": "Steps", "inputs": {"x": {"node": "n", "output": "value"}, "steps": 3, "delay": 0.0}}),
        ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "steps", "output": "x"}}})))
    ui.open("?workflow=through")
    right_click(ui, point(ui, "steps"))
    choose(ui, "Bypass")
    ui.page.click("#run")
    ui.wait_for(lambda: (s := ui.state("swatch")) and s["images"], what="the swatch")
    assert ui.state("n")["state"] == "done"
    assert (ui.state("steps") or {}).get("state") is None  # handed its input on, never ran
