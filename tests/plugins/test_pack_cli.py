"""``gouache packs list|info``, the pack filters and --safe-mode, run as a user runs them."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from pack_sandbox import gouache_cli, toy_site  # noqa: F401 (fixtures)

GREETING_WORKFLOW = {"format": "gouache/1", "nodes": {
    "hi": {"type": "Greet", "inputs": {"name": "pack"}},
    "out": {"type": "Shout", "inputs": {"text": {"node": "hi", "output": "text"}}}}}


@pytest.fixture
def workflow(tmp_path):
    path = tmp_path / "greet.json"
    path.write_text(json.dumps(GREETING_WORKFLOW))
    return str(path)


def test_list_json_gives_every_pack_with_version_status_and_node_types(gouache_cli):
    packs = gouache_cli.packs()
    assert packs["greet"] == {"name": "greet", "status": "loaded", "distribution": "gouache-greet",
                              "version": "1.0.0", "error": None, "node_types": ["Greet", "Shout"],
                              "web_extensions": []}
    assert packs["builtin"]["status"] == "blocked" and packs["builtin"]["distribution"] == "gouache"


def test_a_pack_that_fails_is_listed_with_its_error_and_the_others_still_load(gouache_cli):
    packs = gouache_cli.packs()
    assert packs["broken"]["status"] == "error"
    assert "failed to import: ImportError: needs the library frobnicate" in packs["broken"]["error"]
    assert packs["clash"]["status"] == "error" and "no docstring" in packs["clash"]["error"]
    assert packs["greet"]["status"] == "loaded"
    done = gouache_cli("packs", "list")
    assert done.returncode == 0
    assert "broken (gouache-broken 0.3): error, 0 node types\n  error: failed to import" in done.stdout
    assert "greet (gouache-greet 1.0.0): loaded, 2 node types\n  nodes: Greet, Shout" in done.stdout
    # ... and the log says so too, on stderr.
    assert "node pack 'broken': failed to import" in done.stderr


def test_info_shows_one_pack_with_its_nodes(gouache_cli):
    done = gouache_cli("packs", "info", "gouache-greet")
    assert done.returncode == 0, done.stderr
    assert "name: greet\ndistribution: gouache-greet\nversion: 1.0.0\nstatus: loaded" in done.stdout
    assert "toy/text/Greet v1" in done.stdout
    info = gouache_cli.json("packs", "info", "greet")
    assert [node["type"] for node in info["nodes"]] == ["Greet", "Shout"]
    assert info["nodes"][0]["inputs"][0]["name"] == "name"


def test_info_on_an_unknown_pack_lists_the_known_ones(gouache_cli):
    done = gouache_cli("packs", "info", "nope")
    assert done.returncode == 2
    assert "no pack named 'nope'" in done.stderr and "greet" in done.stderr


def test_block_list_from_the_environment(gouache_cli, workflow):
    blocked = "builtin,gouache-greet"
    assert gouache_cli.packs(GOUACHE_PACKS_BLOCK=blocked)["greet"]["status"] == "blocked"
    done = gouache_cli("run", workflow, GOUACHE_PACKS_BLOCK=blocked)
    assert done.returncode == 2 and "unknown node type 'Greet'" in done.stderr
    assert gouache_cli("run", workflow).returncode == 0


def test_allow_list_from_the_environment_loads_only_the_named_third_party_packs(gouache_cli, workflow):
    packs = gouache_cli.packs(GOUACHE_PACKS_ALLOW="greet")
    assert packs["greet"]["status"] == "loaded"
    assert packs["broken"]["status"] == packs["clash"]["status"] == "blocked"
    done = gouache_cli("run", workflow, "--quiet", GOUACHE_PACKS_ALLOW="greet")
    assert done.returncode == 0 and "HELLO, PACK" in done.stdout
    assert gouache_cli("run", workflow, GOUACHE_PACKS_ALLOW="someone-else").returncode == 2


def test_run_safe_mode_loads_no_third_party_pack(gouache_cli, workflow):
    done = gouache_cli("run", workflow, "--safe-mode")
    assert done.returncode == 2
    assert "[unknown_node_type]" in done.stderr and "'Greet'" in done.stderr
    # Safe mode is also how to get past a pack that breaks things: no error from it is logged.
    assert "broken" not in done.stderr
    nodes = gouache_cli.json("nodes", "--safe-mode")
    assert not {"Greet", "Shout"} & {node["type"] for node in nodes}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, deadline: float):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("safe_mode", [False, True], ids=["normal", "safe-mode"])
def test_serve_safe_mode_serves_no_third_party_node(gouache_cli, safe_mode):
    port = free_port()
    command = [str(gouache_cli.python), "-m", "gouache", "serve", "--port", str(port)]
    server = subprocess.Popen(command + ["--safe-mode"] * safe_mode, env=gouache_cli.env, cwd=gouache_cli.cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        payload = get_json(f"http://127.0.0.1:{port}/api/nodes", time.monotonic() + 60)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    types = {node["type"] for node in payload["nodes"]}
    assert ("Greet" in types) is not safe_mode
    colours = {t["name"]: t["color"] for t in payload["types"]}
    assert ("GREETING" in colours) is not safe_mode
    assert ("node pack 'broken': failed to import" in stderr) is not safe_mode
