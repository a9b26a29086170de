"""Workflow builders and environment helpers shared by the engine tests."""

from __future__ import annotations

import os
from pathlib import Path


def chain(length: int, first: float = 1.0) -> dict:
    """A workflow: Number -> Add -> Add -> ... -> Record."""
    nodes = {"n0": {"type": "Number", "inputs": {"value": first}}}
    for index in range(1, length):
        nodes[f"n{index}"] = {"type": "Add", "inputs": {"a": {"node": f"n{index - 1}", "output": "value" if index == 1 else "sum"}, "b": 1}}
    last = f"n{length - 1}"
    nodes["out"] = {"type": "Record", "inputs": {"value": {"node": last, "output": "value" if length == 1 else "sum"}}}
    return {"format": "gouache/1", "nodes": nodes}


def subprocess_env(site: Path, home: Path) -> dict[str, str]:
    """Environment for running ``gouache`` with the toy distribution installed and a temp home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env["GOUACHE_HOME"] = str(home)
    env.pop("GOUACHE_PLUGINS_BLOCK", None)
    env.pop("GOUACHE_PLUGINS_ALLOW", None)
    return env
