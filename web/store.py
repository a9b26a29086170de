"""The run queue and history, kept in SQLite in the home folder so that nothing is lost on a crash.

One table holds every run, queued or finished. A run moves ``queued -> running -> succeeded |
failed | interrupted``, or ``queued -> cancelled``. At start-up :meth:`RunStore.recover` marks a
run left ``running`` by a crash or a kill as ``interrupted``; queued runs stay queued and run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gouache.web.schemas import run_error

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
    error     TEXT                                -- {"node","type","message","traceback","input","code"} (JSON) or NULL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
"""

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "interrupted", "cancelled")
RECOVERED_MESSAGE = "the server stopped while this run was running; queue it again to finish it"


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
            error = json.dumps(run_error(RECOVERED_MESSAGE, "server_stopped"))
            db.execute("UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE status = 'running'",
                       (time.time(), error))
        return ids

    def add(self, run_id: str, workflow: dict[str, Any], targets: list[str] | None) -> int:
        """Queue a run; return its position (how many runs are ahead of it)."""
        with self._transaction() as db:
            db.execute("INSERT INTO runs (run_id, status, workflow, targets, created) VALUES (?, 'queued', ?, ?, ?)",
                       (run_id, json.dumps(workflow), None if targets is None else json.dumps(targets), time.time()))
            (ahead,) = db.execute("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running') AND run_id != ?",
                                  (run_id,)).fetchone()
        return int(ahead)

    def claim_next(self) -> dict[str, Any] | None:
        """Take the oldest queued run and mark it running; ``None`` when the queue is empty."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM runs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE runs SET status = 'running', started = ? WHERE seq = ?", (time.time(), row["seq"]))
        record = _record(row, with_workflow=True)
        record["status"] = "running"
        return record

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; ``False`` if it is not queued (any more)."""
        with self._transaction() as db:
            changed = db.execute("UPDATE runs SET status = 'cancelled', finished = ? WHERE run_id = ? AND status = 'queued'",
                                 (time.time(), run_id)).rowcount
        return changed == 1

    def finish(self, run_id: str, status: str, *, executed: list[str], cached: list[str],
               outputs: dict[str, Any], timings: dict[str, float], seconds: float,
               error: dict[str, Any] | None) -> None:
        """Record how a running run ended."""
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished = ?, seconds = ?, executed = ?, cached = ?, outputs = ?,"
                " timings = ?, error = ? WHERE run_id = ?",
                (status, time.time(), seconds, json.dumps(executed), json.dumps(cached), json.dumps(outputs),
                 json.dumps(timings), None if error is None else json.dumps(error), run_id))

    def get(self, run_id: str, *, with_workflow: bool = False) -> dict[str, Any] | None:
        """One run as the API shows it, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
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
                "SELECT * FROM runs WHERE status IN ('queued', 'running') ORDER BY status = 'queued', seq").fetchall()
        records = [_record(row) for row in rows]
        for position, record in enumerate(records):
            record["position"] = position if record["status"] == "queued" else None
        return records

    def history(self, limit: int, before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Finished runs, newest first, ``limit`` at a time; returns them and the next cursor."""
        query = "SELECT * FROM runs WHERE status IN ('succeeded', 'failed', 'interrupted', 'cancelled')"
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
        "executed": json.loads(row["executed"]),
        "cached": json.loads(row["cached"]),
        "outputs": json.loads(row["outputs"]),
        "timings": json.loads(row["timings"]),
        "error": None if row["error"] is None else json.loads(row["error"]),
        "targets": None if row["targets"] is None else json.loads(row["targets"]),
    }
    if with_workflow:
        record["workflow"] = json.loads(row["workflow"])
    return record
