"""Helpers for the web tests: a toy engine, a small HTTP client that checks every body it gets
against the API's models, a check for websocket messages, workflow builders."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "engine"):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

import toy_pack  # noqa: E402
import web_pack  # noqa: E402

from gouache.engine import Engine  # noqa: E402
from gouache.web.schemas import EVENTS, ROUTES, response_models  # noqa: E402

ROUTE_PATTERNS = [(route, re.compile(re.sub(r"\{\w+\}", "[^/]+", route.split(" ")[1]) + "$")) for route in ROUTES]


def route_of(method: str, path: str) -> str | None:
    """The ``ROUTES`` key a request is answered by (``"GET /api/runs/{run_id}"``), if any."""
    path = path.split("?")[0]
    for route, pattern in ROUTE_PATTERNS:
        if route.startswith(method + " ") and pattern.match(path):
            return route
    return None


def conforms(models: tuple[Any, ...], data: Any, what: str) -> None:
    """``data`` is exactly what one of ``models`` describes: no field it lacks, none it requires
    missing, and nothing it would drop or change on the way through."""
    failures = []
    for model in models:
        try:
            again = model.model_validate(data).model_dump(mode="json", exclude_unset=True)
        except Exception as error:
            failures.append(f"not a {model.__name__}: {error}")
            continue
        if again == data:
            return
        failures.append(f"changes when read as {model.__name__}: {again}")
    raise AssertionError(f"{what}: {json.dumps(data)[:2000]}\n" + "\n".join(failures))


def check_reply(method: str, path: str, reply: Reply) -> None:
    """An API reply's JSON body against the model of its route and status (``schemas.ROUTES``)."""
    if not path.startswith("/api/") or not reply.headers.get("Content-Type", "").startswith("application/json"):
        return
    route = route_of(method, path) or f"{method} {path.split('?')[0]}"
    models = response_models(route, reply.status)
    assert models, f"{route} answered {reply.status} with JSON but has no response model in schemas.ROUTES"
    conforms(models, reply.json, f"the {reply.status} body of {route}")


def check_message(message: dict[str, Any]) -> None:
    """A websocket text message: ``{"type", "data"}`` with ``data`` as the event's model says
    (each message of a ``batch`` too)."""
    assert set(message) == {"type", "data"}, message
    if message["type"] == "batch":
        assert isinstance(message["data"], dict) and set(message["data"]) == {"events"}, message
        assert message["data"]["events"], "an empty batch"
        for inner in message["data"]["events"]:
            assert inner.get("type") != "batch", "a batch inside a batch"
            check_message(inner)
    model = EVENTS.get(message["type"])
    assert model is not None, f"websocket message type {message['type']!r} has no model in schemas.EVENTS"
    conforms((model,), message["data"], f"the websocket message {message['type']!r}")


def unbatch(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages a text frame carries: the messages of a ``batch``, else the message itself."""
    return message["data"]["events"] if message["type"] == "batch" else [message]


def toy_engine(home: Path) -> Engine:
    """An engine without torch: the engine's toy pack plus the web test pack."""
    return Engine(packs={"toy": toy_pack, "web": web_pack}, entry_points=False, home=home)


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """Plain HTTP against the live server; never raises for a status code."""

    url: str

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> Reply:
        """Send a request; the reply's JSON body must match its route's response model."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if body is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                reply = Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            reply = Reply(error.code, error.headers, error.read())
        check_reply(method, path, reply)
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def wait_run(self, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the run has finished; returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(f"/api/runs/{run_id}").json
            if record["status"] not in ("queued", "running"):
                return record
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s: {record}")


def send_raw(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
             piece: int | None = None, pause: float = 0.002, announce: int | None = None) -> Reply:
    """One request written to a socket by hand: ``body`` in pieces of ``piece`` bytes with a pause
    between them (as a slow network delivers it), ``Content-Length: announce`` if given (which may
    be more than is sent); the reply is read whole, and checked like :meth:`Client.request`'s."""
    import http.client
    import socket

    host, port = url.split("//", 1)[1].rsplit(":", 1)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             f"Content-Length: {len(body) if announce is None else announce}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        step = piece or max(1, len(body))
        try:
            for start in range(0, len(body), step):
                sock.sendall(body[start:start + step])
                if piece:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before taking everything: read what it said
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        reply = Reply(response.status, response.headers, response.read())
    check_reply(method, path, reply)
    return reply


def add_chain(count: int) -> dict[str, Any]:
    """``count`` cheap toy nodes: Number sources feeding one long chain of Add nodes, then a Record."""
    sources = max(1, count // 4)
    nodes: dict[str, Any] = {f"n{i}": {"type": "Number", "inputs": {"value": float(i)}} for i in range(sources)}
    previous = {"node": "n0", "output": "value"}
    for index in range(count - sources - 1):
        nodes[f"add{index}"] = {"type": "Add", "inputs": {"a": previous,
                                                          "b": {"node": f"n{index % sources}", "output": "value"}}}
        previous = {"node": f"add{index}", "output": "sum"}
    nodes["record"] = {"type": "Record", "inputs": {"value": previous}}
    return chain(*nodes.items())


def big_workflow(count: int = 400) -> dict[str, Any]:
    """``count`` nodes: Number sources feeding a long chain of Add nodes, laid out 20 to a row
    (300 x 180 apart, 240 x 100 each): the big graph of the editor's benchmarks and browser tests."""
    nodes: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    sources = count // 4
    for index in range(sources):
        nodes[f"n{index}"] = {"type": "Number", "inputs": {"value": float(index)}}
    previous = "n0"
    for index in range(count - sources):
        node_id = f"add{index}"
        nodes[node_id] = {"type": "Add", "inputs": {"a": {"node": previous, "output": "value" if previous.startswith("n") else "sum"},
                                                    "b": {"node": f"n{index % sources}", "output": "value"}}}
        previous = node_id
    for position, node_id in enumerate(nodes):
        layout[node_id] = {"pos": [(position % 20) * 300, (position // 20) * 180], "size": [240, 100]}
    return {"format": "gouache/1", "nodes": nodes, "layout": layout, "meta": {"title": f"{count} nodes"}}


class MessageCheck:
    """A websocket client in its own thread, connected for a whole test, that checks every message.

    ``with MessageCheck(url):`` fails on leaving when a text message did not match its model or a
    binary frame was not a preview frame.
    """

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "/ws"
        self.failures: list[str] = []
        self.seen = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Any = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), name="ws-check", daemon=True)

    def __enter__(self) -> MessageCheck:
        self._thread.start()
        assert self._ready.wait(30), "the websocket check could not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive() and self._loop is not None and self._ws is not None:
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop)
        self._thread.join(30)
        assert not self.failures, "\n".join(self.failures)

    async def _listen(self) -> None:
        import aiohttp

        from gouache.web.hub import parse_preview_frame

        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
                self._loop, self._ws = asyncio.get_running_loop(), ws
                self._ready.set()
                async for message in ws:
                    try:
                        if message.type == aiohttp.WSMsgType.BINARY:
                            self.seen += 1
                            parse_preview_frame(message.data)
                        else:
                            decoded = json.loads(message.data)
                            self.seen += len(unbatch(decoded))
                            check_message(decoded)
                    except (AssertionError, ValueError) as error:
                        self.failures.append(str(error))
        except Exception as error:  # a check that cannot connect must not pass silently
            self.failures.append(f"the websocket check failed: {error!r}")
            self._ready.set()


def chain(*pairs: tuple[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A workflow from (id, node) pairs."""
    return {"format": "gouache/1", "nodes": dict(pairs), **extra}


def steps_workflow(steps: int = 5, delay: float = 0.05, x: float = 1.0) -> dict[str, Any]:
    """Number -> Steps -> Swatch: progress, previews and an image."""
    return chain(
        ("number", {"type": "Number", "inputs": {"value": x}}),
        ("steps", {"type": "Steps", "inputs": {"x": {"node": "number", "output": "value"},
                                               "steps": steps, "delay": delay}}),
        ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "steps", "output": "x"}}}),
    )


def png_with_text(**chunks: str) -> bytes:
    """A small PNG carrying ``chunks`` as tEXt chunks, as ComfyUI, A1111 and gouache write them."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()
