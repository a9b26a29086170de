"""Workflow builders and environment helpers shared by the engine tests."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent


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
    env.pop("GOUACHE_PACKS_BLOCK", None)
    env.pop("GOUACHE_PACKS_ALLOW", None)
    return env


def make_toy_site(site: Path) -> Path:
    """Make ``site`` a folder on which the toy pack is an installed distribution (``gouache`` entry
    point ``toy``), beside a ``broken`` pack whose import fails; returns ``site``.

    Put it on PYTHONPATH (subprocesses) or sys.path to make ``Engine()`` find the packs.
    """
    site.mkdir(parents=True)
    (site / "toy_pack.py").write_text((HERE / "toy_pack.py").read_text())
    dist = site / "gouache_toy-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gouache-toy\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[gouache]\ntoy = toy_pack\n")
    broken = site / "gouache_broken-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: gouache-broken\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text("[gouache]\nbroken = broken_pack\n")
    (site / "broken_pack.py").write_text(textwrap.dedent("""
        raise ImportError("this pack needs a library that is not installed")
    """))
    return site
