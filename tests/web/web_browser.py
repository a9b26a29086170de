"""Playwright helpers for the browser tests: Debian's Chromium, an editor page, mouse gestures."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("GOUACHE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


class EditorPage:
    """The editor in a browser page, driven the way a person drives it.

    Wait with :meth:`wait_for`, not ``page.wait_for_function``: Playwright evaluates its string in
    the page, which the editor's Content-Security-Policy (no eval) rightly refuses.
    """

    def __init__(self, page: Any, url: str, shots: Path) -> None:
        self.page = page
        self.url = url
        self.shots = shots
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._check_console)
        page.on("response", self._check_response)

    def _check_console(self, message: Any) -> None:
        """A console error fails the test (a CSP refusal, a failed script, an uncaught rejection).

        Chromium also logs every 4xx reply as "Failed to load resource"; a refusal the API answers on
        purpose (a workflow with problems) is checked against its model instead, so it is let through.
        """
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource: the server responded with a status of 4"):
            return
        self.errors.append(f"console: {message.text}")

    def _check_response(self, response: Any) -> None:
        """Check each API body the editor receives against its route's model, as the test client does."""
        from urllib.parse import urlsplit

        from web_support import Reply, check_reply

        url = urlsplit(response.url)
        if not url.path.startswith("/api/") or response.status in (301, 302, 304):
            return
        try:
            reply = Reply(response.status, {"Content-Type": response.headers.get("content-type", "")}, response.body())
            check_reply(response.request.method, url.path + (f"?{url.query}" if url.query else ""), reply)
        except AssertionError as error:
            self.errors.append(str(error))

    def open(self, query: str = "?new=1") -> EditorPage:
        self.page.goto(self.url + "/" + query)
        self.page.wait_for_selector("body[data-ready=true]", timeout=20_000)
        return self

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def node_ids(self) -> list[str]:
        return self.js("window.gouache.nodeIds()")

    def add_from_palette(self, node_type: str) -> str:
        before = set(self.node_ids())
        self.page.fill("#palette-search", node_type)
        self.page.click(f"#palette-list button[data-type='{node_type}']")
        self.page.fill("#palette-search", "")
        (new,) = set(self.node_ids()) - before
        return new

    def add_from_search(self, query: str, at: tuple[int, int] = (700, 650)) -> str:
        before = set(self.node_ids())
        box = self.page.locator("#graph").bounding_box()
        self.page.mouse.dblclick(box["x"] + at[0] - 200, box["y"] + at[1] - 40)
        self.page.wait_for_selector("#search-popup:not([hidden])")
        self.page.keyboard.type(query)
        self.page.keyboard.press("Enter")
        (new,) = set(self.node_ids()) - before
        return new

    def drag(self, start: list[float], end: list[float]) -> None:
        mouse = self.page.mouse
        mouse.move(*start)
        mouse.down()
        for step in range(1, 11):
            mouse.move(start[0] + (end[0] - start[0]) * step / 10, start[1] + (end[1] - start[1]) * step / 10)
        mouse.up()

    def connect(self, source: str, output: str, target: str, input_name: str) -> None:
        start = self.js("([n, s]) => window.gouache.slotPosition(n, 'output', s)", [source, output])
        end = self.js("([n, s]) => window.gouache.slotPosition(n, 'input', s)", [target, input_name])
        self.drag(start, end)

    def move_node(self, node: str, dx: float, dy: float) -> None:
        x, y = self.js("(n) => { const node = window.gouache.editor.nodeById(n); return [node.pos[0] + 60, node.pos[1] - 15]; }", node)
        start = self.js("(p) => { const e = window.gouache.editor; const [cx, cy] = e.canvas.ds.convertOffsetToCanvas(p);"
                        " const r = document.querySelector('#graph').getBoundingClientRect(); return [r.left + cx, r.top + cy]; }", [x, y])
        self.drag(start, [start[0] + dx, start[1] + dy])

    def type_value(self, node: str, widget: str, text: str) -> None:
        x, y = self.js("([n, w]) => window.gouache.widgetPosition(n, w)", [node, widget])
        self.page.mouse.click(x, y)
        field = self.page.locator(".graphdialog .value")
        field.fill(text)
        if field.evaluate("(e) => e.localName") == "textarea":
            self.page.click(".graphdialog button")
        else:
            field.press("Enter")

    def links(self) -> list[dict[str, str]]:
        return self.js("window.gouache.links()")

    def state(self, node: str) -> dict[str, Any] | None:
        return self.js("(n) => window.gouache.nodeState(n)", node)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        self.shot("timeout")
        raise AssertionError(f"timed out waiting for {what}")
