"""The run store's side of ``gouache serve --ray``: claiming a given run, tries, a run queued again."""

from __future__ import annotations

import sqlite3

from gouache.web.store import RunStore

WORKFLOW = {"format": "gouache/1", "nodes": {}}


def attempt(worker: str) -> dict:
    return {"worker": worker, "host": "h", "pid": 1, "started": 1.0, "finished": None, "outcome": "running",
            "message": ""}


def test_a_run_whose_worker_died_goes_back_to_its_place_with_its_tries(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    for run_id in ("a", "b", "c"):
        store.add(run_id, WORKFLOW, None)
    assert [run_id for run_id, _ in store.queued(10)] == ["a", "b", "c"]
    assert store.claim("b", attempt("w1")).run_id == "b"
    assert store.claim("b", attempt("w2")) is None  # taken once
    [tried] = store.end_attempt("b", "worker_lost", "gone")
    assert (tried["worker"], tried["outcome"], tried["message"]) == ("w1", "worker_lost", "gone")
    assert tried["finished"] is not None
    assert store.requeue("b") and not store.requeue("b")
    assert [run_id for run_id, _ in store.queued(10)] == ["a", "b", "c"]  # its old place, ahead of c
    assert store.get("b")["status"] == "queued" and store.get("b")["position"] == 1
    store.claim("b", attempt("w2"))
    store.end_attempt("b", "succeeded")
    store.finish("b", "succeeded", executed=[], cached=[], outputs={}, timings={}, seconds=1.0, error=None)
    record = store.get("b")
    assert [(t["worker"], t["outcome"]) for t in record["attempts"]] == [("w1", "worker_lost"), ("w2", "succeeded")]
    assert store.get("a")["attempts"] == []


def test_a_restart_closes_the_try_of_a_run_left_running(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    store.add("a", WORKFLOW, None)
    store.claim("a", attempt("w1"))
    store.close()
    again = RunStore(tmp_path / "runs.sqlite3")
    assert again.recover() == ["a"]
    record = again.get("a")
    assert record["status"] == "interrupted" and record["attempts"][0]["outcome"] == "server_stopped"


def test_a_queue_written_before_tries_existed_still_opens(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, status TEXT"
                   " NOT NULL, workflow TEXT NOT NULL, targets TEXT, created REAL NOT NULL, started REAL, finished "
                   "REAL, seconds REAL, executed TEXT NOT NULL DEFAULT '[]', cached TEXT NOT NULL DEFAULT '[]', "
                   "outputs TEXT NOT NULL DEFAULT '{}', timings TEXT NOT NULL DEFAULT '{}', error TEXT)")
        db.execute("INSERT INTO runs (run_id, status, workflow, created) VALUES ('old', 'queued', '{}', 1.0)")
    store = RunStore(path)
    assert store.get("old")["attempts"] == [] and [run_id for run_id, _ in store.queued(5)] == ["old"]
