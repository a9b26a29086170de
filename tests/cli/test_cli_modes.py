"""``gouache run`` and ``gouache validate`` honour node modes saved in the file (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import subprocess_env


@pytest.fixture
def cli(toy_site, tmp_path):
    env = subprocess_env(toy_site, tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gouache", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    return run


def link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def workflow_file(tmp_path: Path, **modes: str) -> str:
    """n -> plus (n + 40) -> out, and n -> twice (n + n) -> other; ``modes`` sets node modes."""
    nodes = {
        "n": {"type": "Number", "inputs": {"value": 2}},
        "plus": {"type": "Add", "inputs": {"a": link("n", "value"), "b": 40}},
        "out": {"type": "Record", "inputs": {"value": link("plus", "sum")}},
        "twice": {"type": "Add", "inputs": {"a": link("n", "value"), "b": link("n", "value")}},
        "other": {"type": "Record", "inputs": {"value": link("twice", "sum")}},
    }
    for node_id, mode in modes.items():
        nodes[node_id]["mode"] = mode
    path = tmp_path / "modes.json"
    path.write_text(json.dumps({"format": "gouache/1", "nodes": nodes}))
    return str(path)


def test_run_skips_a_muted_branch_and_passes_through_a_bypassed_node(cli, tmp_path):
    done = cli("run", workflow_file(tmp_path, plus="bypass", twice="mute"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["executed"] == ["n", "out"]  # plus handed n on; twice and other did not run


def test_run_without_modes_runs_every_node(cli, tmp_path):
    done = cli("run", workflow_file(tmp_path), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["plus"] == {"sum": 42.0}


def test_validate_says_what_does_not_run(cli, tmp_path):
    done = cli("validate", workflow_file(tmp_path, plus="bypass", twice="mute"))
    assert done.returncode == 0, done.stderr
    assert "valid (2 nodes; 1 bypassed, 1 muted, 1 skipped)" in done.stdout


def test_validate_refuses_a_bypass_with_nothing_to_hand_on_and_a_half_muted_node(cli, tmp_path):
    path = Path(workflow_file(tmp_path, n="mute"))
    raw = json.loads(path.read_text())
    raw["nodes"]["plus"]["inputs"]["b"] = link("m", "value")
    raw["nodes"]["m"] = {"type": "Number", "inputs": {"value": 1}}
    raw["nodes"]["blob"] = {"type": "Blob", "inputs": {}}
    raw["nodes"]["size"] = {"type": "BlobSize", "inputs": {"blob": link("blob", "blob")}, "mode": "bypass"}
    raw["nodes"]["sized"] = {"type": "Record", "inputs": {"value": link("size", "size")}}
    path.write_text(json.dumps(raw))
    done = cli("validate", str(path))
    assert done.returncode == 2
    assert "[muted_input] node 'plus' (Add) input 'a' comes from node 'n', which is muted" in done.stderr
    assert "[bypass_without_input] node 'size' (BlobSize) is bypassed, but its output 'size'" in done.stderr
    assert "twice" not in done.stderr  # fed only by the muted node: silent, not a problem
