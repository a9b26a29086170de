"""Simulation of the cluster's routing rule: 1,000 workers, 20 checkpoints, 100,000 runs.

Nothing runs a model: a discrete-event simulation in which each run needs one checkpoint
(popularity by Zipf's law), arrives by a Poisson process, and takes ``--sample`` seconds on a worker
that holds its checkpoint, plus ``--load`` seconds to load it first where it does not. A worker holds
``--hold`` checkpoints at once (least recently used goes). The routing is :mod:`gouache.cluster.routing`
itself (``route`` for an arriving run, ``schedule`` for the queue when a worker frees); the
baseline sends a run to a random free worker that has its checkpoint on disk.

Two disk layouts: ``shared`` (every worker reads one model folder over network storage) and
``local`` (each worker has ``--on-disk`` of the checkpoints on its own disk).

    .venv/bin/python bench/bench_router.py            # the figures in docs/benchmarks.md
    .venv/bin/python bench/bench_router.py --runs 10000 --workers 100
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from gouache.cluster.routing import Model, WorkerState, route, schedule

WINDOW = 256
"""Queued runs looked at when a worker frees (the head of the queue)."""


@dataclass
class SimWorker:
    name: str
    on_disk: frozenset[Model]
    hold: int
    loaded: list[Model] = field(default_factory=list)  # least recently used first
    state: WorkerState | None = None
    """What it reports while free; made again only when what it holds changes."""

    def __post_init__(self) -> None:
        self.state = WorkerState(self.name, frozenset(), self.on_disk, True)

    def take(self, model: Model) -> bool:
        """Start a run needing ``model``; whether it was already loaded."""
        hit = model in self.loaded
        if hit:
            self.loaded.remove(model)
        elif len(self.loaded) >= self.hold:
            self.loaded.pop(0)
        self.loaded.append(model)
        if not hit:
            self.state = WorkerState(self.name, frozenset(self.loaded), self.on_disk, True)
        return hit


def simulate(args: argparse.Namespace, load: float, layout: str, policy: str) -> dict[str, float]:
    rng = random.Random(args.seed)
    models = [("checkpoints", f"model-{i:02d}") for i in range(args.checkpoints)]
    weights = [1 / (rank + 1) ** args.zipf for rank in range(args.checkpoints)]
    workers = []
    for index in range(args.workers):
        if layout == "shared":
            disk = frozenset(models)
        else:  # every checkpoint on some disks: worker i has a window of them, rotated
            disk = frozenset(models[(index + k) % args.checkpoints] for k in range(args.on_disk))
        workers.append(SimWorker(f"w{index:04d}", disk, args.hold))
    by_name = {worker.name: worker for worker in workers}
    free: dict[str, SimWorker] = dict(by_name)
    rate = load * args.workers / (args.sample + args.load)
    arrivals = []
    clock = 0.0
    for run in range(args.runs):
        clock += rng.expovariate(rate)
        arrivals.append((clock, run, rng.choices(models, weights)[0]))
    events: list[tuple[float, int, str, str]] = [(t, run, "arrive", "") for t, run, _ in arrivals]
    heapq.heapify(events)
    need = {run: model for _, run, model in arrivals}
    arrived = {run: t for t, run, _ in arrivals}
    queue: deque[int] = deque()
    waits, hits = [], 0
    last = 0.0

    def start(run: int, name: str, now: float) -> None:
        nonlocal hits
        worker = free.pop(name)
        hit = worker.take(need[run])
        hits += hit
        waits.append(now - arrived[run])
        heapq.heappush(events, (now + args.sample + (0 if hit else args.load), run, "done", name))

    def pick(run: int) -> str | None:
        model = frozenset({need[run]})
        if policy == "affinity":
            return route(model, (w.state for w in free.values())).worker
        eligible = [w.name for w in free.values() if need[run] in w.on_disk]
        return rng.choice(eligible) if eligible else None

    while events:
        now, run, kind, name = heapq.heappop(events)
        last = now
        if kind == "arrive":
            chosen = pick(run) if not queue else None  # first come, first served
            if chosen is None:
                queue.append(run)
            else:
                start(run, chosen, now)
            continue
        free[name] = by_name[name]
        head = [queue[i] for i in range(min(WINDOW, len(queue)))]
        if not head:
            continue
        if policy == "affinity":
            assigned = schedule([(r, frozenset({need[r]})) for r in head], [w.state for w in free.values()])
        else:
            assigned, taken = [], set()
            for r in head:
                eligible = [w for w in free if w not in taken and need[r] in free[w].on_disk]
                if eligible:
                    choice = rng.choice(eligible)
                    taken.add(choice)
                    assigned.append((r, choice))
        for r, chosen in assigned:
            queue.remove(r)
            start(r, chosen, now)
    waits.sort()
    return {
        "hit": hits / args.runs,
        "wait_mean": statistics.fmean(waits),
        "wait_p50": waits[len(waits) // 2],
        "wait_p95": waits[int(len(waits) * 0.95)],
        "wait_p99": waits[int(len(waits) * 0.99)],
        "throughput": args.runs / last,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--hold", type=int, default=1, help="checkpoints a worker holds loaded at once")
    parser.add_argument("--on-disk", type=int, default=5, help="checkpoints on each worker's disk (layout local)")
    parser.add_argument("--sample", type=float, default=4.0, help="seconds a run samples")
    parser.add_argument("--load", type=float, default=10.0, help="seconds to load a checkpoint")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.9, 2.5],
                        help="offered loads, each a share of what the workers could do if every run loaded its checkpoint")
    parser.add_argument("--zipf", type=float, default=1.0, help="exponent of checkpoint popularity")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.workers} workers, {args.checkpoints} checkpoints, {args.runs} runs, hold {args.hold}, "
          f"sample {args.sample} s, load {args.load} s, zipf {args.zipf}")
    print("| offered load | disks | routing | affinity hits | wait mean (s) | p50 | p95 | p99 | runs/s | sim time (s) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for load, layout, policy in itertools.product(args.loads, ("shared", "local"), ("affinity", "random")):
        started = time.perf_counter()
        got = simulate(args, load, layout, policy)
        print(f"| {load} | {layout} | {policy} | {got['hit']:.1%} | {got['wait_mean']:.2f} | {got['wait_p50']:.2f} | "
              f"{got['wait_p95']:.2f} | {got['wait_p99']:.2f} | {got['throughput']:.1f} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
