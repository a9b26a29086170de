"""Fixtures for the engine tests: an engine with the toy pack, and the toy pack as an installed distribution."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import toy_pack  # noqa: E402
from engine_helpers import chain, subprocess_env  # noqa: E402,F401

from gouache.engine import Engine  # noqa: E402


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """An engine that knows only the toy pack, with its home in a temporary folder."""
    toy_pack.Record.log.clear()
    toy_pack.Slow.on_step = None
    return Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path / "home")


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """A folder on which the toy pack is an installed distribution with a ``gouache`` entry point.

    Put it on PYTHONPATH (subprocesses) or sys.path to make ``Engine()`` find the pack.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_pack.py").write_text(Path(toy_pack.__file__).read_text())
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
