"""POST /api/runs with a sweep: one run per combination of values, all queued or none."""

from __future__ import annotations

from web_support import steps_workflow


def test_a_sweep_queues_one_run_per_combination_in_order_and_all_run(client):
    reply = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0),
                                      "sweep": {"number.value": "1..3", "steps.steps": [1, 2]}})
    assert reply.status == 202
    runs = reply.json["runs"]
    assert [run["values"] for run in runs] == [{"number.value": v, "steps.steps": s} for v in (1, 2, 3) for s in (1, 2)]
    assert [run["position"] for run in runs] == sorted(run["position"] for run in runs)
    records = [client.wait_run(run["run_id"]) for run in runs]
    assert [record["status"] for record in records] == ["succeeded"] * 6
    stored = client.get(f"/api/runs/{runs[5]['run_id']}?workflow=1").json["workflow"]["nodes"]
    assert stored["number"]["inputs"]["value"] == 3 and stored["steps"]["inputs"]["steps"] == 2


def test_zip_pairs_the_values(client):
    reply = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0), "zip": True,
                                      "sweep": {"number.value": [1, 2], "steps.steps": [3, 4]}})
    assert [run["values"] for run in reply.json["runs"]] == [
        {"number.value": 1, "steps.steps": 3}, {"number.value": 2, "steps.steps": 4}]


def test_one_invalid_run_queues_none_and_says_which_values(client):
    reply = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0),
                                      "sweep": {"steps.steps": [1, 0]}})
    assert reply.status == 400
    [problem] = reply.json["problems"]
    assert (problem["node"], problem["input"]) == ("steps", "steps")
    assert problem["message"].startswith("with steps.steps=0: ")
    assert client.get("/api/runs").json["queue"] == []


def test_bad_sweeps_are_refused_with_how_to_write_them(client):
    for sweep, zipped, said in (({"number.value": "@/etc/passwd"}, False, "JSON list"),
                                ({"value": [1]}, False, "NODE.INPUT"),
                                ({}, False, "names no input"),
                                ({"number.value": [1, 2], "steps.steps": [1]}, True, "as many values")):
        reply = client.post("/api/runs", {"workflow": steps_workflow(), "sweep": sweep, "zip": zipped})
        assert reply.status == 400, sweep
        [problem] = reply.json["problems"]
        assert problem["code"] == "invalid_sweep" and said in problem["message"], problem
