"""``gouache run --sweep ... --ray ADDRESS``: a sweep's runs spread over a Ray cluster's workers.

Runs are taken in order by the routing rule (:func:`gouache.cluster.routing.schedule`); a worker
that dies mid-run has its run queued again, first in line, at most ``max_retries`` times; files come
back as bytes into this machine's output folder.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gouache.cluster import ray_workers
from gouache.cluster.routing import Model, needs, schedule
from gouache.engine import Engine, sweep

MAX_RETRIES = 2
"""How many times a run whose worker died is queued again before it fails with ``worker_lost``."""


@dataclass
class Job:
    """One run of the sweep and what became of its tries."""

    index: int
    point: dict[str, Any]
    workflow: dict[str, Any]
    models: frozenset[Model]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: list[dict[str, Any]] = field(default_factory=list)


def run_jobs(engine: Engine, pool: ray_workers.Pool, jobs: list[Job], outputs: list[str] | None, *,
             max_retries: int = MAX_RETRIES, quiet: bool = True, on_start: Any = None) -> list[dict[str, Any]]:
    """Run every job on the pool's workers; what each did, in the jobs' order."""
    queue = deque(jobs)
    running: dict[Any, tuple[Job, str, float]] = {}
    done: dict[int, dict[str, Any]] = {}
    while queue or running:
        for run_id, name in schedule([(job.run_id, job.models) for job in list(queue)[:256]], pool.states()):
            job = next(job for job in queue if job.run_id == run_id)
            queue.remove(job)
            worker = pool.workers[name]
            worker.busy = job.run_id
            ref = worker.actor.run.remote(job.run_id, job.workflow, outputs)
            running[ref] = (job, name, time.time())
            if on_start is not None:
                on_start(job, name)
        if not running:
            if not pool.workers:
                raise RuntimeError("every Ray worker is gone; nothing can run the rest of the sweep")
            missing = sorted({model for job in queue for model in job.models} -
                             {model for state in pool.states() for model in state.on_disk | state.loaded})
            raise RuntimeError(f"no worker has {missing}; the workers: "
                               + "; ".join(state.name for state in pool.states()))
        ready = ray_workers.wait_one(list(running), timeout=1.0)
        for ref in ready:
            job, name, started = running.pop(ref)
            worker = pool.workers.get(name)
            try:
                result = ray_workers.get(ref)
                events, files = ray_workers.get(worker.actor.drain.remote())
            except ray_workers.WORKER_LOST as lost:
                pool.workers.pop(name, None)
                job.attempts.append({"worker": name, "started": started, "finished": time.time(),
                                     "outcome": "worker_lost", "message": type(lost).__name__})
                if len(job.attempts) <= max_retries:
                    queue.appendleft(job)
                else:
                    done[job.index] = _summary(job, {"status": "failed", "error": {
                        "code": "worker_lost", "message": f"its worker died {len(job.attempts)} times"}}, [])
                if not quiet:
                    print(f"worker {name} lost running {sweep.label(job.point)}; "
                          f"{'queued again' if job.index not in done else 'giving up'}", file=sys.stderr)
                continue
            worker.busy = None
            renamed: dict[tuple[str, str], str] = {}
            ray_workers.save_files(engine.settings.folder, files, renamed)
            images = [(image["kind"], renamed.get((image["kind"], image["path"]), image["path"]))
                      for found in (result.get("images") or {}).values() for image in found]
            job.attempts.append({"worker": name, "started": started, "finished": time.time(),
                                 "outcome": result["status"], "message": ""})
            done[job.index] = _summary(job, result, [str(engine.settings.folder(kind) / path) for kind, path in images])
            pool.refresh([name])
            if not quiet:
                print(f"[{len(done)}/{len(jobs)}] {result['status']} on {name}: {sweep.label(job.point)}",
                      file=sys.stderr)
    return [done[job.index] for job in jobs]


def _summary(job: Job, result: dict[str, Any], files: list[str]) -> dict[str, Any]:
    return {"values": job.point, "run_id": job.run_id, "status": result["status"],
            "seconds": result.get("seconds", 0.0), "files": files, "error": result.get("error"),
            "worker": job.attempts[-1]["worker"] if job.attempts else None, "attempts": job.attempts}


def jobs_for(engine: Engine, runs: list[tuple[dict[str, Any], dict[str, Any]]],
             outputs: list[str] | None) -> list[Job]:
    """The sweep's runs as jobs, each with the models it needs (validated here, on the head)."""
    return [Job(index, point, workflow, needs(engine.validate(workflow, outputs=outputs)))
            for index, (point, workflow) in enumerate(runs)]


def run_on_cluster(engine: Engine, runs: list[tuple[dict[str, Any], dict[str, Any]]],
                   outputs: list[str] | None, args: Any) -> list[dict[str, Any]]:
    """``gouache run --sweep --ray``: start workers on the cluster, run the sweep, stop them."""
    ray_workers.connect(args.ray)
    pool = ray_workers.Pool.start(ray_workers.spec(None, None, 0, str(engine.settings.home)))
    try:
        return run_jobs(engine, pool, jobs_for(engine, runs, outputs), outputs, quiet=args.quiet)
    finally:
        pool.stop()
