"""Engine overhead on graphs of trivial nodes: chains, fan-outs and diamonds of 10..5,000 nodes.

Each case times a first run (validation, ordering, keys, execution, events) and a fully cached
re-run, with and without an event subscriber, and prints microseconds per node. Run:

    python bench/bench_engine.py [--sizes 10,100,1000,5000] [--repeat 3]
    python bench/bench_engine.py --text-to-image     # fully cached re-run of the shipped workflow
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))

import toy_pack  # noqa: E402

from gouache.engine import Engine  # noqa: E402


def link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def chain(size: int) -> dict:
    nodes = {"n0": {"type": "Number", "inputs": {"value": 1}}}
    for i in range(1, size):
        nodes[f"n{i}"] = {"type": "Add", "inputs": {"a": link(f"n{i - 1}", "value" if i == 1 else "sum"), "b": 1}}
    return {"format": "gouache/1", "nodes": nodes}


def fanout(size: int) -> dict:
    nodes = {"root": {"type": "Number", "inputs": {"value": 1}}}
    for i in range(size - 1):
        nodes[f"leaf{i}"] = {"type": "Add", "inputs": {"a": link("root", "value"), "b": i}}
    return {"format": "gouache/1", "nodes": nodes}


def diamond(size: int) -> dict:
    """Fan out from a root, then fan back in pairwise through Sum nodes to one sink."""
    width = max(1, (size - 1) * 3 // 4)
    nodes = {"root": {"type": "Number", "inputs": {"value": 1}}}
    layer = []
    for i in range(width):
        nodes[f"w{i}"] = {"type": "Add", "inputs": {"a": link("root", "value"), "b": i}}
        layer.append((f"w{i}", "sum"))
    level = 0
    while len(layer) > 1:
        merged = []
        for j in range(0, len(layer), 4):
            node_id = f"j{level}_{j}"
            nodes[node_id] = {"type": "Sum", "inputs": {slot: link(*src) for slot, src in zip("abcd", layer[j:j + 4])}}
            merged.append((node_id, "sum"))
        layer, level = merged, level + 1
    return {"format": "gouache/1", "nodes": nodes}


def measure(engine: Engine, workflow: dict, repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` seconds for a cold run (fresh cache) and a fully cached re-run."""
    cold, warm = [], []
    for _ in range(repeat):
        engine.cache.clear()
        start = time.perf_counter()
        result = engine.run(workflow)
        cold.append(time.perf_counter() - start)
        assert result.ok and not result.cached
        start = time.perf_counter()
        result = engine.run(workflow)
        warm.append(time.perf_counter() - start)
        assert not result.executed
    return min(cold), min(warm)


def cached_text_to_image(repeat: int) -> None:
    """The shipped text-to-image workflow on the real built-in pack: a first run, then re-runs in
    which every node comes from the cache (floor: under 10 ms)."""
    workflow = Path(__file__).resolve().parents[1] / "workflows" / "text-to-image.json"
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(home=home)
        start = time.perf_counter()
        first = engine.run(workflow)
        cold = time.perf_counter() - start
        assert first.ok, first.error
        times = []
        for _ in range(max(repeat, 20)):
            start = time.perf_counter()
            result = engine.run(workflow)
            times.append(time.perf_counter() - start)
            assert not result.executed
        times.sort()
        print("| text-to-image (gouache-tiny) | first run (ms) | cached re-run median (ms) | cached re-run max (ms) |")
        print("|---|---:|---:|---:|")
        print(f"| {len(first.executed)} nodes | {cold * 1e3:.0f} | {times[len(times) // 2] * 1e3:.2f} | {times[-1] * 1e3:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--text-to-image", action="store_true",
                        help="only time a fully cached re-run of workflows/text-to-image.json")
    args = parser.parse_args()
    if args.text_to_image:
        cached_text_to_image(args.repeat)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"python {platform.python_version()}, {platform.machine()}, {platform.processor() or 'cpu'}")
    print("| shape | nodes | subscriber | first run total (ms) | first run us/node | cached total (ms) | cached us/node |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as home:
        for shape in (chain, fanout, diamond):
            for size in sizes:
                workflow = shape(size)
                nodes = len(workflow["nodes"])
                for subscribed in (False, True):
                    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=home)
                    seen = []
                    if subscribed:
                        engine.subscribe(seen.append)
                    cold, warm = measure(engine, workflow, args.repeat)
                    print(f"| {shape.__name__} | {nodes} | {'yes' if subscribed else 'no'} | {cold * 1e3:.1f} | "
                          f"{cold / nodes * 1e6:.1f} | {warm * 1e3:.1f} | {warm / nodes * 1e6:.1f} |")


if __name__ == "__main__":
    main()
