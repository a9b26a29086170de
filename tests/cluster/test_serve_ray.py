"""``gouache serve --ray local``: the server's queue on two CPU worker actors, driven over HTTP as a user would.

One server for the module (starting Ray and two workers that load torch takes a while): a local Ray
instance started by the command itself, nothing external. The tests run in file order; the last one
kills a worker's process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="gouache[ray] is part of the test extra; pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "web"))

from web_support import Client, check_message, unbatch  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
WORKFLOW = json.loads((REPO / "workflows" / "text-to-image.json").read_text())
PNG = b"\x89PNG\r\n\x1a\n"


def workflow(steps: int, checkpoint: str = "gouache-tiny", seed: int = 1, size: int = 64) -> dict[str, Any]:
    """The shipped text-to-image at ``size`` px, with ``steps`` sampler steps."""
    changed = json.loads(json.dumps(WORKFLOW))
    nodes = changed["nodes"]
    nodes["checkpoint"]["inputs"]["name"] = checkpoint
    nodes["latent"]["inputs"].update(width=size, height=size)
    nodes["sampler"]["inputs"].update(steps=steps, seed=seed)
    return changed


class Events:
    """A websocket client in a thread keeping every message it gets (each checked against its model)."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "/ws"
        self.messages: list[dict[str, Any]] = []
        self.previews: list[str] = []
        """The node of each preview frame."""
        self.failures: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True).start()
        assert self._ready.wait(30), "cannot connect to the websocket"

    async def _listen(self) -> None:
        import aiohttp

        from gouache.web.hub import parse_preview_frame

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self._ready.set()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    self.previews.append(parse_preview_frame(message.data)[0])
                elif message.type == aiohttp.WSMsgType.TEXT:
                    decoded = json.loads(message.data)
                    try:
                        check_message(decoded)
                    except AssertionError as error:
                        self.failures.append(str(error))
                    self.messages.extend(unbatch(decoded))

    def of(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        """The data of this run's messages of ``kind``."""
        return [m["data"] for m in list(self.messages) if m["type"] == kind and m["data"].get("run_id") == run_id]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``gouache serve --ray local --workers 2``, the workers reading a home of their own with a second
    checkpoint, ``tiny-copy``, that the server's home lacks (nothing shared but what Ray carries)."""
    home, workers = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("workers")
    (workers / "models" / "checkpoints").mkdir(parents=True)
    os.symlink(REPO / "nodes" / "embedded" / "weights" / "gouache-tiny", workers / "models" / "checkpoints" / "tiny-copy")
    process, client = serve(home, "--workers", "2", "--worker-threads", "1", "--retries", "1",
                            "--worker-home", str(workers))
    events = Events(client.url)
    yield client, events, home
    stop(process)
    assert not events.failures, events.failures


def serve(home: Path, *options: str) -> tuple[subprocess.Popen, Client]:
    """``gouache serve --ray local OPTIONS`` on a free port with ``home``, once it answers."""
    port = free_port()
    with open(home / "serve.log", "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "gouache", "serve", "--port", str(port), "--ray", "local",
                                    *options], env={**os.environ, "GOUACHE_HOME": str(home)}, stdout=log,
                                   stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 600
    while True:
        assert process.poll() is None, (home / "serve.log").read_text()
        assert time.monotonic() < deadline, "the server did not start in 600 s"
        try:
            if client.get("/api/runs").status == 200:
                return process, client
        except OSError:
            time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """Stop the server as Ctrl-C does (it interrupts its runs, ends its workers and its Ray instance)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the server did not stop within 60 s of SIGINT") from None


def wait_running(client: Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        record = client.get(f"/api/runs/{run_id}").json
        if record["status"] == "running":
            return record
        assert record["status"] == "queued", record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not start")


def run(client: Client, body: dict[str, Any]) -> str:
    reply = client.post("/api/runs", body)
    assert reply.status == 202, reply.json
    return reply.json["run_id"]


def test_a_model_no_worker_has_fails_validation_naming_the_model_and_the_workers(served):
    client, _, _ = served
    reply = client.post("/api/runs", {"workflow": workflow(2, checkpoint="nowhere")})
    assert reply.status == 400
    [problem] = reply.json["problems"]
    assert (problem["node"], problem["input"], problem["code"]) == ("checkpoint", "name", "not_on_any_worker")
    assert "no worker has checkpoints 'nowhere'" in problem["message"]
    assert len(re.findall(r"worker-\d-\w+ \(gouache-tiny, tiny-copy\)", problem["message"])) == 2, problem
    assert client.get("/api/runs").json["queue"] == []


def test_the_editor_offers_the_models_the_workers_have(served):
    client, _, _ = served
    [loader] = [node for node in client.get("/api/nodes").json["nodes"] if node["type"] == "CheckpointLoader"]
    [name] = [spec for spec in loader["inputs"] if spec["name"] == "name"]
    assert name["choices"] == ["gouache-tiny", "tiny-copy"]
    assert [entry["name"] for entry in client.get("/api/models").json["checkpoints"]] == ["gouache-tiny"]


def test_two_workers_run_a_sweep_over_http_and_every_output_arrives(served):
    client, events, home = served
    reply = client.post("/api/runs", {"workflow": workflow(2), "sweep": {"sampler.seed": "1..6"}})
    assert reply.status == 202
    records = [client.wait_run(run["run_id"], timeout=600) for run in reply.json["runs"]]
    assert [record["status"] for record in records] == ["succeeded"] * 6, [r["error"] for r in records]
    assert len({record["attempts"][0]["worker"] for record in records}) == 2  # both workers took runs
    for record in records:
        [attempt] = record["attempts"]
        assert attempt["outcome"] == "succeeded" and attempt["finished"] >= attempt["started"]
        [image] = record["outputs"]["save"]["images"]
        # The head's own output folder: the bytes came back from the worker.
        assert (home / "output" / image["path"]).read_bytes()[:8] == PNG
        assert client.get(f"/api/files/output/{image['path']}").body[:8] == PNG
        # Events reached the websocket as for a local run: the saved image named as the head stores it.
        finished = [data for data in events.of(record["run_id"], "node_finished") if data["node"] == "save"]
        assert finished and finished[0]["images"] == [image]
        assert events.of(record["run_id"], "finished")[0]["status"] == "succeeded"
        assert events.of(record["run_id"], "progress")
    assert "sampler" in events.previews  # latent previews made on the workers, as binary frames


def test_interrupt_reaches_a_remote_run_within_a_step(served):
    client, events, _ = served
    run_id = run(client, {"workflow": workflow(1000, seed=7, size=128)})
    wait_running(client, run_id)
    while not events.of(run_id, "progress"):
        time.sleep(0.05)
    asked = time.monotonic()
    reply = client.delete(f"/api/runs/{run_id}")
    assert (reply.status, reply.json["status"]) == (202, "interrupting")
    record = client.wait_run(run_id, timeout=60)
    assert record["status"] == "interrupted" and record["error"]["code"] == "interrupted"
    assert time.monotonic() - asked < 30
    assert max(progress["value"] for progress in events.of(run_id, "progress")) < 1000
    assert record["attempts"][0]["outcome"] == "interrupted"


def test_affinity_sends_runs_to_the_worker_holding_their_checkpoint(served):
    client, _, _ = served
    # Every worker holds gouache-tiny now. Keep one busy, so a run of tiny-copy must go to the other.
    busy = run(client, {"workflow": workflow(1000, seed=8, size=128)})
    first = wait_running(client, busy)["attempts"][-1]["worker"]
    copy = client.wait_run(run(client, {"workflow": workflow(2, checkpoint="tiny-copy")}), timeout=300)
    other = copy["attempts"][0]["worker"]
    assert other != first
    client.delete(f"/api/runs/{busy}")
    assert client.wait_run(busy, timeout=60)["status"] == "interrupted"
    # Both free: the one holding tiny-copy takes tiny-copy; gouache-tiny goes to the one holding it alone.
    again = client.wait_run(run(client, {"workflow": workflow(2, checkpoint="tiny-copy", seed=2)}), timeout=300)
    assert again["attempts"][0]["worker"] == other
    plain = client.wait_run(run(client, {"workflow": workflow(2, seed=3)}), timeout=300)
    assert plain["attempts"][0]["worker"] == first


def test_a_worker_killed_mid_run_loses_no_run(served):
    client, _, home = served
    reply = client.post("/api/runs", {"workflow": workflow(40), "sweep": {"sampler.seed": "30..32"}})
    ids = [entry["run_id"] for entry in reply.json["runs"]]
    victim = wait_running(client, ids[0])["attempts"][-1]
    os.kill(victim["pid"], signal.SIGKILL)  # the worker's process dies mid-run
    records = [client.wait_run(run_id, timeout=600) for run_id in ids]
    assert [record["status"] for record in records] == ["succeeded"] * 3, [r["error"] for r in records]
    lost, finished = records[0]["attempts"]
    assert (lost["worker"], lost["pid"], lost["outcome"]) == (victim["worker"], victim["pid"], "worker_lost")
    assert finished["outcome"] == "succeeded" and finished["worker"] != victim["worker"]
    assert all(attempt["worker"] != victim["worker"] for record in records[1:] for attempt in record["attempts"])
    for record in records:
        [image] = record["outputs"]["save"]["images"]
        assert (home / "output" / image["path"]).read_bytes()[:8] == PNG


def test_a_restart_keeps_the_queue(tmp_path):
    """Runs queued when the server stops run after it starts again (on new workers); the running one is interrupted."""
    process, client = serve(tmp_path, "--workers", "1")
    try:
        running = run(client, {"workflow": workflow(1000, seed=50, size=128)})
        wait_running(client, running)
        queued = [run(client, {"workflow": workflow(2, seed=seed)}) for seed in (51, 52)]
    finally:
        stop(process)
    process, client = serve(tmp_path, "--workers", "1")
    try:
        assert client.get(f"/api/runs/{running}").json["status"] == "interrupted"
        records = [client.wait_run(run_id, timeout=300) for run_id in queued]
    finally:
        stop(process)
    assert [record["status"] for record in records] == ["succeeded"] * 2
    assert all(len(record["attempts"]) == 1 for record in records)
