"""Node modes (issue 16): a muted node and what only it feeds do not run; a bypassed node hands on its input
of the same type; both are saved in the file and honoured by validation, the executor and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import toy_pack

from gouache.engine import WorkflowInvalid
from gouache.engine.workflow import Workflow, parse


def wf(**nodes) -> dict:
    return {"format": "gouache/1", "nodes": nodes}


def link(node, output):
    return {"node": node, "output": output}


def number(value, **extra):
    return {"type": "Number", "inputs": {"value": value}, **extra}


def add(a=None, b=None, **extra):
    inputs = {name: value for name, value in (("a", a), ("b", b)) if value is not None}
    return {"type": "Add", "inputs": inputs, **extra}


def record(source, output):
    return {"type": "Record", "inputs": {"value": link(source, output)}}


def test_a_mode_is_saved_only_when_set_and_anything_else_is_refused():
    workflow = Workflow.model_validate(wf(n=number(1, mode="bypass"), m=number(2, mode="mute"), k=number(3)))
    saved = workflow.to_json()["nodes"]
    assert saved["n"]["mode"] == "bypass" and saved["m"]["mode"] == "mute" and "mode" not in saved["k"]
    _, problems = parse(wf(n=number(1, mode="never")))
    [problem] = problems
    assert (problem.node, problem.code) == ("n", "invalid_node") and "mode" in problem.message


def test_a_gouache_1_file_without_modes_reads_and_writes_as_before():
    shipped = Path(__file__).resolve().parents[2] / "workflows" / "text-to-image.json"
    raw = json.loads(shipped.read_text())
    assert Workflow.model_validate(raw).to_json()["nodes"] == raw["nodes"]


def test_a_bypassed_node_hands_on_its_input_of_the_same_type(engine):
    result = engine.run(wf(n=number(2), plus=add(link("n", "value"), 40, mode="bypass"), out=record("plus", "sum")))
    assert result.ok and toy_pack.Record.log == [2.0]
    assert result.executed == ["n", "out"]


def test_bypassed_nodes_in_a_row_are_passed_through(engine):
    valid = engine.validate(wf(n=number(2), p=add(link("n", "value"), 1, mode="bypass"),
                               q=add(link("p", "sum"), 1, mode="bypass"), out=record("q", "sum")))
    assert valid.nodes["out"].links == {"value": ("n", "value")}
    assert valid.silent == {"p": "bypassed", "q": "bypassed"} and valid.order == ["n", "out"]


def test_a_bypassed_node_keeps_the_cache_keys_of_the_graph_without_it(engine):
    without = wf(n=number(2), plus=add(link("n", "value"), 1), out=record("plus", "sum"))
    engine.run(without)
    with_bypassed = wf(n=number(2), scale={"type": "Scale", "inputs": {"x": link("n", "value"), "factor": 2.0},
                                           "mode": "bypass"},
                       plus=add(link("scale", "x"), 1), out=record("plus", "sum"))
    result = engine.run(with_bypassed)
    assert result.ok and result.cached == ["n", "plus", "out"] and result.executed == []


def test_a_bypassed_output_without_an_input_to_hand_on_is_a_problem_naming_node_and_output(engine):
    workflow = wf(blob={"type": "Blob", "inputs": {}}, size={"type": "BlobSize", "inputs": {"blob": link("blob", "blob")},
                                                          "mode": "bypass"},
                  out=record("size", "size"))
    with pytest.raises(WorkflowInvalid) as caught:
        engine.validate(workflow)
    [problem] = caught.value.problems
    assert (problem.node, problem.code) == ("size", "bypass_without_input")
    assert "'size' (BlobSize) is bypassed" in problem.message and "output 'size'" in problem.message
    assert "no input of type INT" in problem.message and "node 'out'" in problem.message


def test_the_input_a_bypassed_output_would_hand_on_must_be_connected(engine):
    # ComfyUI's rule: the input at the output's position (a) wins when its type matches, wired or not.
    _, problems = engine.check(wf(n=number(2), plus=add(None, link("n", "value"), mode="bypass"),
                                  out=record("plus", "sum")))
    [problem] = problems
    assert problem.code == "bypass_without_input" and "input 'a' (FLOAT)" in problem.message
    assert "not connected" in problem.message


def test_a_muted_node_and_what_only_it_feeds_do_not_run(engine):
    result = engine.run(wf(n=number(2), kept=record("n", "value"),
                           plus=add(link("n", "value"), 1, mode="mute"),
                           twice=add(link("plus", "sum"), link("plus", "sum")), gone=record("twice", "sum")))
    assert result.ok and result.executed == ["n", "kept"] and toy_pack.Record.log == [2.0]
    valid = engine.validate(wf(n=number(2), kept=record("n", "value"), plus=add(link("n", "value"), 1, mode="mute"),
                               twice=add(link("plus", "sum"), link("plus", "sum")), gone=record("twice", "sum")))
    assert valid.silent == {"plus": "muted", "twice": "skipped", "gone": "skipped"}


def test_a_muted_node_is_not_validated(engine):
    valid = engine.validate(wf(n=number(2), kept=record("n", "value"),
                               broken={"type": "NoSuchType", "inputs": {"x": 1}, "mode": "mute"},
                               bad=add("ten", link("broken", "x"), mode="mute")))
    assert valid.silent == {"broken": "muted", "bad": "muted"}


def test_a_node_that_needs_a_muted_nodes_output_and_a_running_one_is_a_problem(engine):
    _, problems = engine.check(wf(n=number(2), m=number(3, mode="mute"), plus=add(link("n", "value"), link("m", "value")),
                                  out=record("plus", "sum")))
    [problem] = problems
    assert (problem.node, problem.input, problem.code) == ("plus", "b", "muted_input")
    assert "node 'm', which is muted" in problem.message


def test_a_muted_node_behind_a_bypassed_one_silences_what_it_feeds(engine):
    valid = engine.validate(wf(n=number(2), kept=record("n", "value"), m=number(3, mode="mute"),
                               plus=add(link("m", "value"), 1, mode="bypass"), gone=record("plus", "sum")))
    assert valid.silent == {"m": "muted", "plus": "bypassed", "gone": "skipped"}


def test_muting_every_output_leaves_nothing_to_run(engine):
    _, problems = engine.check(wf(n=number(2), out={**record("n", "value"), "mode": "mute"}))
    [problem] = problems
    assert problem.code == "nothing_to_run" and "'out' (muted)" in problem.message


def test_asking_for_an_output_that_does_not_run_is_a_problem(engine):
    _, problems = engine.check(wf(n=number(2), kept=record("n", "value"), m=add(link("n", "value"), mode="mute"),
                                  gone=record("m", "sum")), outputs=["gone"])
    [problem] = problems
    assert (problem.node, problem.code) == ("gone", "silent_output_node") and "skipped" in problem.message
