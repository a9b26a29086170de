"""Fixtures for the command-line tests: the engine tests' toy pack, installed as a distribution."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
if str(ENGINE_TESTS) not in sys.path:
    sys.path.append(str(ENGINE_TESTS))

from engine_helpers import make_toy_site  # noqa: E402


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """A folder on which the toy pack is an installed distribution; put it on PYTHONPATH."""
    return make_toy_site(tmp_path / "site")
