"""What a ComfyUI client sent with each prompt, kept beside the run store (same home, own file).

The run store keeps the run (the converted ``gouache/1`` workflow, its status, outputs, errors);
this table keeps what only ComfyUI's API shows: the prompt as sent, the client to send its messages
to, ComfyUI's queue ``number``, ``extra_data`` and the output nodes it will execute. A row is written
before its run is queued, so the run's first event always finds it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gouache.engine import jsonio

SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    number     INTEGER PRIMARY KEY AUTOINCREMENT,  -- ComfyUI's queue number
    prompt_id  TEXT NOT NULL UNIQUE,               -- the run's id in the run store
    client_id  TEXT,                               -- where its websocket messages go
    prompt     TEXT NOT NULL,                      -- the API-format prompt as sent (JSON)
    extra_data TEXT NOT NULL,                      -- ComfyUI's extra_data, client_id included (JSON)
    outputs    TEXT NOT NULL,                      -- output node ids it will execute (JSON list)
    created    REAL NOT NULL
);
"""


@dataclass(frozen=True)
class ComfyPrompt:
    """One prompt queued through ComfyUI's API."""

    number: int
    prompt_id: str
    client_id: str | None
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue item: ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptTable:
    """The prompts queued through ComfyUI's API, in one SQLite file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def add(self, prompt_id: str, client_id: str | None, prompt: dict[str, Any], extra_data: dict[str, Any],
            outputs: list[str]) -> int | None:
        """Record a prompt; its queue number, or ``None`` when ``prompt_id`` was used before."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO prompts (prompt_id, client_id, prompt, extra_data, outputs, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (prompt_id, client_id, jsonio.dumps(prompt), jsonio.dumps(extra_data), jsonio.dumps(outputs),
                     time.time()))
            except sqlite3.IntegrityError:
                return None
        return int(cursor.lastrowid)

    def remove(self, prompt_id: str) -> None:
        """Forget a prompt whose run could not be queued."""
        with self._lock:
            self._db.execute("DELETE FROM prompts WHERE prompt_id = ?", (prompt_id,))

    def get(self, prompt_id: str) -> ComfyPrompt | None:
        """One prompt, or ``None`` (the run was queued through gouache's own API, or never existed)."""
        found = self.many([prompt_id])
        return found.get(prompt_id)

    def many(self, prompt_ids: list[str]) -> dict[str, ComfyPrompt]:
        """The prompts among ``prompt_ids``, by id."""
        if not prompt_ids:
            return {}
        marks = ", ".join("?" * len(prompt_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM prompts WHERE prompt_id IN ({marks})", prompt_ids).fetchall()
        return {row["prompt_id"]: _prompt(row) for row in rows}

    def newest(self, limit: int) -> list[str]:
        """The ids of the newest ``limit`` prompts, oldest first (ComfyUI lists history in that order)."""
        with self._lock:
            rows = self._db.execute("SELECT prompt_id FROM prompts ORDER BY number DESC LIMIT ?", (limit,)).fetchall()
        return [row["prompt_id"] for row in reversed(rows)]


def _prompt(row: sqlite3.Row) -> ComfyPrompt:
    return ComfyPrompt(row["number"], row["prompt_id"], row["client_id"], jsonio.loads(row["prompt"]),
                       jsonio.loads(row["extra_data"]), jsonio.loads(row["outputs"]))
