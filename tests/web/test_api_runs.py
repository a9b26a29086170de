"""POST/GET/DELETE /api/runs, GET /api/nodes and /api/models against the real server."""

from __future__ import annotations

import time

from web_support import chain, steps_workflow


def test_nodes_lists_the_registry_with_widgets_types_and_colours(client, engine):
    body = client.get("/api/nodes").json
    types = {node["type"]: node for node in body["nodes"]}
    assert set(types) == set(engine.registry.node_types())
    assert "toy" in body["categories"] and "web/test" in body["categories"]
    steps = {spec["name"]: spec for spec in types["Steps"]["inputs"]}
    assert steps["steps"]["min"] == 1 and steps["delay"]["step"] == 0.01
    assert types["Record"]["output_node"] is True
    assert {spec["name"]: spec for spec in types["Record"]["inputs"]}["seed"]["seed"] is True
    colours = {socket["name"]: socket for socket in body["types"]}
    assert colours["BLOB"]["color"] == "#aa00aa"
    assert colours["INT"]["converts_to"] == ["FLOAT"]


def test_a_run_is_queued_then_succeeds_with_its_images(client):
    reply = client.post("/api/runs", {"workflow": steps_workflow()})
    assert reply.status == 202
    queued = reply.json
    assert set(queued) == {"run_id", "position"} and queued["position"] == 0
    record = client.wait_run(queued["run_id"])
    assert record["status"] == "succeeded"
    assert set(record["executed"]) == {"number", "steps", "swatch"}
    images = record["outputs"]["swatch"]["images"]
    assert images == [{"kind": "output", "path": "swatch_00000.png"}]
    assert set(record["timings"]) == {"number", "steps", "swatch"}
    assert record["error"] is None
    assert client.get(f"/api/files/output/{images[0]['path']}").body[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_reuses_the_cache(client):
    workflow = chain(("a", {"type": "Number", "inputs": {"value": 2}}),
                     ("r", {"type": "Record", "inputs": {"value": {"node": "a", "output": "value"}}}))
    first = client.wait_run(client.post("/api/runs", {"workflow": workflow}).json["run_id"])
    second = client.wait_run(client.post("/api/runs", {"workflow": workflow}).json["run_id"])
    assert first["executed"] == ["a", "r"]
    assert "a" in second["cached"]


def test_every_problem_is_reported_at_once(client):
    workflow = chain(("a", {"type": "Number", "inputs": {"value": "not a number"}}),
                     ("b", {"type": "NoSuchNode"}),
                     ("c", {"type": "BlobSize", "inputs": {"blob": {"node": "a", "output": "value"}}}))
    reply = client.post("/api/runs", {"workflow": workflow, "outputs": ["zzz"]})
    assert reply.status == 400
    problems = reply.json["problems"]
    where = {(p["node"], p["input"]) for p in problems}
    assert ("a", "value") in where and ("c", "blob") in where and any(p["node"] == "b" for p in problems)
    assert any(p["code"] == "unknown_output_node" for p in problems)
    assert all(set(p) == {"node", "input", "code", "message"} for p in problems)


def test_malformed_bodies_are_refused(client):
    assert client.post("/api/runs", raw=b"{not json", headers={"Content-Type": "application/json"}).status == 400
    assert client.post("/api/runs", {"workflow": {}, "extra": 1}).status == 400
    reply = client.post("/api/runs", {"workflow": {"format": "gouache/9", "nodes": {}}})
    assert reply.status == 400 and reply.json["problems"][0]["code"] == "unknown_format"


def test_a_failing_node_fails_the_run_with_its_error(client):
    workflow = chain(("f", {"type": "Fail"}), ("r", {"type": "Record", "inputs": {"value": {"node": "f", "output": "x"}}}))
    record = client.wait_run(client.post("/api/runs", {"workflow": workflow}).json["run_id"])
    assert record["status"] == "failed"
    assert record["error"]["node"] == "f" and "always fails" in record["error"]["message"]


def test_a_node_naming_an_input_fails_the_run_with_that_input(client):
    workflow = chain(("lookup", {"type": "Lookup", "inputs": {"key": "three"}}),
                     ("r", {"type": "Record", "inputs": {"value": {"node": "lookup", "output": "value"}}}))
    record = client.wait_run(client.post("/api/runs", {"workflow": workflow}).json["run_id"])
    assert record["status"] == "failed"
    error = record["error"]
    assert (error["node"], error["type"], error["input"], error["code"]) == ("lookup", "Lookup", "key", "unknown_key")
    assert error["message"] == "no entry 'three'; use one of one, two" and "InputError" in error["traceback"]


def test_queue_positions_cancel_and_interrupt(client):
    slow = steps_workflow(steps=200, delay=0.02)
    first = client.post("/api/runs", {"workflow": slow}).json
    second = client.post("/api/runs", {"workflow": slow}).json
    third = client.post("/api/runs", {"workflow": steps_workflow(steps=1)}).json
    assert (first["position"], second["position"], third["position"]) == (0, 1, 2)
    deadline = time.monotonic() + 10
    while client.get(f"/api/runs/{first['run_id']}").json["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    listing = client.get("/api/runs").json
    assert [run["run_id"] for run in listing["queue"]] == [first["run_id"], second["run_id"], third["run_id"]]
    assert listing["queue"][0]["status"] == "running"
    assert client.get(f"/api/runs/{second['run_id']}").json["position"] == 1

    cancelled = client.delete(f"/api/runs/{second['run_id']}")
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    interrupted = client.delete(f"/api/runs/{first['run_id']}")
    assert interrupted.status == 202 and interrupted.json["status"] == "interrupting"
    stopped = client.wait_run(first["run_id"])
    assert stopped["status"] == "interrupted" and stopped["error"]["code"] == "interrupted"
    assert client.get(f"/api/runs/{second['run_id']}").json["status"] == "cancelled"
    assert client.wait_run(third["run_id"])["status"] == "succeeded"
    assert client.delete(f"/api/runs/{third['run_id']}").status == 409
    assert client.delete("/api/runs/nope").status == 404
    assert client.get("/api/runs/nope").status == 404


def test_history_is_paginated_newest_first(client):
    ids = [client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0, x=i)}).json["run_id"] for i in range(5)]
    for run_id in ids:
        client.wait_run(run_id)
    page = client.get("/api/runs?limit=2").json
    assert [run["run_id"] for run in page["history"]] == ids[::-1][:2]
    seen = [run["run_id"] for run in page["history"]]
    while page["next_before"] is not None:
        page = client.get(f"/api/runs?limit=2&before={page['next_before']}").json
        seen += [run["run_id"] for run in page["history"]]
    assert seen == ids[::-1]
    assert client.get("/api/runs?limit=abc").status == 400


def test_the_run_keeps_the_submitted_workflow(client):
    workflow = steps_workflow(steps=1, delay=0)
    run_id = client.post("/api/runs", {"workflow": workflow, "outputs": ["steps"]}).json["run_id"]
    record = client.wait_run(run_id)
    assert record["executed"] == ["number", "steps"]
    assert client.get(f"/api/runs/{run_id}?workflow=1").json["workflow"] == workflow


def test_models_is_the_engine_listing(client, engine):
    assert client.get("/api/models").json == engine.models.as_json()


def test_the_server_answers_while_a_run_holds_the_cpu(client):
    run_id = client.post("/api/runs", {"workflow": chain(("b", {"type": "Busy", "inputs": {"steps": 10, "seconds": 0.1}}))}).json["run_id"]
    while client.get(f"/api/runs/{run_id}").json["status"] == "queued":
        time.sleep(0.01)
    worst = 0.0
    for _ in range(10):
        started = time.perf_counter()
        assert client.get("/api/runs").status == 200
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.5
    client.wait_run(run_id)
