"""The example pack's own test: load it into an engine without installing it, and run its workflow."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import gouache_hello  # noqa: E402
from gouache.engine import Engine  # noqa: E402


def test_the_pack_counts_words(tmp_path, monkeypatch):
    monkeypatch.chdir(HERE)
    engine = Engine(packs={"hello": gouache_hello}, entry_points=False, home=tmp_path)
    result = engine.run("hello.json")
    assert result.outputs["count"]["count"] == 3


def test_every_hook_registers(tmp_path):
    engine = Engine(packs={"hello": gouache_hello}, entry_points=False, home=tmp_path)
    [report] = engine.packs
    assert report.status == "loaded" and report.node_types == ["HelloSplitWords", "HelloCountWords"]
    assert engine.registry.types["WORDS"].color == "#8e44ad"
    assert "wordlists" in engine.models.kinds
    assert (engine.web_extensions["gouache-hello"].directory / "hello.js").is_file()


def test_a_words_file_opens_through_the_importer(tmp_path):
    engine = Engine(packs={"hello": gouache_hello}, entry_points=False, home=tmp_path)
    assert engine.run({"words": "one two three four"}).outputs["count"]["count"] == 4
