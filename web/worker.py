"""The one worker thread that runs queued workflows, off the server's event loop.

It is also the single relay of run events to the server: every engine event passes through
:meth:`Worker._on_event`, and a run's ``finished`` event is held back until the run's record is
in the store, so a client that reacts to ``finished`` always reads the final record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gouache.engine import Engine, Event, WorkflowInvalid

from gouache.web.store import RunStore

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class Worker:
    """Takes runs from the store one at a time and runs them with the engine."""

    def __init__(self, engine: Engine, store: RunStore, listener: Listener) -> None:
        self.engine = engine
        self.store = store
        self.listener = listener
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        """Held while queueing a run and while taking the next: ``queued`` always precedes ``started``."""
        self._current: str | None = None
        self._cancelled: set[str] = set()
        self._held: Event | None = None
        self._thread = threading.Thread(target=self._loop, name="gouache-worker", daemon=True)
        self._unsubscribe = engine.subscribe(self._on_event)

    def start(self) -> None:
        """Start the worker thread; it runs whatever is queued, then waits for more."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the current run and stop the thread."""
        self._stopping = True
        with self._lock:
            if self._current is not None:
                self.engine.interrupt()
        self._wake.set()
        self._thread.join(timeout)
        self._unsubscribe()

    def submit(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None) -> int:
        """Queue a run, announce it, wake the worker; returns its position."""
        with self._queue_lock:
            position = self.store.add(run_id, workflow, targets)
            self.emit("queued", run_id=run_id, position=position)
        self._wake.set()
        return position

    @property
    def current(self) -> str | None:
        """The id of the run being run, if any."""
        return self._current

    def emit(self, event_type: str, **data: Any) -> None:
        """Send a server event (``queued``, ``cancelled``) through the engine's bus."""
        self.engine.events.emit(event_type, **data)

    def cancel(self, run_id: str) -> str | None:
        """Cancel a queued run (``"cancelled"``) or interrupt the running one (``"interrupting"``).

        ``None`` when the run is neither queued nor running.
        """
        if self.store.cancel_queued(run_id):
            self.emit("cancelled", run_id=run_id)
            return "cancelled"
        with self._lock:
            if self._current == run_id:
                self._cancelled.add(run_id)
                self.engine.interrupt()
                return "interrupting"
        return None

    def _on_event(self, event: Event) -> None:
        if event.type == "started" and event.data.get("run_id") in self._cancelled:
            # The executor clears its stop flag as a run starts: re-assert a cancel that came earlier.
            self.engine.interrupt()
        if event.type == "finished" and event.data.get("run_id") == self._current:
            self._held = event
            return
        self.listener(event)

    def _loop(self) -> None:
        while not self._stopping:
            try:
                with self._queue_lock:
                    record = self.store.claim_next()
            except Exception:
                log.exception("cannot read the run queue")
                record = None
            if record is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._execute(record)

    def _execute(self, record: dict[str, Any]) -> None:
        run_id = record["run_id"]
        with self._lock:
            self._current = run_id
        self._held = None
        try:
            result = self.engine.run(record["workflow"], outputs=record["targets"], run_id=run_id)
            outputs = {node: {"images": images} for node, images in result.images.items()}
            error = result.error.to_json() if result.error else None
            status = result.status
            if status == "interrupted" and error is None:
                error = {"node": None, "type": None, "message": "interrupted", "traceback": ""}
            self.store.finish(run_id, status, executed=result.executed, cached=result.cached, outputs=outputs,
                              timings=result.timings, seconds=result.seconds, error=error)
            finished = self._held or Event("finished", {"run_id": run_id, "status": status,
                                                        "seconds": result.seconds, "executed": len(result.executed),
                                                        "cached": len(result.cached)})
        except WorkflowInvalid as invalid:
            # Valid when queued; not any more (a pack went away across a restart, a model was removed).
            problems = [problem.to_json() for problem in invalid.problems]
            error = {"node": problems[0]["node"] if problems else None, "type": None,
                     "message": str(invalid), "traceback": "", "problems": problems}
            self._record_failure(run_id, error)
            finished = Event("finished", {"run_id": run_id, "status": "failed", "seconds": 0.0,
                                          "executed": 0, "cached": 0})
        except Exception as failure:  # the engine reports node failures in the result; this is a bug
            log.exception("run %s failed outside any node", run_id)
            self._record_failure(run_id, {"node": None, "type": None, "traceback": "",
                                          "message": f"{type(failure).__name__}: {failure}"})
            finished = Event("finished", {"run_id": run_id, "status": "failed", "seconds": 0.0,
                                          "executed": 0, "cached": 0})
        finally:
            with self._lock:
                self._current = None
                self._cancelled.discard(run_id)
            self._held = None
        self.listener(finished)

    def _record_failure(self, run_id: str, error: dict[str, Any]) -> None:
        self.store.finish(run_id, "failed", executed=[], cached=[], outputs={}, timings={}, seconds=0.0, error=error)
