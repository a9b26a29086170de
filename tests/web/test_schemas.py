"""The API's models are the engine's where they can be, cover every route and event, and the checks
the other web tests rely on (every body and websocket message against its model) really check."""

from __future__ import annotations

import time
from dataclasses import fields

import pytest
from web_support import Client, MessageCheck, Reply, check_message, check_reply, steps_workflow

from gouache.engine import Event, NodeError
from gouache.engine.events import RUN_EVENTS, EventData
from gouache.web.background import BackgroundServer
from gouache.web.schemas import EVENTS, ROUTES, RunError
from gouache.web.server import create_app

JSON = {"Content-Type": "application/json; charset=utf-8"}


def reply(status: int, body: str) -> Reply:
    return Reply(status, JSON, body.encode())


def test_every_api_route_answering_json_has_a_response_model(engine):
    served = {f"{route.method} {route.resource.canonical}" for route in create_app(engine).router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/api/")
              and route.method != "HEAD"}
    binary = {"GET /api/files/{kind}/{path}", "GET /api/workflows/{name}/thumbnail"}
    assert served - binary == set(ROUTES)


def test_websocket_messages_are_the_engine_events_and_the_server_own():
    assert {name: model for name, model in EVENTS.items() if name in RUN_EVENTS} == {
        name: model for name, model in RUN_EVENTS.items() if name != "preview"}  # previews are binary frames
    assert set(EVENTS) - set(RUN_EVENTS) == {"state", "cancelled", "batch"}


def test_a_run_error_is_a_node_error_or_says_why_the_run_stopped_outside_any_node():
    assert list(RunError.model_fields) == [field.name for field in fields(NodeError)] + ["problems"]


def test_a_body_with_a_field_the_model_lacks_or_missing_one_it_requires_fails():
    check_reply("POST", "/api/runs", reply(202, '{"run_id": "a", "position": 0}'))
    with pytest.raises(AssertionError, match="RunQueued"):
        check_reply("POST", "/api/runs", reply(202, '{"run_id": "a", "position": 0, "eta": 3}'))
    with pytest.raises(AssertionError, match="RunQueued"):
        check_reply("POST", "/api/runs", reply(202, '{"run_id": "a"}'))
    with pytest.raises(AssertionError, match="ErrorBody"):
        check_reply("GET", "/api/runs/x", reply(404, '{"message": "no run"}'))
    with pytest.raises(AssertionError, match="no response model"):
        check_reply("GET", "/api/runs/x", reply(203, "{}"))


def test_a_message_with_a_field_the_model_lacks_or_an_unknown_type_fails():
    check_message({"type": "node_cached", "data": {"run_id": "r", "node": "n"}})
    with pytest.raises(AssertionError, match="NodeCachedData"):
        check_message({"type": "node_cached", "data": {"run_id": "r", "node": "n", "seconds": 1}})
    with pytest.raises(AssertionError, match="no model"):
        check_message({"type": "node_skipped", "data": {"run_id": "r", "node": "n"}})


class Unknown(EventData):
    """An event no model in the API describes."""

    event_type = "unknown"


def test_the_websocket_check_sees_every_message_and_fails_on_a_bad_one(engine):
    with BackgroundServer(engine) as server:  # not the fixture: its own check would fail too
        client = Client(server.url)
        with MessageCheck(server.url) as check:
            client.wait_run(client.post("/api/runs", {"workflow": steps_workflow(steps=3, delay=0)}).json["run_id"])
            deadline = time.monotonic() + 10
            while check.seen < 9 and time.monotonic() < deadline:  # state, queued, started, 2 per node, finished
                time.sleep(0.02)
        assert check.seen >= 9
        bad = MessageCheck(server.url)
        with pytest.raises(AssertionError, match="no model"):
            with bad:
                server.state.hub.publish(Event(Unknown(run_id="r")))
                while not bad.failures:
                    time.sleep(0.02)
