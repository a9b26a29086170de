"""`gouache serve` answers `/api/nodes` without importing what only other requests use (issue 18's start).

The HTTP bodies' models (``gouache.web.schemas``) and ComfyUI's API (``gouache.web.comfy.api``: its messages,
prompt table and relay) are imported on first use: a run, a websocket, a ComfyUI route. Each check of what a
process imported runs a real ``gouache serve`` in a new interpreter, because an import made by another test
would hide one here. Every ComfyUI test (``test_comfy_api.py``) starts a new app, so its first ComfyUI request
makes the API through the same deferred path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import toy_pack
from web_support import Client

from gouache.engine import Engine
from gouache.web.background import BackgroundServer
from gouache.web.comfy import COMFY
from gouache.web.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
DEFERRED = ("gouache.web.schemas", "gouache.web.comfy.api", "gouache.web.comfy.messages", "gouache.web.comfy.relay",
            "gouache.web.comfy.prompts")

SERVE_THEN_ASK = """
import gc, json, os, signal, socket, sys, threading, time, urllib.request
import websocket
from gouache.cli.main import main

DEFERRED = %r
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
url = f"http://127.0.0.1:{port}"
found = {}

def ask():
    while True:
        try:
            nodes = json.load(urllib.request.urlopen(url + "/api/nodes", timeout=60))
            break
        except OSError:
            time.sleep(0.02)
    found["node_types"] = len(nodes["nodes"])
    found["imported_at_first_answer"] = [name for name in DEFERRED if name in sys.modules]
    found["collecting"] = gc.isenabled()
    head = urllib.request.Request(url + "/system_stats", method="HEAD")
    found["comfy_head"] = urllib.request.urlopen(head, timeout=60).status
    found["comfy_stats"] = sorted(json.load(urllib.request.urlopen(url + "/system_stats", timeout=60)))
    comfy = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?clientId=me", timeout=60)
    found["comfy_ws"] = json.loads(comfy.recv())["type"]
    comfy.close()
    own = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=60)
    found["ws"] = json.loads(own.recv())["type"]
    own.close()
    found["imported_at_end"] = [name for name in DEFERRED if name in sys.modules]
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=ask, daemon=True).start()
code = main(["--home", sys.argv[1], "serve", "--port", str(port)])
print(json.dumps({**found, "code": code}))
""" % (DEFERRED,)


def test_serve_answers_nodes_before_importing_schemas_or_comfy_then_serves_them(tmp_path):
    done = subprocess.run([sys.executable, "-c", SERVE_THEN_ASK, str(tmp_path / "home")], capture_output=True,
                          text=True, cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["node_types"] > 0 and found["code"] == 0
    assert found["imported_at_first_answer"] == [], f"imported before it was used: {found['imported_at_first_answer']}"
    assert found["collecting"], "the cyclic collector stayed paused after the server started"
    # The first ComfyUI request (a HEAD included) makes the API; its websocket and gouache's own work after it.
    assert found["comfy_head"] == 200
    assert {"system", "devices"} <= set(found["comfy_stats"])
    assert found["comfy_ws"] == "status" and found["ws"] == "state"
    assert found["imported_at_end"] == list(DEFERRED)


def test_a_run_left_queued_starts_the_comfy_api_with_the_server(tmp_path):
    # It may be a ComfyUI prompt whose client reconnects to hear it run: the relay must see it start.
    home = tmp_path / "home"
    store = RunStore(home / "gouache-server.sqlite3")
    store.add("left-queued", {"format": "gouache/1", "nodes": {}}, None)
    store.close()
    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=home)
    with BackgroundServer(engine) as server:
        assert server.app[COMFY].started
    with BackgroundServer(Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path / "other")) as server:
        assert not server.app[COMFY].started
        assert Client(server.url).get("/queue").status == 200
        assert server.app[COMFY].started
