"""Fixtures for the engine tests: an engine with the toy pack, and the toy pack as an installed distribution."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import toy_pack  # noqa: E402
from engine_helpers import chain, make_toy_site, subprocess_env  # noqa: E402,F401

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
    return make_toy_site(tmp_path / "site")
