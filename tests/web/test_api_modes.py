"""The server honours node modes (issue 16): what the editor saves as muted or bypassed does not run."""

from __future__ import annotations

from web_support import steps_workflow


def test_a_bypassed_node_hands_its_input_on_and_a_muted_branch_does_not_run(client):
    workflow = steps_workflow()
    workflow["nodes"]["steps"]["mode"] = "bypass"
    workflow["nodes"]["extra"] = {"type": "Swatch", "mode": "mute",
                                  "inputs": {"value": {"node": "number", "output": "value"}}}
    reply = client.post("/api/runs", {"workflow": workflow})
    assert reply.status == 202
    record = client.wait_run(reply.json["run_id"])
    assert record["status"] == "succeeded" and set(record["executed"]) == {"number", "swatch"}


def test_what_only_a_muted_node_feeds_is_silent_and_a_half_muted_node_is_refused(client):
    workflow = steps_workflow()
    workflow["nodes"]["number"]["mode"] = "mute"
    workflow["nodes"]["other"] = {"type": "Number", "inputs": {"value": 2}}
    workflow["nodes"]["swatch2"] = {"type": "Swatch", "inputs": {"value": {"node": "other", "output": "value"}}}
    reply = client.post("/api/runs", {"workflow": workflow})
    assert reply.status == 202  # steps and swatch are fed only by the muted node: silent, the rest runs
    record = client.wait_run(reply.json["run_id"])
    assert set(record["executed"]) == {"other", "swatch2"}
    workflow["nodes"]["steps"]["inputs"]["delay"] = {"node": "other", "output": "value"}
    reply = client.post("/api/runs", {"workflow": workflow})
    assert reply.status == 400
    [problem] = reply.json["problems"]
    assert (problem["node"], problem["input"], problem["code"]) == ("steps", "x", "muted_input")
