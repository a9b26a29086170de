"""``gouache serve --ray``: the server's run queue dispatched to Ray worker actors.

:class:`ClusterWorker` has the in-process :class:`gouache.web.worker.Worker`'s interface (``start``,
``stop``, ``check``, ``choices``, ``submit``, ``cancel``, ``emit``), so the server's handlers do not know which
runs their runs. The queue stays the server's SQLite store on the head; one dispatcher thread:

- takes queued runs in the order :func:`gouache.cluster.routing.schedule` gives for the free workers
  (affinity first), claiming each in the store with a new try in its ``attempts``;
- relays the events of every busy worker to the websocket hub every :data:`RELAY_INTERVAL`
  seconds, writing the files they name (sent as bytes) into the head's folders; a run's
  ``finished`` event goes out once its record is stored, as the in-process worker does;
- when a worker dies mid-run, closes its try as ``worker_lost`` and queues the run again at its
  old place (another worker takes it), at most ``retries`` times, then fails it; a worker is started
  in the dead one's place.

Validation runs on the head against what the workers have (their model folders and what they hold):
a model no worker has is a problem naming the model and every worker with what it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gouache.cluster import ray_workers
from gouache.cluster.routing import Model, WorkerState, describe, missing, needs, raw_needs, schedule
from gouache.engine import Engine, Event, Problem, ValidWorkflow
from gouache.engine.events import EventData, FinishedData, NodeFinishedData, QueuedData
from gouache.engine.executor import RunResult, finished_event
from gouache.engine.importers import import_workflow
from gouache.engine.workflow import apply_overrides, load_source, parse
from gouache.web.schemas import CancelledData, run_error
from gouache.web.store import RunStore, StoredRunError

log = logging.getLogger(__name__)

RETRIES = 2
"""How many times a run whose worker died is queued again by default (``gouache serve --retries``)."""
RELAY_INTERVAL = 0.05
"""Seconds between two collections of the busy workers' events (the hub throttles progress to 0.1 s)."""
REFRESH_INTERVAL = 10.0
"""Seconds between two reports asked of idle workers (a model copied into a worker's folder shows)."""
HEAD_OF_QUEUE = 256
"""How many queued runs the routing rule looks at: how far a run whose model is loaded may overtake."""
STARTUP_SECONDS = 600.0
"""How long :meth:`ClusterWorker.start` waits for the workers' first reports (later ones join as they come)."""

Listener = Callable[[Event], None]


class ClusterWorker:
    """The server's worker when runs go to Ray worker actors (``gouache serve --ray``)."""

    def __init__(self, engine: Engine, store: RunStore, listener: Listener, spec: ray_workers.WorkerSpec, *,
                 retries: int = RETRIES) -> None:
        self.engine = engine
        self.store = store
        self.listener = listener
        self.retries = retries
        self.pool = ray_workers.Pool(spec)
        self._lock = threading.Lock()
        """Held by any thread reading or changing the pool's workers or the runs in progress."""
        self._queue_lock = threading.Lock()
        """Held while queueing a run and while claiming one: ``queued`` always precedes ``started``."""
        self._wake = threading.Event()
        self._stopping = False
        self._models: dict[str, frozenset[Model]] = {}
        """The models each queued or running run needs, found when it was validated."""
        self._running: dict[Any, tuple[str, str]] = {}
        """Each run in progress: its result's reference -> (run id, worker name)."""
        self._held: dict[str, FinishedData] = {}
        """A run's ``finished`` event, held back until its record is stored."""
        self._renamed: dict[str, dict[tuple[str, str], str]] = {}
        self._cancelled: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="gouache-dispatcher", daemon=True)

    # ---- the Worker interface ------------------------------------------------------------------

    def start(self, timeout: float = STARTUP_SECONDS) -> None:
        """Start the worker actors, wait for their first reports (up to ``timeout`` s), start dispatching."""
        self.pool.add(self.pool.spec.count)
        deadline = time.monotonic() + timeout
        while self.pool.starting and time.monotonic() < deadline:
            ray_workers.wait_one(list(self.pool.starting), timeout=1.0)
            joined, failed = self.pool.admit()
            for name in failed:
                log.error("Ray worker %s died while starting", name)
        if self.pool.starting:
            log.warning("%d Ray worker(s) not started after %.0f s (no room on the cluster?); they join when they "
                        "start", len(self.pool.starting), timeout)
        if not self.pool.workers:
            log.error("no Ray worker started: runs wait in the queue")
        log.info("Ray workers: %s", describe(self.pool.states(), "checkpoints"))
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the runs in progress, record how they ended, and end the worker actors."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            self.pool.stop()

    def check(self, workflow: Any, overrides: dict[str, Any] | None = None,
              outputs: list[str] | None = None) -> tuple[ValidWorkflow | None, list[Problem]]:
        """Validate a workflow against the models the workers have; a model none has names every worker."""
        with self._lock:
            states = self.pool.states()
        valid, problems = self.engine.check(workflow, overrides, outputs,
                                            choices_for=lambda kind: _choices(states, kind))
        if problems:
            problems = self._name_workers(workflow, overrides, problems, states)
        return valid, problems

    def choices(self, kind: str) -> list[str]:
        """The models of ``kind`` a run may choose: those some worker has on disk or loaded."""
        with self._lock:
            states = self.pool.states()
        return _choices(states, kind)

    def submit(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None,
               valid: ValidWorkflow | None = None) -> int:
        """Queue a run, announce it, wake the dispatcher; returns its position."""
        with self._queue_lock:
            position = self.store.add(run_id, workflow, targets)
            if valid is not None:
                self._models[run_id] = needs(valid)
            self.emit(QueuedData, run_id=run_id, position=position)
        self._wake.set()
        return position

    def emit(self, kind: type[EventData], **fields: Any) -> None:
        """Send a server event (``queued``, ``cancelled``) to the listener."""
        self.listener(Event(kind(**fields)))

    def cancel(self, run_id: str) -> str | None:
        """Cancel a queued run (``"cancelled"``) or interrupt it on its worker (``"interrupting"``)."""
        if self.store.cancel_queued(run_id):
            self._models.pop(run_id, None)
            self.emit(CancelledData, run_id=run_id)
            return "cancelled"
        with self._lock:
            for ref, (running, name) in self._running.items():
                if running == run_id and name in self.pool.workers:
                    self._cancelled.add(run_id)
                    # The actor is threaded: this call runs beside the run and stops it at its next step.
                    self.pool.workers[name].actor.interrupt.remote(run_id)
                    return "interrupting"
        return None

    # ---- validation ----------------------------------------------------------------------------

    def _name_workers(self, workflow: Any, overrides: dict[str, Any] | None, problems: list[Problem],
                      states: list[WorkerState]) -> list[Problem]:
        """Problems where a model input names a model no worker has, said so, with what each worker has."""
        try:
            raw, _ = import_workflow(load_source(workflow), self.engine.importers)
        except (OSError, ValueError):
            return problems
        raw, _ = apply_overrides(raw, overrides) if raw is not None else (None, [])
        parsed, _ = parse(raw) if raw is not None else (None, [])
        if parsed is None:
            return problems
        models = raw_needs(parsed, self.engine.registry)
        named = []
        for problem in problems:
            model = models.get((problem.node, problem.input))
            if problem.code == "not_a_choice" and model is not None and missing(frozenset([model]), states):
                kind, name = model
                problem = Problem(problem.node, problem.input, "not_on_any_worker",
                                  f"node {problem.node!r} input {problem.input!r}: no worker has {kind} {name!r}; "
                                  f"the workers have: {describe(states, kind)}")
            named.append(problem)
        return named

    # ---- the dispatcher thread -----------------------------------------------------------------

    def _loop(self) -> None:
        refreshed = time.monotonic()
        while not (self._stopping and not self._running):
            try:
                if self._stopping:
                    self._interrupt_all()
                else:
                    self._admit()
                    self._dispatch()
                if self._running:
                    done = ray_workers.wait_one(list(self._running), RELAY_INTERVAL)
                    self._relay()
                    for ref in done:
                        self._complete(ref)
                else:
                    self._wake.wait(RELAY_INTERVAL if self.pool.starting else 1.0)
                    self._wake.clear()
                if time.monotonic() - refreshed > REFRESH_INTERVAL:
                    refreshed = time.monotonic()
                    self._refresh_idle()
            except Exception:  # a bug, or the cluster gone: say so and keep serving
                log.exception("the Ray dispatcher failed; trying again in a second")
                time.sleep(1.0)

    def _admit(self) -> None:
        if not self.pool.starting:
            return
        with self._lock:
            joined, failed = self.pool.admit()
        for name in joined:
            log.info("Ray worker %s joined", name)
        for name in failed:
            log.error("Ray worker %s died while starting", name)

    def _dispatch(self) -> None:
        with self._lock:
            states = self.pool.states()
        if not any(state.free for state in states):
            return
        queued = self.store.queued(HEAD_OF_QUEUE)
        targets = dict(queued)
        entries = []
        for run_id, _ in queued:
            models = self._models.get(run_id)
            if models is None:
                models = self._prepare(run_id, targets[run_id])  # queued before a restart: validate it now
                if models is None:
                    continue
            if not self.pool.starting and missing(models, states):
                self._fail_queued(run_id, "a model it needs is on no worker any more: " + "; ".join(
                    f"no worker has {kind} {name!r}" for kind, name in missing(models, states))
                    + f"; the workers: {', '.join(state.name for state in states)}", "not_on_any_worker")
                continue
            entries.append((run_id, models))
        for run_id, name in schedule(entries, states):
            self._start(run_id, name, targets[run_id])

    def _prepare(self, run_id: str, targets: list[str] | None) -> frozenset[Model] | None:
        try:
            workflow = self.store.workflow(run_id)
        except StoredRunError as unreadable:
            self._fail_queued(run_id, str(unreadable), "workflow_invalid")
            return None
        valid, problems = self.check(workflow, None, targets)
        if valid is None:
            self._fail_queued(run_id, "; ".join(problem.message for problem in problems), "workflow_invalid",
                              problems)
            return None
        self._models[run_id] = needs(valid)
        return self._models[run_id]

    def _fail_queued(self, run_id: str, message: str, code: str, problems: list[Problem] | None = None) -> None:
        if not self.store.cancel_queued(run_id):  # taken out of the queue first, so no one else starts it
            return
        self._finish_failed(run_id, run_error(message, code, problems=problems))

    def _finish_failed(self, run_id: str, error: dict[str, Any]) -> None:
        self.store.finish(run_id, "failed", executed=[], cached=[], outputs={}, timings={}, seconds=0.0, error=error)
        self._forget(run_id)
        self.listener(Event(finished_event(RunResult(run_id, status="failed"))))

    def _start(self, run_id: str, name: str, targets: list[str] | None) -> None:
        worker = self.pool.workers[name]
        attempt = {"worker": name, "host": worker.host, "pid": worker.pid, "started": time.time(), "finished": None,
                   "outcome": "running", "message": ""}
        with self._queue_lock:
            claimed = self.store.claim(run_id, attempt)
        if claimed is None:  # cancelled since it was read
            return
        try:
            workflow = claimed.workflow()
        except StoredRunError as unreadable:
            self.store.end_attempt(run_id, "failed")
            self._finish_failed(run_id, run_error(str(unreadable), "workflow_invalid"))
            return
        with self._lock:
            worker.busy = run_id
            self._running[worker.actor.run.remote(run_id, workflow, claimed.targets)] = (run_id, name)

    def _relay(self) -> None:
        with self._lock:
            busy = [(name, worker.actor) for name, worker in self.pool.workers.items() if worker.busy]
        drains = [(name, actor.drain.remote()) for name, actor in busy]
        for name, ref in drains:
            try:
                events, files = ray_workers.get(ref)
            except ray_workers.WORKER_LOST:
                continue  # its run's result says so
            self._deliver(events, files)

    def _deliver(self, events: list[EventData], files: dict[tuple[str, str], bytes]) -> None:
        """Write the files a worker sent into the head's folders, then pass its events on."""
        renamed: dict[tuple[str, str], str] = {}
        ray_workers.save_files(self.engine.settings.folder, files, renamed)
        for data in events:
            if renamed:
                self._renamed.setdefault(data.run_id, {}).update(renamed)
            if isinstance(data, NodeFinishedData) and data.images and data.run_id in self._renamed:
                moved = self._renamed[data.run_id]
                data = data.model_copy(update={"images": [
                    image.model_copy(update={"path": moved.get((image.kind, image.path), image.path)})
                    for image in data.images]})
            if isinstance(data, FinishedData):
                self._held[data.run_id] = data
                continue
            self.listener(Event(data))

    def _complete(self, ref: Any) -> None:
        with self._lock:
            run_id, name = self._running.pop(ref)
            worker = self.pool.workers.get(name)
        try:
            result = ray_workers.get(ref)
            events, files = ray_workers.get(worker.actor.drain.remote())
        except ray_workers.WORKER_LOST as lost:
            self._lost(run_id, name, lost)
            return
        self._deliver(events, files)
        moved = self._renamed.get(run_id, {})
        outputs = {node: {"images": [{**image, "path": moved.get((image["kind"], image["path"]), image["path"])}
                                     for image in images]}
                   for node, images in (result.get("images") or {}).items()}
        status = result["status"]
        if "invalid" in result:  # a model went away on the worker since the head validated the run
            problems = [Problem(p["node"], p["input"], p["code"], p["message"]) for p in result["invalid"]]
            error = run_error(result["message"], "workflow_invalid", problems=problems,
                              node=problems[0].node if problems else None)
        elif result.get("error") is not None:
            error = result["error"]
        elif status == "interrupted":
            error = run_error("interrupted", "interrupted")
        else:
            error = None
        self.store.end_attempt(run_id, status)
        self.store.finish(run_id, status, executed=result.get("executed", []), cached=result.get("cached", []),
                          outputs=outputs, timings=result.get("timings", {}), seconds=result.get("seconds", 0.0),
                          error=error)
        finished = self._held.get(run_id) or finished_event(RunResult(run_id, status=status))
        self._forget(run_id)
        with self._lock:
            worker.busy = None
            lost_now = self.pool.refresh([name])  # what it holds now, for the routing rule
        self.listener(Event(finished))
        for gone in lost_now:
            self._replace(gone)

    def _lost(self, run_id: str, name: str, lost: BaseException) -> None:
        """The worker running ``run_id`` died: queue the run again, or fail it after ``retries`` tries."""
        with self._lock:
            gone = self.pool.workers.pop(name, None)
        where = f"{name} on {gone.host} (pid {gone.pid})" if gone else name
        attempts = self.store.end_attempt(run_id, "worker_lost", f"{type(lost).__name__}: {where} went away")
        self._held.pop(run_id, None)
        tries = sum(1 for attempt in attempts if attempt["outcome"] == "worker_lost")
        if run_id in self._cancelled:
            self.store.finish(run_id, "interrupted", executed=[], cached=[], outputs={}, timings={}, seconds=0.0,
                              error=run_error("interrupted (its worker died meanwhile)", "interrupted"))
            self._forget(run_id)
            self.listener(Event(finished_event(RunResult(run_id, status="interrupted"))))
        elif tries <= self.retries and self.store.requeue(run_id):
            log.warning("Ray worker %s died running %s; queued again (try %d of %d)", where, run_id, tries + 1,
                        self.retries + 1)
            record = self.store.get(run_id)
            self.emit(QueuedData, run_id=run_id, position=(record or {}).get("position") or 0)
        else:
            log.error("Ray worker %s died running %s; giving up after %d tries", where, run_id, tries)
            self._finish_failed(run_id, run_error(
                f"its worker died {tries} time(s), the last {where}; the server retries a run "
                f"{self.retries} time(s) (gouache serve --retries)", "worker_lost"))
        self._replace(name)

    def _replace(self, name: str) -> None:
        if self._stopping:
            return
        with self._lock:
            [new] = self.pool.add(1)
        log.warning("starting Ray worker %s in place of %s", new, name)

    def _refresh_idle(self) -> None:
        with self._lock:
            idle = [name for name, worker in self.pool.workers.items() if worker.busy is None]
            lost = self.pool.refresh(idle)
        for name in lost:
            log.error("Ray worker %s is gone", name)
            self._replace(name)

    def _interrupt_all(self) -> None:
        with self._lock:
            for run_id, name in self._running.values():
                if name in self.pool.workers and run_id not in self._cancelled:
                    self._cancelled.add(run_id)
                    self.pool.workers[name].actor.interrupt.remote(run_id)

    def _forget(self, run_id: str) -> None:
        self._models.pop(run_id, None)
        self._held.pop(run_id, None)
        self._renamed.pop(run_id, None)
        self._cancelled.discard(run_id)


def _choices(states: list[WorkerState], kind: str) -> list[str]:
    return sorted({name for state in states for k, name in state.on_disk | state.loaded if k == kind})


def worker_factory(spec: ray_workers.WorkerSpec | None, *, retries: int = RETRIES
                   ) -> Callable[[Engine, RunStore, Listener], ClusterWorker]:
    """What ``create_app(worker_factory=...)`` calls to make the server's worker: Ray workers by ``spec``.

    ``spec.home`` ``None``: the workers read the head's home folder path on their machines. Connect
    first (:func:`gouache.cluster.ray_workers.connect`).
    """
    def make(engine: Engine, store: RunStore, listener: Listener) -> ClusterWorker:
        chosen = spec or ray_workers.spec(None, None, 0, None)
        if chosen.home is None:
            chosen = ray_workers.WorkerSpec(chosen.count, chosen.threads, chosen.gpus, str(engine.settings.home))
        return ClusterWorker(engine, store, listener, chosen, retries=retries)

    return make
