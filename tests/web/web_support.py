"""Helpers for the web tests: a toy engine, a small HTTP client, workflow builders."""

from __future__ import annotations

import json
import sys
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
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if body is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, error.read())

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
