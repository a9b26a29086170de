"""GET /ws: every event as JSON, throttled progress, previews as binary frames, catch-up on connect."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from web_support import Client, add_chain, chain, check_message, steps_workflow, unbatch
from gouache.web.hub import parse_preview_frame, preview_frame


async def collect(url: str, until, timeout: float = 30.0, on_open=None):
    """Messages (JSON dicts, or (node, jpeg) for previews) until ``until(message)`` is true."""
    messages = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http", "ws") + "/ws") as ws:
            if on_open is not None:
                await asyncio.to_thread(on_open)
            deadline = time.monotonic() + timeout
            while True:
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), (
                    f"the server closed the websocket: {message.type!r} {message.data!r} {message.extra!r}")
                if message.type == aiohttp.WSMsgType.BINARY:
                    items = [parse_preview_frame(message.data)]
                else:
                    frame = json.loads(message.data)
                    check_message(frame)
                    items = unbatch(frame)
                for item in items:
                    messages.append(item)
                    if until(item):
                        return messages


def is_finished(message) -> bool:
    return isinstance(message, dict) and message["type"] == "finished"


def test_a_client_sees_the_whole_run(server):
    client = Client(server.url)
    posted = {}
    messages = asyncio.run(collect(server.url, is_finished, on_open=lambda: posted.update(
        client.post("/api/runs", {"workflow": steps_workflow(steps=4, delay=0.02)}).json)))
    assert messages[0]["type"] == "state" and messages[0]["data"] == {"queue": [], "running": None}
    types = [m["type"] if isinstance(m, dict) else "preview" for m in messages[1:]]
    assert types[:2] == ["queued", "started"]
    assert "preview" in types and "node_finished" in types
    run_id = posted["run_id"]
    assert all(m["data"]["run_id"] == run_id for m in messages[1:] if isinstance(m, dict))
    progress = [m["data"] for m in messages if isinstance(m, dict) and m["type"] == "progress"]
    assert progress[-1] == {"run_id": run_id, "node": "steps", "value": 4, "max": 4}
    finished_swatch = [m for m in messages if isinstance(m, dict) and m["type"] == "node_finished" and m["data"]["node"] == "swatch"]
    assert finished_swatch[0]["data"]["images"] == [{"kind": "output", "path": "swatch_00000.png"}]
    node, jpeg = next(m for m in messages if isinstance(m, tuple))
    assert node == "steps" and jpeg[:2] == b"\xff\xd8"
    # the run's record is final by the time "finished" arrives
    assert client.get(f"/api/runs/{run_id}").json["status"] == "succeeded"


def test_a_node_error_names_the_input_it_is_about(server):
    client = Client(server.url)
    workflow = chain(("lookup", {"type": "Lookup", "inputs": {"key": "three"}}))
    messages = asyncio.run(collect(server.url, is_finished, on_open=lambda: client.post("/api/runs", {"workflow": workflow})))
    error = next(m["data"] for m in messages if m["type"] == "node_error")
    assert (error["node"], error["type"], error["input"], error["code"]) == ("lookup", "Lookup", "key", "unknown_key")
    assert messages[-1]["data"]["status"] == "failed"


def test_progress_is_throttled_and_the_last_always_arrives(server):
    client = Client(server.url)
    messages = asyncio.run(collect(server.url, is_finished, on_open=lambda: client.post(
        "/api/runs", {"workflow": steps_workflow(steps=300, delay=0.001)})))
    progress = [m["data"] for m in messages if isinstance(m, dict) and m["type"] == "progress"]
    previews = [m for m in messages if isinstance(m, tuple)]
    assert progress[-1]["value"] == 300
    assert len(progress) < 60 and len(previews) < 60  # 300 events in well under 6 s
    order = [(m["type"], m["data"].get("node")) if isinstance(m, dict) else ("preview", m[0]) for m in messages]
    last_progress = max(i for i, m in enumerate(order) if m[0] in ("progress", "preview"))
    assert order.index(("node_finished", "steps")) > last_progress


def test_a_reconnecting_client_catches_up(server):
    client = Client(server.url)
    run_id = client.post("/api/runs", {"workflow": steps_workflow(steps=100, delay=0.03)}).json["run_id"]
    queued = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0)}).json["run_id"]
    deadline = time.monotonic() + 10
    while client.get(f"/api/runs/{run_id}").json["status"] != "running" or time.monotonic() < deadline - 9.7:
        time.sleep(0.05)
    messages = asyncio.run(collect(server.url, lambda m: isinstance(m, tuple) or (
        isinstance(m, dict) and m["type"] == "progress")))
    state = messages[0]
    assert state["type"] == "state"
    assert [entry["run_id"] for entry in state["data"]["queue"]] == [run_id, queued]
    running = state["data"]["running"]
    assert running["run_id"] == run_id and running["node"] == "steps"
    assert running["executed"] == ["number"] and running["progress"]["max"] == 100
    client.delete(f"/api/runs/{run_id}")
    client.wait_run(queued)


@pytest.mark.timeout(240)
def test_a_5000_node_run_reaches_a_client_that_reads_as_fast_as_it_can(server):
    client = Client(server.url)
    workflow = add_chain(5000)
    for kind in ("node_finished", "node_cached"):  # a first run, then one entirely from the cache
        posted = {}
        messages = asyncio.run(collect(server.url, is_finished, timeout=180, on_open=lambda: posted.update(
            client.post("/api/runs", {"workflow": workflow}).json)))
        assert messages[-1]["data"]["run_id"] == posted["run_id"] and messages[-1]["data"]["status"] == "succeeded"
        nodes = [m["data"]["node"] for m in messages if m["type"] == kind]
        assert len(nodes) == 5000 and set(nodes) == set(workflow["nodes"])
        assert [m["type"] for m in messages[:3]] == ["state", "queued", "started"]


def test_events_that_pile_up_go_out_in_batches_in_order():
    from gouache.web.hub import Client as HubClient

    class Socket:
        closed = False

    client = HubClient(Socket())
    for index in range(3):
        client.send(json.dumps({"type": "node_cached", "data": {"run_id": "r", "node": f"n{index}"}}))
    client.send(b"\x01\x00\x01xjpeg")
    client.send(json.dumps({"type": "finished", "data": {"run_id": "r", "status": "succeeded", "seconds": 0.0,
                                                         "executed": 0, "cached": 3}}))
    batch = json.loads(client.next_frame())
    check_message(batch)
    assert [m["data"]["node"] for m in unbatch(batch)] == ["n0", "n1", "n2"]
    assert client.next_frame() == b"\x01\x00\x01xjpeg"  # a preview is a frame of its own
    assert json.loads(client.next_frame())["type"] == "finished"  # one message alone is not wrapped
    assert not client.backlog and client.backlog_bytes == 0


def test_preview_frame_round_trip():
    frame = preview_frame("sampler é", b"\xff\xd8jpeg")
    assert frame[0] == 1 and int.from_bytes(frame[1:3], "big") == len("sampler é".encode())
    assert parse_preview_frame(frame) == ("sampler é", b"\xff\xd8jpeg")


def test_a_fully_cached_run_still_names_the_images_its_nodes_stand_for(server):
    client = Client(server.url)
    workflow = chain(("number", {"type": "Number", "inputs": {"value": 0.25}}),
                     ("swatch", {"type": "Swatch", "inputs": {"value": {"node": "number", "output": "value"}}}))
    first = client.post("/api/runs", {"workflow": workflow}).json["run_id"]
    client.wait_run(first)
    posted = {}
    messages = asyncio.run(collect(server.url, is_finished, on_open=lambda: posted.update(
        client.post("/api/runs", {"workflow": workflow}).json)))
    cached = {m["data"]["node"]: m["data"]["images"] for m in messages if isinstance(m, dict) and m["type"] == "node_cached"}
    assert set(cached) == {"number", "swatch"}
    assert cached["swatch"] == [{"kind": "output", "path": "swatch_00000.png"}] and cached["number"] == []
    record = client.get(f"/api/runs/{posted['run_id']}").json
    assert record["cached"] == ["number", "swatch"] and record["executed"] == []
    assert record["outputs"] == {"swatch": {"images": [{"kind": "output", "path": "swatch_00000.png"}]}}
