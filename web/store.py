"""The run queue and history, kept in SQLite in the home folder so that nothing is lost on a crash.

One table holds every run, queued or finished. A run moves ``queued -> running -> succeeded |
failed | interrupted``, or ``queued -> cancelled``. At start-up :meth:`RunStore.recover` marks a
run left ``running`` by a crash or a kill as ``interrupted``; queued runs stay queued and run.

On a cluster (``gouache serve --ray``) a run may also go ``running -> queued`` when the worker
running it dies (:meth:`RunStore.requeue`); each try is an entry of its ``attempts`` (the worker,
its machine and process, when it started and ended, and how: ``running``, ``worker_lost`` or the
run's status). The in-process worker records no attempts.

Every JSON column is written and read with :mod:`gouache.engine.jsonio` (strict JSON: a NaN is
refused on the way in, never stored to be served back as something that is not JSON).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gouache.engine import jsonio

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order and pagination cursor
    run_id    TEXT NOT NULL UNIQUE,
    status    TEXT NOT NULL,                      -- queued|running|succeeded|failed|interrupted|cancelled
    workflow  TEXT NOT NULL,                      -- the submitted gouache/1 workflow (JSON)
    targets   TEXT,                               -- requested output node ids (JSON list) or NULL
    created   REAL NOT NULL,
    started   REAL,
    finished  REAL,
    seconds   REAL,
    executed  TEXT NOT NULL DEFAULT '[]',         -- node ids run (JSON list)
    cached    TEXT NOT NULL DEFAULT '[]',         -- node ids taken from the cache (JSON list)
    outputs   TEXT NOT NULL DEFAULT '{}',         -- {node: {"images": [{"kind", "path"}]}} (JSON)
    timings   TEXT NOT NULL DEFAULT '{}',         -- {node: seconds} (JSON)
    error     TEXT,                               -- {"node","type","message","traceback","input","code"} (JSON) or NULL
    attempts  TEXT NOT NULL DEFAULT '[]'          -- tries on cluster workers (JSON list), oldest first
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
"""

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "interrupted", "cancelled")
RECOVERED_MESSAGE = "the server stopped while this run was running; queue it again to finish it"
COLUMNS = ("run_id, seq, status, created, started, finished, seconds, executed, cached, outputs, timings, error, targets,"
           " attempts")
"""Every column but ``workflow``, which can be megabytes and is read only when asked for."""


class StoredRunError(ValueError):
    """A stored column that is not strict JSON (written by an older version, or edited by hand)."""


class RunStore:
    """Queue and history of runs in one SQLite file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(runs)")}
        if "attempts" not in columns:  # a queue written before runs had attempts
            self._db.execute("ALTER TABLE runs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]'")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def recover(self) -> list[str]:
        """Mark runs a previous process left ``running`` as interrupted; return their ids."""
        with self._transaction() as db:
            ids = [row["run_id"] for row in db.execute("SELECT run_id FROM runs WHERE status = 'running'")]
            if not ids:  # the usual start: neither the schemas nor RunError's validator are needed (issue 18)
                return ids
            from gouache.web.schemas import run_error

            error = jsonio.dumps(run_error(RECOVERED_MESSAGE, "server_stopped"))
            db.execute("UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE status = 'running'",
                       (time.time(), error))
            for row in db.execute("SELECT run_id, attempts FROM runs WHERE attempts != '[]' AND run_id IN "
                                  f"({', '.join('?' * len(ids))})", ids).fetchall():
                attempts = _column(row, "attempts")
                attempts[-1].update(finished=time.time(), outcome="server_stopped", message=RECOVERED_MESSAGE)
                db.execute("UPDATE runs SET attempts = ? WHERE run_id = ?", (jsonio.dumps(attempts), row["run_id"]))
        return ids

    def add(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None) -> int:
        """Queue a run; return its position (how many runs are ahead of it)."""
        text, listed = jsonio.dumps(workflow), None if targets is None else jsonio.dumps(targets)
        with self._lock:  # the lock orders every statement of this process: count and insert see one state
            (ahead,) = self._db.execute("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()
            self._db.execute("INSERT INTO runs (run_id, status, workflow, targets, created) VALUES (?, 'queued', ?, ?, ?)",
                             (run_id, text, listed, time.time()))
        return int(ahead)

    def claim_next(self) -> Claimed | None:
        """Take the oldest queued run and mark it running; ``None`` when the queue is empty.

        A read finds the candidate (the worker asks after every run, and mostly the queue is
        empty: a read takes no write lock); one guarded UPDATE takes it, so a cancel and a start
        never both win.
        """
        with self._lock:
            while True:
                candidate = self._db.execute("SELECT seq FROM runs WHERE status = 'queued' ORDER BY seq LIMIT 1"
                                             ).fetchone()
                if candidate is None:
                    return None
                row = self._db.execute("UPDATE runs SET status = 'running', started = ? WHERE seq = ? AND status = "
                                       "'queued' RETURNING run_id, targets", (time.time(), candidate["seq"])).fetchone()
                if row is not None:
                    return Claimed(self, row["run_id"], _column(row, "targets"))

    def queued(self, limit: int) -> list[tuple[str, list[str] | None]]:
        """The first ``limit`` queued runs, oldest first: ``(run_id, targets)``; nothing is taken."""
        with self._lock:
            rows = self._db.execute("SELECT run_id, targets FROM runs WHERE status = 'queued' ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [(row["run_id"], _column(row, "targets")) for row in rows]

    def claim(self, run_id: str, attempt: dict[str, Any]) -> Claimed | None:
        """Take one queued run for a cluster worker, adding ``attempt`` (its try); ``None`` if it is not queued.

        One guarded UPDATE, as :meth:`claim_next`: a cancel and a start never both win.
        """
        with self._lock:
            row = self._db.execute("SELECT attempts FROM runs WHERE run_id = ? AND status = 'queued'", (run_id,)
                                   ).fetchone()
            if row is None:
                return None
            attempts = jsonio.dumps([*jsonio.loads(row["attempts"]), attempt])
            row = self._db.execute("UPDATE runs SET status = 'running', started = ?, attempts = ? WHERE run_id = ? "
                                   "AND status = 'queued' RETURNING run_id, targets",
                                   (time.time(), attempts, run_id)).fetchone()
        return None if row is None else Claimed(self, row["run_id"], _column(row, "targets"))

    def end_attempt(self, run_id: str, outcome: str, message: str = "") -> list[dict[str, Any]]:
        """Close the run's last try with ``outcome``; returns every try."""
        with self._lock:
            row = self._db.execute("SELECT run_id, attempts FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return []
            attempts = _column(row, "attempts")
            if attempts:
                attempts[-1].update(finished=time.time(), outcome=outcome, message=message)
            self._db.execute("UPDATE runs SET attempts = ? WHERE run_id = ?", (jsonio.dumps(attempts), run_id))
        return attempts

    def requeue(self, run_id: str) -> bool:
        """Put a running run back in the queue at its old place (its worker died); ``False`` if it is not running."""
        with self._lock:
            changed = self._db.execute("UPDATE runs SET status = 'queued', started = NULL WHERE run_id = ? AND "
                                       "status = 'running'", (run_id,)).rowcount
        return changed == 1

    def workflow(self, run_id: str) -> Any:
        """The workflow a run was submitted with; :class:`StoredRunError` when it is not strict JSON."""
        with self._lock:
            row = self._db.execute("SELECT run_id, workflow FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _column(row, "workflow")

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; ``False`` if it is not queued (any more)."""
        with self._transaction() as db:
            changed = db.execute("UPDATE runs SET status = 'cancelled', finished = ? WHERE run_id = ? AND status = 'queued'",
                                 (time.time(), run_id)).rowcount
        return changed == 1

    def finish(self, run_id: str, status: str, *, executed: list[str], cached: list[str],
               outputs: dict[str, Any], timings: dict[str, float], seconds: float,
               error: dict[str, Any] | None) -> None:
        """Record how a running run ended (one statement: its own transaction)."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, finished = ?, seconds = ?, executed = ?, cached = ?, outputs = ?,"
                " timings = ?, error = ? WHERE run_id = ?",
                (status, time.time(), seconds, jsonio.dumps(executed), jsonio.dumps(cached), jsonio.dumps(outputs),
                 jsonio.dumps(timings), None if error is None else jsonio.dumps(error), run_id))

    def get(self, run_id: str, *, with_workflow: bool = False) -> dict[str, Any] | None:
        """One run as the API shows it, or ``None``."""
        columns = COLUMNS + (", workflow" if with_workflow else "")
        with self._lock:
            row = self._db.execute(f"SELECT {columns} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            position = self._position(row) if row is not None else None
        if row is None:
            return None
        record = _record(row, with_workflow=with_workflow)
        record["position"] = position
        return record

    def _position(self, row: sqlite3.Row) -> int | None:
        if row["status"] != "queued":
            return None
        (ahead,) = self._db.execute(
            "SELECT COUNT(*) FROM runs WHERE (status = 'queued' AND seq < ?) OR status = 'running'",
            (row["seq"],)).fetchone()
        return int(ahead)

    def queue(self) -> list[dict[str, Any]]:
        """The running run (if any) then the queued ones, in the order they will run."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM runs WHERE status IN ('queued', 'running') ORDER BY status = 'queued', seq"
            ).fetchall()
        records = [_record(row) for row in rows]
        for position, record in enumerate(records):
            record["position"] = position if record["status"] == "queued" else None
        return records

    def history(self, limit: int, before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Finished runs, newest first, ``limit`` at a time; returns them and the next cursor."""
        query = f"SELECT {COLUMNS} FROM runs WHERE status IN ('succeeded', 'failed', 'interrupted', 'cancelled')"
        params: list[Any] = []
        if before is not None:
            query += " AND seq < ?"
            params.append(before)
        query += " ORDER BY seq DESC LIMIT ?"
        params.append(limit + 1)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_record(row) for row in rows], (rows[-1]["seq"] if more and rows else None)


def _record(row: sqlite3.Row, *, with_workflow: bool = False) -> dict[str, Any]:
    record: dict[str, Any] = {
        "run_id": row["run_id"],
        "seq": row["seq"],
        "status": row["status"],
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        "seconds": row["seconds"],
        "executed": _column(row, "executed"),
        "cached": _column(row, "cached"),
        "outputs": _column(row, "outputs"),
        "timings": _column(row, "timings"),
        "error": _column(row, "error"),
        "targets": _column(row, "targets"),
        "attempts": _column(row, "attempts"),
    }
    if with_workflow:
        record["workflow"] = _column(row, "workflow")
    return record


def _column(row: sqlite3.Row, name: str) -> Any:
    text = row[name]
    if text is None:
        return None
    try:
        return jsonio.loads(text)
    except jsonio.JsonError as error:
        raise StoredRunError(f"run {row['run_id']!r}: its stored {name} is not strict JSON ({error}); "
                             "an older version of gouache or a hand edit wrote it") from None


@dataclass(frozen=True)
class Claimed:
    """A run the worker took from the queue: its id and targets; its workflow read when needed."""

    store: RunStore
    run_id: str
    targets: list[str] | None

    def workflow(self) -> Any:
        """The submitted workflow, from the database."""
        return self.store.workflow(self.run_id)
