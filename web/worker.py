"""The one worker thread that runs queued workflows, off the server's event loop.

It is also the single relay of run events to the server: every engine event passes through
:meth:`Worker._on_event`, and a run's ``finished`` event is sent only once the run's record is
in the store, so a client that reacts to ``finished`` always reads the final record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gouache.engine import Engine, Event, Problem, ValidWorkflow, WorkflowInvalid
from gouache.engine.events import EventData, QueuedData
from gouache.engine.executor import RunResult, finished_event

from gouache.web.store import Claimed, RunStore, StoredRunError

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
        self._prepared: dict[str, ValidWorkflow] = {}
        """Workflows validated when they were queued, by run id: a run needs no second validation."""
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

    def submit(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None,
               valid: ValidWorkflow | None = None) -> int:
        """Queue a run, announce it, wake the worker; returns its position.

        ``valid`` is ``workflow`` as the engine validated it: the run uses it as it is. Runs queued
        by an earlier process (recovered from the store) are validated again when they start.
        """
        with self._queue_lock:
            position = self.store.add(run_id, workflow, targets)
            if valid is not None:
                self._prepared[run_id] = valid
            self.emit(QueuedData, run_id=run_id, position=position)
        self._wake.set()
        return position

    def check(self, workflow: Any, overrides: dict[str, Any] | None = None,
              outputs: list[str] | None = None) -> tuple[ValidWorkflow | None, list[Problem]]:
        """Validate a workflow as the runs here will run it: against this engine's models."""
        return self.engine.check(workflow, overrides, outputs)

    def choices(self, kind: str) -> list[str]:
        """The models of ``kind`` a run here may choose: this engine's."""
        return self.engine.models.names(kind)

    def emit(self, kind: type[EventData], **fields: Any) -> None:
        """Send a server event (``queued``, ``cancelled``) through the engine's bus."""
        self.engine.events.emit(kind, **fields)

    def cancel(self, run_id: str) -> str | None:
        """Cancel a queued run (``"cancelled"``) or interrupt the running one (``"interrupting"``).

        ``None`` when the run is neither queued nor running.
        """
        if self.store.cancel_queued(run_id):
            from gouache.web.schemas import CancelledData  # the schemas are imported on first use (issue 18)

            self._prepared.pop(run_id, None)
            self.emit(CancelledData, run_id=run_id)
            return "cancelled"
        with self._lock:
            if self._current == run_id:
                self._cancelled.add(run_id)
                self.engine.interrupt()
                return "interrupting"
        return None

    def _on_event(self, event: Event) -> None:
        if event.type == "started" and event.data.run_id in self._cancelled:
            # The executor clears its stop flag as a run starts: re-assert a cancel that came earlier.
            self.engine.interrupt()
        if event.type == "finished" and event.data.run_id == self._current:
            return  # _execute sends it once the record is stored
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

    def _execute(self, claimed: Claimed) -> None:
        from gouache.web.schemas import run_error  # the schemas are imported on first use (issue 18)

        run_id = claimed.run_id
        with self._lock:
            self._current = run_id
        try:
            workflow = self._prepared.pop(run_id, None) or claimed.workflow()
            result = self.engine.run(workflow, outputs=claimed.targets, run_id=run_id)
            outputs = {node: {"images": images} for node, images in result.images.items()}
            if result.error is not None:
                error = result.error.to_json()
            elif result.status == "interrupted":
                error = run_error("interrupted", "interrupted")
            else:
                error = None
            self.store.finish(run_id, result.status, executed=result.executed, cached=result.cached,
                              outputs=outputs, timings=result.timings, seconds=result.seconds, error=error)
        except WorkflowInvalid as invalid:
            # Valid when queued; not any more (a pack went away across a restart, a model was removed).
            problems = invalid.problems
            result = self._record_failure(run_id, run_error(str(invalid), "workflow_invalid", problems=problems,
                                                            node=problems[0].node if problems else None))
        except StoredRunError as unreadable:  # queued by an older version that wrote NaN into it
            problem = Problem(None, None, "unreadable_workflow", str(unreadable))
            result = self._record_failure(run_id, run_error(str(unreadable), "workflow_invalid", problems=[problem]))
        except Exception as failure:  # the engine reports node failures in the result; this is a bug
            log.exception("run %s failed outside any node", run_id)
            result = self._record_failure(run_id, run_error(f"{type(failure).__name__}: {failure}", "internal_error"))
        finally:
            with self._lock:
                self._current = None
                self._cancelled.discard(run_id)
        self.listener(Event(finished_event(result)))

    def _record_failure(self, run_id: str, error: dict[str, Any]) -> RunResult:
        self.store.finish(run_id, "failed", executed=[], cached=[], outputs={}, timings={}, seconds=0.0, error=error)
        return RunResult(run_id, status="failed")
