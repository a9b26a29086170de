"""Editor benchmark with a 2,000-node workflow in Chromium (issue 16); prints a Markdown table.

    python bench/bench_editor.py [--nodes 2000] [--repeats 5] [--baseline REV]

- load: navigation to a ready editor showing the workflow (``body[data-ready=true]``), fresh page each time,
  twice: by the page's own clock (from navigation start to the moment the attribute is set: what a person
  waits) and by the benchmark's wall clock around Playwright's ``goto`` and ``wait_for_selector`` (which
  adds the round trips to Playwright's driver process, large on a loaded machine);
- ``Editor.load``: the editor's own part of a load, the gouache/1 workflow made into litegraph nodes and
  links (the workflow the page shows, exported and loaded again), timed in the page;
- pan: a middle-button drag with Playwright's real mouse, two loops of 60 moves that end where they began;
- zoom: 60 mouse-wheel steps in and out over the canvas;
- pan with every node in view: the same drag, zoomed out until the whole graph fits the canvas (litegraph
  then draws nodes in its low-quality mode), the hardest case for drawing.

For pan and zoom two figures per frame: the time between animation frames the page saw while the gesture
ran (what the user sees: 16.7 ms at 60 Hz when every frame is drawn in time), and the time litegraph's
``LGraphCanvas.draw`` took for each frame it drew. Floors (issue 16): load under 2 s, frame under 33 ms.

With ``--baseline REV`` (a git revision) every measure is also taken, interleaved in the same run, with
the editor as it was at REV: the page gets ``web/static/js/editor.js`` from ``git show REV:...`` in place of
the current one (the rest of the page as it is now). ``--baseline 819ad68`` is the editor before its
low-detail drawing and cheaper node sizing (``web/static/js/lowdetail.js``).

Needs Debian's Chromium at /usr/bin/chromium (or GOUACHE_CHROMIUM) and the Playwright package.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "web"), str(ROOT / "tests" / "engine"), str(ROOT / "bench")]

from bench_web import percentile  # noqa: E402
from web_browser import ARGS, CHROMIUM  # noqa: E402
from web_support import Client, big_workflow, toy_engine  # noqa: E402

from gouache.web.background import BackgroundServer  # noqa: E402

RECORDER = """() => {
    const canvas = window.gouache.canvas;
    const draw = canvas.draw.bind(canvas);
    window.bench = { draws: [], frames: [], visible: 0, on: false };
    canvas.draw = (...args) => {  // only frames with something to draw count (litegraph skips the others)
        const dirty = canvas.dirty_canvas || canvas.dirty_bgcanvas || args[0] || args[1];
        const started = performance.now();
        const result = draw(...args);
        if (window.bench.on && dirty) {
            window.bench.draws.push(performance.now() - started);
            window.bench.visible = Math.max(window.bench.visible, canvas.visible_nodes?.length ?? 0);
        }
        return result;
    };
    const tick = (now) => { if (window.bench.on) window.bench.frames.push(now); requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""


RELOAD = """() => {
    const editor = window.gouache.editor;
    const workflow = editor.export();
    const started = performance.now();
    editor.load(workflow);
    const took = performance.now() - started;
    editor.fitView();
    return took;
}"""


ZOOM_OUT = """() => {
    const canvas = window.gouache.canvas;
    const nodes = window.gouache.graph._nodes;
    const right = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
    const bottom = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    canvas.ds.scale = Math.min(canvas.canvas.width / right, canvas.canvas.height / bottom) * 0.95;
    canvas.ds.offset = [0, 0];
    canvas.setDirty(true, true);
}"""


# Run in the page before its own scripts: the page-clock time (ms since navigation start) of readiness.
READY_CLOCK = """new MutationObserver((_, observer) => {
    if (document.body?.dataset.ready !== "true") return;
    window.benchReadyAt = performance.now();
    observer.disconnect();
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-ready"] });"""


def open_page(server: BackgroundServer, browser, name: str, editor_js: str | None):
    """A fresh page with the editor open on workflow ``name``; ``editor_js`` replaces editor.js if given.
    Returns the page and the seconds to a ready editor by the page's clock and by the wall clock."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(READY_CLOCK)
    if editor_js is not None:
        page.route("**/static/js/editor.js", lambda route: route.fulfill(
            status=200, content_type="text/javascript; charset=utf-8", body=editor_js))
    started = time.perf_counter()
    page.goto(server.url + f"/?workflow={name}")
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    wall = time.perf_counter() - started
    return page, page.evaluate("window.benchReadyAt") / 1000, wall


def load_times(server: BackgroundServer, browser, name: str, count: int, repeats: int,
               variants: dict[str, str | None]) -> dict[str, tuple[list[float], list[float]]]:
    """Seconds from navigation to a ready editor showing the workflow, per variant, interleaved:
    by the page's clock and by the wall clock."""
    seconds: dict[str, tuple[list[float], list[float]]] = {variant: ([], []) for variant in variants}
    for _ in range(repeats):
        for variant, editor_js in variants.items():
            page, in_page, wall = open_page(server, browser, name, editor_js)
            seconds[variant][0].append(in_page)
            seconds[variant][1].append(wall)
            assert page.evaluate("window.gouache.nodeIds().length") == count
            page.close()
    return seconds


def gesture(page, kind: str) -> tuple[list[float], list[float], int]:
    """Frame intervals and draw times (ms) while a pan or zoom gesture runs, and the most nodes a frame drew."""
    box = page.locator("#graph").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("() => { window.bench.draws = []; window.bench.frames = []; window.bench.visible = 0; window.bench.on = true; }")
    if kind == "pan":
        page.mouse.move(x, y)
        page.mouse.down(button="middle")
        for step in range(1, 121):  # two loops around the start, ending where it began: the view comes back
            angle = 2 * math.pi * step / 60
            page.mouse.move(x + 250 * math.sin(angle), y + 150 * math.sin(2 * angle), steps=1)
            page.wait_for_timeout(16)
        page.mouse.up(button="middle")
    else:
        page.mouse.move(x, y)
        for step in range(60):
            page.mouse.wheel(0, -120 if step < 30 else 120)
            page.wait_for_timeout(16)
    page.wait_for_timeout(100)
    page.evaluate("() => { window.bench.on = false; }")
    frames = page.evaluate("window.bench.frames")
    draws = page.evaluate("window.bench.draws")
    return [later - earlier for earlier, later in zip(frames, frames[1:])], draws, page.evaluate("window.bench.visible")


def row(label: str, milliseconds: list[float], floor: str) -> str:
    if not milliseconds:
        return f"| {label} | (none) | | | {floor} |"
    return (f"| {label} | {statistics.median(milliseconds):.1f} ms | {percentile(milliseconds, 0.95):.1f} ms | "
            f"{max(milliseconds):.1f} ms | {floor} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", metavar="REV", help="also measure the editor.js of this git revision")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    variants: dict[str, str | None] = {"now": None}
    if args.baseline:
        variants[args.baseline] = subprocess.run(["git", "show", f"{args.baseline}:web/static/js/editor.js"], cwd=ROOT,
                                                 check=True, capture_output=True, text=True).stdout
    name = f"bench-{args.nodes}"
    kinds = ("pan", "zoom", "pan, all nodes in view")
    with tempfile.TemporaryDirectory() as home, BackgroundServer(toy_engine(Path(home))) as server, \
            sync_playwright() as playwright:
        assert Client(server.url).put(f"/api/workflows/{name}", big_workflow(args.nodes)).status == 201
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        loads = load_times(server, browser, name, args.nodes, args.repeats, variants)
        pages = {}
        for variant, editor_js in variants.items():
            pages[variant] = open_page(server, browser, name, editor_js)[0]
            pages[variant].evaluate(RECORDER)
        builds: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(args.repeats):
            for variant, page in pages.items():
                builds[variant].append(page.evaluate(RELOAD))
        results = {variant: {kind: ([], [], 0) for kind in kinds} for variant in variants}
        for kind in kinds:
            for _ in range(args.repeats):
                for variant, page in pages.items():  # interleaved: both see the same load on the machine
                    if kind.startswith("pan, all"):
                        page.evaluate(ZOOM_OUT)
                    got_intervals, got_draws, visible = gesture(page, kind.split(",")[0])
                    intervals, draws, most = results[variant][kind]
                    results[variant][kind] = (intervals + got_intervals, draws + got_draws, max(most, visible))
        browser.close()
    print(f"editor with {args.nodes} nodes: {args.repeats} loads, {args.repeats} gestures of each kind\n")
    print("| editor | measure | median | p95 | max | floor |")
    print("|---|---|---|---|---|---|")
    for variant in variants:
        label = "now" if variant == "now" else f"at {variant}"
        in_page, wall = loads[variant]
        print(f"| {label} " + row(f"editor load, {args.nodes}-node workflow (page clock)", [second * 1000 for second in in_page], "< 2 s"))
        print(f"| {label} " + row(f"editor load, {args.nodes}-node workflow (wall clock, with Playwright)",
                                  [second * 1000 for second in wall], "< 2 s"))
        print(f"| {label} " + row("`Editor.load` of the workflow (in the page)", builds[variant], ""))
        for kind, (intervals, draws, most) in results[variant].items():
            print(f"| {label} " + row(f"{kind} (up to {most} nodes drawn): time between frames", intervals, "< 33 ms"))
            print(f"| {label} " + row(f"{kind}: LGraphCanvas.draw per frame drawn", draws, "< 33 ms"))


if __name__ == "__main__":
    main()
