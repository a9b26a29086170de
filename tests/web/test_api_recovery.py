"""Queue and history survive a kill: queued runs run, the running one is marked interrupted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from web_support import Client, steps_workflow

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(home: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(HERE / "serve_toy.py"), str(home), str(port)], cwd=HERE)
    client = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/api/runs").status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start")


@pytest.mark.slow
def test_nothing_is_lost_when_the_server_is_killed(tmp_path):
    home, port = tmp_path / "home", free_port()
    client = Client(f"http://127.0.0.1:{port}")
    process = start(home, port)
    try:
        done = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0)}).json["run_id"]
        assert client.wait_run(done)["status"] == "succeeded"
        running = client.post("/api/runs", {"workflow": steps_workflow(steps=1000, delay=0.05)}).json["run_id"]
        queued = [client.post("/api/runs", {"workflow": steps_workflow(steps=2, delay=0, x=i)}).json["run_id"]
                  for i in range(2)]
        while client.get(f"/api/runs/{running}").json["status"] != "running":
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    process = start(home, port)
    try:
        interrupted = client.get(f"/api/runs/{running}").json
        assert interrupted["status"] == "interrupted"
        assert "stopped" in interrupted["error"]["message"]
        for run_id in queued:
            assert client.wait_run(run_id)["status"] == "succeeded"
        kept = client.get(f"/api/runs/{done}").json
        assert kept["status"] == "succeeded" and kept["outputs"]["swatch"]["images"]
        assert client.get(f"/api/files/output/{kept['outputs']['swatch']['images'][0]['path']}").status == 200
    finally:
        process.terminate()
        process.wait(30)
