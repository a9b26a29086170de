"""Resident memory over many runs in one engine: it should level off once the caches are full.

Runs the shipped text-to-image workflow with the embedded model (small size, few steps, a new
seed every run, so the sampler, decode and save run every time and their outputs pile into the
caches) and samples the process's RSS every ``--every`` runs. The output cache is given a small
budget so it fills within the benchmark; past that point RSS should stay flat. Run:

    OMP_NUM_THREADS=1 python bench/bench_memory.py [--runs 1000] [--every 100] [--size 64] [--steps 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from gouache.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024**2


def rss_bytes() -> int:
    """The process's resident set now (Linux), else its peak so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def workflow(size: int, steps: int) -> dict:
    """text-to-image.json at ``size`` px with ``steps`` steps."""
    data = json.loads((ROOT / "workflows" / "text-to-image.json").read_text())
    data["nodes"]["latent"]["inputs"].update(width=size, height=size)
    data["nodes"]["sampler"]["inputs"]["steps"] = steps
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="sample RSS every N runs")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cache-mib", type=int, default=16, help="the output cache's RAM budget")
    parser.add_argument("--disk-mib", type=int, default=32, help="the disk tier's budget (0: off)")
    args = parser.parse_args()

    import torch

    print(f"machine: python {platform.python_version()}, {platform.machine()}, torch {torch.__version__}, "
          f"{os.cpu_count()} cpus, {torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(home=home, cache_bytes=args.cache_mib * MiB, disk_cache=args.disk_mib > 0,
                        disk_cache_bytes=args.disk_mib * MiB)
        wf = workflow(args.size, args.steps)
        print(f"{args.runs} runs of text-to-image at {args.size} px, {args.steps} steps, new seed each run; "
              f"output cache {args.cache_mib} MiB, disk tier {args.disk_mib} MiB")
        print("| runs | RSS (MiB) | output cache (MiB) | entries | disk tier (MiB) | s/run (last block) |")
        print("|---:|---:|---:|---:|---:|---:|")
        started = time.perf_counter()
        first_rss = None
        for run in range(1, args.runs + 1):
            result = engine.run(wf, overrides={"sampler.seed": run})
            assert result.ok, result.error
            if run == 1 or run % args.every == 0:
                gc.collect()
                rss = rss_bytes()
                first_rss = first_rss or rss
                disk = engine.cache.disk.used_bytes / MiB if engine.cache.disk else 0.0
                seconds = (time.perf_counter() - started) / (1 if run == 1 else args.every)
                print(f"| {run} | {rss / MiB:.1f} | {engine.cache.used_bytes / MiB:.1f} | {len(engine.cache)} | "
                      f"{disk:.1f} | {seconds:.3f} |", flush=True)
                started = time.perf_counter()
                for output in Path(home, "output").glob("*.png"):
                    output.unlink()  # saved images are not what is measured; keep the temp folder small


if __name__ == "__main__":
    main()
