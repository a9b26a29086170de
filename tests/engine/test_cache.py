"""Outputs are cached between runs by content key, in an LRU bounded in bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import toy_pack
from engine_helpers import chain
from gouache.engine import OutputCache, cache_size


def link(node, output):
    return {"node": node, "output": output}


def diamond() -> dict:
    return {"format": "gouache/1", "nodes": {
        "top": {"type": "Number", "inputs": {"value": 1}},
        "left": {"type": "Add", "inputs": {"a": link("top", "value"), "b": 1}},
        "right": {"type": "Add", "inputs": {"a": link("top", "value"), "b": 2}},
        "join": {"type": "Sum", "inputs": {"a": link("left", "sum"), "b": link("right", "sum")}},
        "out": {"type": "Record", "inputs": {"value": link("join", "sum")}},
    }}


def test_second_identical_run_executes_nothing(engine):
    first = engine.run(diamond())
    second = engine.run(diamond())
    assert second.executed == [] and sorted(second.cached) == sorted(first.executed)
    assert second.outputs == first.outputs


def test_changing_one_literal_reruns_exactly_that_node_and_its_descendants(engine):
    engine.run(diamond())
    result = engine.run(diamond(), overrides={"right.b": 5})
    assert result.executed == ["right", "join", "out"]
    assert sorted(result.cached) == ["left", "top"]
    assert result.outputs["join"]["sum"] == 2 + 6


def test_cached_results_equal_uncached_ones(tmp_path):
    from gouache.engine import Engine

    warm = Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path)
    warm.run(diamond())
    cached = warm.run(diamond(), overrides={"top.value": 3})
    cold = Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path).run(diamond(), overrides={"top.value": 3})
    assert cached.outputs == cold.outputs


def test_not_deterministic_nodes_always_run_and_so_do_their_consumers(engine):
    workflow = {"format": "gouache/1", "nodes": {
        "clock": {"type": "Clock"}, "s": {"type": "Add", "inputs": {"a": link("clock", "tick")}}}}
    first, second = engine.run(workflow), engine.run(workflow)
    assert second.executed == ["clock", "s"]
    assert second.outputs["clock"]["tick"] == first.outputs["clock"]["tick"] + 1


def test_fingerprinted_nodes_rerun_when_the_file_changes(engine, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("one")
    workflow = {"format": "gouache/1", "nodes": {"read": {"type": "ReadFile", "inputs": {"path": str(path)}}}}
    assert engine.run(workflow).outputs["read"]["text"] == "one"
    assert engine.run(workflow).cached == ["read"]
    time.sleep(0.01)
    path.write_text("two!")
    result = engine.run(workflow)
    assert result.executed == ["read"] and result.outputs["read"]["text"] == "two!"


KEY_SCRIPT = """
import sys; sys.path.insert(0, {folder!r})
import toy_pack
from gouache.engine import Engine
engine = Engine(packs={{"toy": toy_pack}}, entry_points=False, home={home!r})
valid = engine.validate({workflow!r})
from gouache.engine.cache import node_key
keys = {{}}
for node_id in valid.order:
    node = valid.nodes[node_id]
    keys[node_id] = node_key(node, {{n: keys[s] + ":" + o for n, (s, o) in node.links.items()}})
print(keys["join"])
"""


def test_cache_keys_are_stable_across_processes(tmp_path):
    folder = str(__import__("pathlib").Path(toy_pack.__file__).parent)
    script = KEY_SCRIPT.format(folder=folder, home=str(tmp_path), workflow=diamond())
    keys = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(keys) == 1 and len(keys.pop().strip()) == 32


def test_lru_evicts_least_recently_used_past_the_byte_budget():
    cache = OutputCache(budget_bytes=3000)
    cache.put("a", {"x": bytes(1000)}, {})
    cache.put("b", {"x": bytes(1000)}, {})
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", {"x": bytes(1000)}, {})
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.used_bytes <= 3000
    cache.put("huge", {"x": bytes(10_000)}, {})
    assert "huge" not in cache  # larger than the whole budget: not kept


def test_sizes_count_array_bytes():
    import numpy

    assert cache_size({"a": numpy.zeros((10, 10), dtype=numpy.float32)}) >= 400
    assert cache_size([bytes(5000)]) >= 5000


def test_engine_cache_budget_is_configurable(tmp_path):
    from gouache.engine import Engine

    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path, cache_bytes=10_000)
    blob = {"format": "gouache/1", "nodes": {"b": {"type": "Blob", "inputs": {"size": 8000}},
                                             "s": {"type": "BlobSize", "inputs": {"blob": link("b", "blob")}}}}
    engine.run(blob)
    engine.run(blob, overrides={"b.size": 7000})
    assert engine.cache.used_bytes <= 10_000
    assert engine.run(blob, overrides={"b.size": 8000}).executed == ["b", "s"]  # evicted
    (tmp_path / "config.json").write_text(json.dumps({"cache_bytes": 1234}))
    assert Engine(packs={}, entry_points=False, home=tmp_path).cache.budget_bytes == 1234


def test_a_long_chain_runs_without_recursion(engine):
    result = engine.run(chain(3000))
    assert result.ok and result.outputs["n2999"]["sum"] == 3000.0
    assert engine.run(chain(3000)).executed == []
