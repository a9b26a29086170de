"""The executor prunes, orders, runs, reports events, stops when asked and survives failures."""

from __future__ import annotations

import threading
from dataclasses import fields

import pytest
import toy_pack
from engine_helpers import chain
from pydantic import ValidationError

from gouache.engine import InputError, NodeError
from gouache.engine.events import RUN_EVENTS, EventBus, NodeErrorData, ProgressData


def wf(**nodes) -> dict:
    return {"format": "gouache/1", "nodes": nodes}


def link(node, output):
    return {"node": node, "output": output}


def test_runs_in_dependency_order_and_returns_named_outputs(engine):
    result = engine.run(chain(4))
    assert result.ok and result.error is None
    assert result.executed == ["n0", "n1", "n2", "n3", "out"]
    assert result.outputs["n3"] == {"sum": 4.0}
    assert toy_pack.Record.log == [4.0]
    assert set(result.timings) == set(result.executed)


def test_prunes_to_what_the_requested_outputs_need(engine):
    workflow = wf(a={"type": "Number", "inputs": {"value": 1}}, b={"type": "Number", "inputs": {"value": 2}},
                  s={"type": "Add", "inputs": {"a": link("a", "value")}},
                  unused={"type": "Add", "inputs": {"a": link("b", "value")}})
    assert engine.run(workflow, outputs=["s"]).executed == ["a", "s"]


def test_by_default_runs_output_nodes_or_else_every_sink(engine):
    with_output = wf(a={"type": "Number"}, b={"type": "Number"}, r={"type": "Record", "inputs": {"value": link("a", "value")}})
    assert sorted(engine.run(with_output).executed) == ["a", "r"]
    sinks = wf(a={"type": "Number", "inputs": {"value": 1}}, b={"type": "Number", "inputs": {"value": 2}})
    assert sorted(engine.run(sinks).executed) == ["a", "b"]


def test_events_arrive_in_order_with_only_their_own_data(engine):
    events = []
    engine.subscribe(events.append)
    workflow = wf(a={"type": "Number"}, s={"type": "Slow", "inputs": {"x": link("a", "value"), "steps": 3}})
    result = engine.run(workflow)
    kinds = [event.type for event in events]
    assert kinds == ["started", "node_started", "node_finished", "node_started", "progress", "progress",
                     "progress", "node_finished", "finished"]
    assert events[0].data["nodes"] == ["a", "s"]
    assert [e.data["value"] for e in events if e.type == "progress"] == [1, 2, 3]
    assert all(e.data["run_id"] == result.run_id for e in events)
    assert events[-1].data["status"] == "succeeded"
    events.clear()
    engine.run(workflow)
    assert [event.type for event in events] == ["started", "node_cached", "node_cached", "finished"]


def test_every_event_is_an_instance_of_its_model(engine):
    events = []
    engine.subscribe(events.append)
    engine.run(wf(a={"type": "Number"}, f={"type": "Fail", "inputs": {"x": link("a", "value")}}))
    assert [event.type for event in events] == ["started", "node_started", "node_finished", "node_started",
                                                "node_error", "finished"]
    for event in events:
        assert type(event.data) is RUN_EVENTS[event.type]
        assert event.data["run_id"] == event.data.run_id  # read by name too, as the JSON is


def test_a_misspelt_or_missing_event_field_fails_where_it_is_emitted():
    bus = EventBus()
    bus.subscribe(lambda event: None)
    with pytest.raises(ValidationError, match="maximum"):
        bus.emit(ProgressData, run_id="r", node="n", value=1, max=2, maximum=2)
    with pytest.raises(ValidationError, match="max"):
        bus.emit(ProgressData, run_id="r", node="n", value=1)
    with pytest.raises(KeyError):
        ProgressData(run_id="r", node="n", value=1, max=2)["maximum"]


def test_the_node_error_event_carries_every_field_of_a_node_error():
    assert list(NodeErrorData.model_fields) == ["run_id", *(field.name for field in fields(NodeError))]


def test_a_failing_subscriber_does_not_break_the_run(engine):
    def broken(event):
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    assert engine.run(chain(2)).ok


def test_a_failing_node_ends_the_run_with_a_node_error_and_the_engine_stays_usable(engine):
    events = []
    engine.subscribe(events.append)
    workflow = wf(a={"type": "Number"}, f={"type": "Fail", "inputs": {"x": link("a", "value")}},
                  r={"type": "Record", "inputs": {"value": link("f", "x")}})
    result = engine.run(workflow)
    assert result.status == "failed" and result.executed == ["a"]
    assert (result.error.node, result.error.type) == ("f", "Fail")
    assert "this node always fails" in result.error.message
    assert "Traceback" in result.error.traceback and "toy_pack.py" in result.error.traceback
    error_event = next(e for e in events if e.type == "node_error")
    assert error_event.data["node"] == "f" and error_event.data["message"] == result.error.message
    assert events[-1].type == "finished" and events[-1].data["status"] == "failed"
    assert engine.run(chain(2)).ok


def test_an_input_error_names_the_input_in_the_node_error_and_its_event(engine):
    class Positive(toy_pack.Number):
        """Refuses a value below zero, at run time."""

        type_name = "Positive"

        def run(self, ctx, value):
            if value < 0:
                raise InputError("value", "must not be negative; use 0 or more", "negative")
            return {"value": value}

    engine.registry.add_node(Positive, "test")
    events = []
    engine.subscribe(events.append)
    result = engine.run(wf(p={"type": "Positive", "inputs": {"value": -1}}))
    error = result.error
    assert (error.node, error.type, error.input, error.code) == ("p", "Positive", "value", "negative")
    assert error.message == "must not be negative; use 0 or more" and "InputError" in error.traceback
    (event,) = [e for e in events if e.type == "node_error"]
    assert event.data.model_dump() == {"run_id": result.run_id, **error.to_json()}
    plain = engine.run(wf(f={"type": "Fail"})).error
    assert (plain.input, plain.code) == (None, "node_failed")


def test_a_node_returning_the_wrong_outputs_is_a_node_error(engine):
    class Wrong(toy_pack.Number):
        """Returns an undeclared output."""

        type_name = "Wrong"

        def run(self, ctx, value):
            return {"nope": 1}

    engine.registry.add_node(Wrong, "test")
    result = engine.run(wf(w={"type": "Wrong"}))
    assert result.status == "failed" and "must return a dict with the outputs ['value']" in result.error.message


def test_interrupt_stops_between_steps_and_between_nodes(engine):
    events = []
    engine.subscribe(events.append)
    toy_pack.Slow.on_step = lambda step: engine.interrupt() if step == 2 else None
    workflow = wf(a={"type": "Number"}, s={"type": "Slow", "inputs": {"x": link("a", "value"), "steps": 100}},
                  r={"type": "Record", "inputs": {"value": link("s", "x")}})
    result = engine.run(workflow)
    assert result.status == "interrupted" and result.executed == ["a"]
    assert [e.data["value"] for e in events if e.type == "progress"] == [1, 2, 3]
    assert any(e.type == "interrupted" and e.data["node"] == "s" for e in events)
    assert toy_pack.Record.log == []
    toy_pack.Slow.on_step = None
    result = engine.run(workflow)  # the next run starts afresh
    assert result.ok and result.cached == ["a"]


def test_interrupt_from_another_thread(engine):
    started = threading.Event()
    release = threading.Event()

    def on_step(step):
        started.set()
        release.wait(5)

    toy_pack.Slow.on_step = on_step
    workflow = wf(s={"type": "Slow", "inputs": {"steps": 50}})
    results = []
    worker = threading.Thread(target=lambda: results.append(engine.run(workflow)))
    worker.start()
    assert started.wait(5)
    engine.interrupt()
    release.set()
    worker.join(5)
    assert results[0].status == "interrupted"
