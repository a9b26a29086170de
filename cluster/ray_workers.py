"""Worker actors on a Ray cluster, each holding an :class:`~gouache.engine.Engine`: the only module importing ray.

A worker actor runs one workflow at a time on its own engine (its own model and output caches),
reads models from its own ``GOUACHE_HOME`` and writes files in a folder of its own. It is threaded
(``max_concurrency``), so that while a run computes, the head can drain its events and interrupt it.
The files a run writes travel back as bytes with the events that name them: the head needs no
shared filesystem. The head talks to workers through :class:`Pool`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from gouache.cluster.routing import Model, WorkerState, needs
from gouache.engine import Engine, Event, Settings
from gouache.engine.events import NodeFinishedData

WORKER_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)
"""What calling a worker raises when its process or node is gone."""
HOLD_MODELS = 8
"""Models a worker reports as held: those of its most recent runs (its model manager keeps them loaded)."""


class EngineWorker:
    """The actor's body: an engine, the events of the run in progress, and what it holds."""

    def __init__(self, name: str, home: str | None, threads: int | None) -> None:
        if threads:
            # Read by torch's OpenMP when the built-in pack first imports torch, in this process.
            os.environ["OMP_NUM_THREADS"] = os.environ["GOUACHE_THREADS"] = str(threads)
        # Idle OpenMP threads sleep instead of spinning, as gouache run and serve set it (a busy machine
        # otherwise loses most of its time to spinning threads).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.name = name
        # Files go to a folder of this worker's own: on the head's machine (ray local) the head's
        # output folder is where they arrive, and two workers' counters would collide in one folder.
        self.engine = Engine(home=home, output_dir=Settings.load(home).home / "workers" / name / "output")
        self._events: list[Any] = []
        self._files: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._recent: OrderedDict[Model, None] = OrderedDict()
        self._cancelled: set[str] = set()
        self._current: str | None = None
        self.engine.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.type == "started" and event.data.run_id in self._cancelled:
            self.engine.interrupt()  # the executor clears its stop flag as a run starts
        with self._lock:
            self._events.append(event.data)
            if isinstance(event.data, NodeFinishedData):
                for image in event.data.images:
                    path = self.engine.settings.folder(image.kind) / image.path
                    self._files[(image.kind, image.path)] = path.read_bytes()

    def report(self) -> dict[str, Any]:
        """What this worker holds and has on disk, as the routing rule reads it."""
        kinds = {spec.choices_from for node in self.engine.registry.node_types()
                 for spec in self.engine.registry.get(node).inputs if spec.choices_from}
        on_disk = [(kind, name) for kind in sorted(kinds) for name in self.engine.models.names(kind)]
        return {"name": self.name, "loaded": list(self._recent), "on_disk": on_disk, "pid": os.getpid(),
                "host": socket.gethostname()}

    def run(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None) -> dict[str, Any]:
        """Run a workflow; what it did (``images``: the files, whose bytes went with the events)."""
        try:
            valid = self.engine.validate(workflow, outputs=targets)
        except Exception as error:  # WorkflowInvalid: a model went away since the head validated
            return {"status": "failed", "invalid": [p.to_json() for p in getattr(error, "problems", [])],
                    "message": str(error)}
        for model in needs(valid):
            self._recent.pop(model, None)
            self._recent[model] = None
        while len(self._recent) > HOLD_MODELS:
            self._recent.popitem(last=False)
        from gouache.engine.executor import default_targets

        with self._lock:
            self._current = run_id
        try:
            result = self.engine.run(valid, outputs=targets or default_targets(valid), run_id=run_id)
        finally:
            with self._lock:
                self._current = None
                self._cancelled.discard(run_id)
        return {"status": result.status, "executed": result.executed, "cached": result.cached,
                "timings": result.timings, "seconds": result.seconds, "images": result.images,
                "error": result.error.to_json() if result.error else None}

    def drain(self) -> tuple[list[Any], dict[tuple[str, str], bytes]]:
        """The events since the last drain, and the bytes of the files they name."""
        with self._lock:
            events, files = self._events, self._files
            self._events, self._files = [], {}
        return events, files

    def interrupt(self, run_id: str) -> None:
        """Stop ``run_id`` at its next check (within a sampler step), even if it has not started yet.

        Another run in progress here is left alone (the head's call may arrive after ``run_id`` ended).
        """
        with self._lock:
            self._cancelled.add(run_id)
            if self._current == run_id:
                self.engine.interrupt()


@dataclass
class WorkerSpec:
    """How many workers to start and what each declares to Ray."""

    count: int
    threads: int = 1
    """CPU threads each worker computes with (its ``num_cpus``)."""
    gpus: float = 0
    """GPUs each worker takes (``num_gpus``); 0 for CPU workers."""
    home: str | None = None
    """The ``GOUACHE_HOME`` each worker reads on its machine; ``None``: the worker machine's default."""


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join (``auto``, ``ray://HOST:PORT``) or start (``local``) a Ray instance, once per process."""
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def disconnect() -> None:
    """Leave the Ray instance (a ``local`` one stops with it)."""
    ray.shutdown()


def cluster_cpus() -> int:
    """CPUs the cluster declares, all nodes together."""
    return int(ray.cluster_resources().get("CPU", 1))


def cluster_gpus() -> float:
    """GPUs the cluster declares, all nodes together."""
    return float(ray.cluster_resources().get("GPU", 0))


def spec(count: int | None, threads: int | None, gpus: float, home: str | None) -> WorkerSpec:
    """The workers to start, once connected: ``count`` or ``GOUACHE_WORKERS``, else as many as the cluster has room for.

    ``threads`` (or ``GOUACHE_WORKER_THREADS``, default 1) CPUs each; with ``gpus``, as many as the
    cluster's GPUs allow.
    """
    threads = threads or int(os.environ.get("GOUACHE_WORKER_THREADS", "1"))
    count = count or int(os.environ.get("GOUACHE_WORKERS", "0"))
    if not count:
        count = int(cluster_gpus() // gpus) if gpus else cluster_cpus() // threads
    return WorkerSpec(max(1, count), threads, gpus, home)


def wait_one(refs: list[Any], timeout: float) -> list[Any]:
    """The results among ``refs`` that are ready, waiting up to ``timeout`` seconds for one."""
    ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    return ready


def ready(refs: list[Any]) -> list[Any]:
    """The results among ``refs`` that are ready now (no waiting)."""
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
    return done


def get(ref: Any, timeout: float | None = None) -> Any:
    """A result's value; raises one of :data:`WORKER_LOST` when its worker died."""
    return ray.get(ref, timeout=timeout)


@dataclass
class Worker:
    """The head's view of one worker actor."""

    name: str
    actor: Any
    state: WorkerState
    busy: str | None = None
    host: str = ""
    pid: int = 0


@dataclass
class Pool:
    """Worker actors and what each reported; only the head's dispatcher thread changes it.

    Workers being started wait in ``starting`` (their first report not yet in) and join
    ``workers`` through :meth:`admit`; :meth:`start` waits for them all.
    """

    spec: WorkerSpec
    workers: dict[str, Worker] = field(default_factory=dict)
    starting: dict[Any, tuple[str, Any]] = field(default_factory=dict)
    _index: int = 0

    @classmethod
    def start(cls, spec: WorkerSpec) -> Pool:
        """Start ``spec.count`` worker actors and wait until each has loaded its packs."""
        pool = cls(spec)
        pool.add(spec.count)
        for ref, (name, actor) in list(pool.starting.items()):
            pool._join(ref, name, actor)
        pool.starting.clear()
        return pool

    def add(self, count: int = 1) -> list[str]:
        """Start ``count`` more workers without waiting (Ray places each once it has room); their names."""
        remote = ray.remote(EngineWorker).options(num_cpus=self.spec.threads, num_gpus=self.spec.gpus,
                                                  max_concurrency=4)
        names = []
        for _ in range(count):
            name = f"worker-{self._index}-{uuid.uuid4().hex[:6]}"
            self._index += 1
            actor = remote.remote(name, self.spec.home, self.spec.threads)
            self.starting[actor.report.remote()] = (name, actor)
            names.append(name)
        return names

    def admit(self) -> tuple[list[str], list[str]]:
        """Move started workers whose first report came in to ``workers``: ``(joined, failed)`` names."""
        joined, failed = [], []
        for ref in ready(list(self.starting)):
            name, actor = self.starting.pop(ref)
            (joined if self._join(ref, name, actor) else failed).append(name)
        return joined, failed

    def _join(self, ref: Any, name: str, actor: Any) -> bool:
        try:
            report = ray.get(ref)
        except WORKER_LOST:
            return False
        self.workers[name] = Worker(name, actor, _state(name, report, True), host=report["host"], pid=report["pid"])
        return True

    def refresh(self, names: list[str] | None = None) -> list[str]:
        """Ask workers what they hold; returns the names of those found dead (and drops them)."""
        names = list(self.workers) if names is None else names
        refs = {name: self.workers[name].actor.report.remote() for name in names if name in self.workers}
        lost = []
        for name, ref in refs.items():
            try:
                report = ray.get(ref)
            except WORKER_LOST:
                lost.append(name)
                self.workers.pop(name, None)
                continue
            worker = self.workers[name]
            worker.state = _state(name, report, worker.busy is None)
        return lost

    def states(self) -> list[WorkerState]:
        """Every worker as the routing rule reads it (free: running nothing)."""
        return [WorkerState(w.name, w.state.loaded, w.state.on_disk, w.busy is None) for w in self.workers.values()]

    def kill(self, name: str) -> None:
        """End a worker's process at once (tests, and a worker that will not answer)."""
        ray.kill(self.workers[name].actor, no_restart=True)

    def stop(self) -> None:
        """End every worker actor, started or starting."""
        for worker in self.workers.values():
            ray.kill(worker.actor, no_restart=True)
        for _, actor in self.starting.values():
            ray.kill(actor, no_restart=True)
        self.workers.clear()
        self.starting.clear()


def _state(name: str, report: dict[str, Any], free: bool) -> WorkerState:
    return WorkerState(name, frozenset(map(tuple, report["loaded"])), frozenset(map(tuple, report["on_disk"])), free)


def save_files(folder_of: Any, files: dict[tuple[str, str], bytes], renamed: dict[tuple[str, str], str]) -> None:
    """Write files a worker sent under the head's folders, at the same relative path when it is free.

    A path taken by another file gets the worker's bytes under a new name (``renamed`` records it),
    never over the other file. ``folder_of(kind)`` is the head's folder of that kind.
    """
    for (kind, sent), data in files.items():
        target = Path(folder_of(kind)) / sent
        if target.exists() and target.read_bytes() != data:
            stem, suffix = os.path.splitext(sent)
            renamed[(kind, sent)] = f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"
            target = Path(folder_of(kind)) / renamed[(kind, sent)]
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        temporary.write_bytes(data)
        os.replace(temporary, target)
