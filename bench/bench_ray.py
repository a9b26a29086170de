"""The server's queue on Ray workers against the in-process worker, side by side in one run (issue 17).

    .venv/bin/python bench/bench_ray.py [--runs 16] [--overhead-runs 20] [--repeat 3]

- **Throughput**: a ``--runs``-run seed sweep of the shipped text-to-image (128 px, 20 steps) posted
  to ``POST /api/runs`` as one sweep, timed from the post to the last run's end (the server's
  ``created`` and ``finished`` stamps). Three servers on one machine: the in-process worker (torch
  with 2 threads), ``--ray`` with one worker of 2 threads, ``--ray`` with two workers of 1 thread.
  Every worker has loaded the model first (a warm-up run each); the three servers are up together
  and take turns, round after round (the order rotates), so each round's ratios share the same load.
  Floor: two workers at least 1.5x one worker, and no slower than in-process.
- **Dispatch overhead**: the same run posted ``--overhead-runs`` times one after another, each
  after the previous ended; per run, ``finished - created`` on the server (queue, dispatch, run,
  events, files back, record stored). Fully cached re-runs (only the save node runs) isolate what
  the queue costs; floor: Ray adds under 50 ms per run against the in-process worker.

A local Ray instance is started here (``ray.init(num_cpus=4)`` so both Ray servers' workers fit, workers at this process's priority:
``RAY_worker_niceness=0``); nothing external. Prints a
Markdown table and the load average (other jobs on the machine slow every row alike, but they
shift the ratios too: rerun when the machine is quiet).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")  # the in-process worker's torch, set before it loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as gouache serve sets it (and the Ray workers)
# Ray lowers its workers' priority by 15 (nice 10 -> 19) by default: on a busy machine they would get a
# fraction of the CPU the in-process worker gets. Same priority, so the rows compare the queue, not nice.
os.environ.setdefault("RAY_worker_niceness", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "web")]

import ray  # noqa: E402
from web_support import Client  # noqa: E402

from gouache.cluster import ray_workers  # noqa: E402
from gouache.cluster.dispatch import worker_factory  # noqa: E402
from gouache.engine import Engine  # noqa: E402
from gouache.web.background import BackgroundServer  # noqa: E402

WORKFLOW = json.loads((ROOT / "workflows" / "text-to-image.json").read_text())


def wait(client: Client, run_ids: list[str], timeout: float = 3600) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records = []
    for run_id in run_ids:
        while True:
            record = client.get(f"/api/runs/{run_id}").json
            if record["status"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, f"run {run_id} did not end"
            time.sleep(0.02)
        assert record["status"] == "succeeded", record["error"]
        records.append(record)
    return records


def post(client: Client, body: dict[str, Any]) -> list[str]:
    reply = client.post("/api/runs", body)
    assert reply.status == 202, reply.json
    return [run["run_id"] for run in reply.json["runs"]] if "runs" in reply.json else [reply.json["run_id"]]


def warm(client: Client, workers: int) -> None:
    """Every worker loads the model: one run each, at once."""
    wait(client, post(client, {"workflow": WORKFLOW, "sweep": {"sampler.seed": list(range(900, 900 + workers))}}))


def measure(client: Client, runs: int, overhead_runs: int, seed0: int) -> dict[str, float]:
    """One sweep of ``runs`` new seeds, then ``overhead_runs`` re-runs of one workflow (cached but the save)."""
    records = wait(client, post(client, {"workflow": WORKFLOW,
                                         "sweep": {"sampler.seed": f"{seed0}..{seed0 + runs - 1}"}}))
    sweep_seconds = max(r["finished"] for r in records) - min(r["created"] for r in records)
    cached = []
    for _ in range(overhead_runs):
        [record] = wait(client, post(client, {"workflow": WORKFLOW}))
        cached.append(record["finished"] - record["created"])
    return {"sweep_s": sweep_seconds, "runs_per_min": 60 * runs / sweep_seconds,
            "cached_ms": 1000 * statistics.median(cached[1:]),
            "run_ms": 1000 * statistics.median(r["finished"] - r["started"] for r in records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--overhead-runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs the three servers in turn")
    args = parser.parse_args()
    # Both Ray servers' workers stay up for the whole run (4 CPUs declared on 2 cores); only one server
    # computes at a time, so rounds can alternate the servers and share whatever load the machine has.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    configs = [("in-process, torch 2 threads", None), ("Ray, 1 worker x 2 threads", (1, 2)),
               ("Ray, 2 workers x 1 thread", (2, 1))]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, shape in configs:
            home = stack.enter_context(tempfile.TemporaryDirectory())
            factory = None if shape is None else worker_factory(ray_workers.WorkerSpec(shape[0], shape[1]))
            server = stack.enter_context(BackgroundServer(Engine(home=home), worker_factory=factory))
            clients[name] = Client(server.url)
            warm(clients[name], shape[0] if shape else 1)
        for round_ in range(args.repeat):
            order = configs[round_ % 3:] + configs[:round_ % 3]  # each server first in some round
            for name, _ in order:
                seed0 = 1000 * (1 + round_ * len(configs) + [n for n, _ in configs].index(name))
                results[name].append(measure(clients[name], args.runs, args.overhead_runs, seed0))
                print(f"round {round_ + 1}, {name}: {results[name][-1]}", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(f"| round | server | {args.runs}-run sweep (s) | runs/min | x in-process | x one worker | median run (ms) | "
          "cached re-run, POST to finished (ms) | added vs in-process (ms) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in configs}
    for round_ in range(args.repeat):  # ratios within a round: its three sweeps ran one after another
        base, one = results[configs[0][0]][round_], results[configs[1][0]][round_]
        for name, _ in configs:
            row = results[name][round_]
            ratios[name].append((base["sweep_s"] / row["sweep_s"], one["sweep_s"] / row["sweep_s"]))
            print(f"| {round_ + 1} | {name} | {row['sweep_s']:.1f} | {row['runs_per_min']:.1f} | "
                  f"{ratios[name][-1][0]:.2f} | {ratios[name][-1][1]:.2f} | {row['run_ms']:.0f} | "
                  f"{row['cached_ms']:.1f} | {row['cached_ms'] - base['cached_ms']:+.1f} |")
    for name, _ in configs:
        print(f"| median | {name} | | | {statistics.median(r[0] for r in ratios[name]):.2f} | "
              f"{statistics.median(r[1] for r in ratios[name]):.2f} | | | |")
    ray.shutdown()


if __name__ == "__main__":
    main()
