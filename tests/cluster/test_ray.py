"""Ray workers, against a local Ray instance started here (nothing external): the embedded model on two CPU workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="gouache[ray] is part of the test extra; pip install -e '.[test]'")

from gouache.cluster import ray_workers  # noqa: E402
from gouache.cluster.sweep import jobs_for, run_jobs  # noqa: E402
from gouache.engine import Engine, sweep  # noqa: E402
from gouache.engine.workflow import apply_overrides  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
WORKFLOW = json.loads((Path(__file__).resolve().parents[2] / "workflows" / "text-to-image.json").read_text())
TINY = ("checkpoints", "gouache-tiny")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = ray_workers.Pool.start(ray_workers.WorkerSpec(2, threads=1, home=str(home)))
    yield Engine(home=home), pool
    pool.stop()
    ray.shutdown()


def runs(engine: Engine, seeds: range, steps: int = 2):
    base = apply_overrides(WORKFLOW, {"sampler.steps": steps})[0]
    points = sweep.points([sweep.axis("sampler.seed", list(seeds))], base, engine.registry)
    return [(point, apply_overrides(base, sweep.run_overrides(base, engine.registry, point))[0]) for point in points]


def test_affinity_sends_a_run_to_the_worker_holding_its_checkpoint(cluster):
    engine, pool = cluster
    first, second = sorted(pool.workers)
    assert all(TINY in state.on_disk and not state.loaded for state in pool.states())
    pool.workers[first].busy = "elsewhere"  # the first run must go to the second worker
    [done] = run_jobs(engine, pool, jobs_for(engine, runs(engine, range(1, 2)), None), None)
    pool.workers[first].busy = None
    assert done["worker"] == second and TINY in pool.workers[second].state.loaded
    # Both are free now; the first in order has it only on disk, the second holds it.
    [again] = run_jobs(engine, pool, jobs_for(engine, runs(engine, range(2, 3)), None), None)
    assert again["worker"] == second


def test_two_workers_run_a_sweep_and_every_output_arrives_named_by_its_values(cluster):
    engine, pool = cluster
    done = run_jobs(engine, pool, jobs_for(engine, runs(engine, range(10, 16)), None), None)
    assert [run["status"] for run in done] == ["succeeded"] * 6, [run["error"] for run in done]
    assert {run["worker"] for run in done} == set(pool.workers)
    for seed, run in zip(range(10, 16), done):
        [file] = map(Path, run["files"])
        assert file.parent == engine.settings.folder("output") and file.name.startswith(f"text-to-image_seed-{seed}_")
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupt_reaches_a_remote_run_within_a_step(cluster):
    engine, pool = cluster
    worker = pool.workers[sorted(pool.workers)[0]]
    [(_, workflow)] = runs(engine, range(99, 100), steps=200)
    ref = worker.actor.run.remote("interrupted-run", workflow, None)
    seen: list = []
    while not any(event.event_type == "progress" for event in seen):
        seen += ray.get(worker.actor.drain.remote())[0]
        time.sleep(0.05)
    ray.get(worker.actor.interrupt.remote("interrupted-run"))
    result = ray.get(ref, timeout=60)
    rest = seen + ray.get(worker.actor.drain.remote())[0]
    steps = [event.value for event in rest if event.event_type == "progress"]
    assert result["status"] == "interrupted" and max(steps) < 200
    assert rest[-1].event_type == "finished" and rest[-2].event_type == "interrupted"


def test_a_worker_killed_mid_run_loses_no_run(cluster):
    engine, pool = cluster
    victim: list[str] = []

    def kill_the_first(job, name):
        # At once, while the worker holds the run: a delay would let a fast machine finish it first.
        if not victim:
            victim.append(name)
            pool.kill(name)

    done = run_jobs(engine, pool, jobs_for(engine, runs(engine, range(20, 23), steps=20), None), None,
                    on_start=kill_the_first)
    assert [run["status"] for run in done] == ["succeeded"] * 3
    retried = [run for run in done if len(run["attempts"]) > 1]
    assert retried and retried[0]["attempts"][0] == {**retried[0]["attempts"][0], "worker": victim[0],
                                                     "outcome": "worker_lost"}
    assert all(run["worker"] != victim[0] for run in retried) and victim[0] not in pool.workers
