"""Validation reports every problem at once, each naming the node, the input, a code and a fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gouache.engine import WorkflowInvalid
from gouache.engine.workflow import json_schema

LINK = {"node": "a", "output": "value"}


def wf(**nodes) -> dict:
    return {"format": "gouache/1", "nodes": nodes}


def only_problem(engine, workflow, **kwargs):
    valid, problems = engine.check(workflow, **kwargs)
    assert valid is None
    assert len(problems) == 1, problems
    return problems[0]


CASES = [
    # (code, node, input, workflow, text the message must contain)
    ("unknown_node_type", "x", None, wf(x={"type": "Nope"}), "unknown node type 'Nope'"),
    ("unknown_input", "s", "zz", wf(a={"type": "Number"}, s={"type": "Add", "inputs": {"zz": 1}}), "unknown input 'zz'"),
    ("missing_input", "s", "x", wf(s={"type": "Scale"}), "input 'x' is required: connect a link"),
    ("missing_node", "s", "a", wf(s={"type": "Add", "inputs": {"a": {"node": "ghost", "output": "value"}}}), "'ghost', which is not in the workflow"),
    ("missing_output", "s", "a", wf(a={"type": "Number"}, s={"type": "Add", "inputs": {"a": {"node": "a", "output": "nope"}}}), "has no such output; its outputs are: value"),
    ("type_mismatch", "s", "x", wf(b={"type": "Blob"}, s={"type": "Scale", "inputs": {"x": {"node": "b", "output": "blob"}}}), "expects FLOAT but 'b'.blob is BLOB"),
    ("wrong_value_type", "a", "value", wf(a={"type": "Number", "inputs": {"value": "ten"}}), "expects a number, got 'ten'"),
    ("wrong_value_type", "i", "value", wf(i={"type": "Int", "inputs": {"value": 1.5}}), "expects a whole number"),
    ("out_of_range", "i", "value", wf(i={"type": "Int", "inputs": {"value": 5000}}), "above the maximum 1000"),
    ("out_of_range", "i", "value", wf(i={"type": "Int", "inputs": {"value": -5000}}), "below the minimum -1000"),
    ("not_a_choice", "s", "factor", wf(a={"type": "Number"}, s={"type": "Scale", "inputs": {"x": LINK, "factor": 3.0}}), "3.0 is not one of the choices"),
    ("literal_not_allowed", "s", "x", wf(s={"type": "Scale", "inputs": {"x": 2.0}}), "takes a FLOAT from a link"),
    ("cycle", "p", "a", wf(p={"type": "Add", "inputs": {"a": {"node": "q", "output": "sum"}}}, q={"type": "Add", "inputs": {"a": {"node": "p", "output": "sum"}}}), "closes a cycle"),
    ("invalid_node", "x", None, wf(x={"type": "Number", "colour": "red"}), "node 'x'"),
    ("not_a_multiple", "s", "stop", wf(s={"type": "Span", "inputs": {"stop": 130}}), "130 is not a multiple of 8"),
    ("below_start", "s", "stop", wf(s={"type": "Span", "inputs": {"start": 20, "stop": 16}}), "input 'stop': must not be below start (20)"),
]


@pytest.mark.parametrize("code, node, input_name, workflow, text", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_error_code_names_its_node_and_input(engine, code, node, input_name, workflow, text):
    problem = only_problem(engine, workflow)
    assert (problem.code, problem.node, problem.input) == (code, node, input_name)
    assert text in problem.message
    assert repr(node) in problem.message
    if input_name:
        assert repr(input_name) in problem.message


def test_cross_input_checks_report_every_problem_and_see_only_typed_in_values(engine):
    valid, problems = engine.check(wf(s={"type": "Span", "inputs": {"start": 20, "stop": 16, "unit": 0}}))
    assert valid is None
    assert {(p.node, p.input, p.code) for p in problems} == {("s", "stop", "below_start"), ("s", "unit", "zero")}
    # A linked start is not known before the run: the check does not guess it.
    linked = wf(i={"type": "Int", "inputs": {"value": 20}},
                s={"type": "Span", "inputs": {"start": {"node": "i", "output": "value"}, "stop": 16}})
    valid, problems = engine.check(linked)
    assert valid is not None and problems == []


def test_a_failing_check_is_a_problem_not_a_crash(engine, monkeypatch):
    monkeypatch.setattr(engine.registry.get("Span"), "check", lambda self, values: 1 / 0)
    problem = only_problem(engine, wf(s={"type": "Span"}))
    assert (problem.node, problem.code) == ("s", "check_failed") and "ZeroDivisionError" in problem.message


def test_integer_bounds_are_exact_even_past_float_precision():
    from gouache.engine import Input
    from gouache.engine.values import check_value

    seed = Input("seed", "INT", min=0, max=2**64 - 1)
    assert check_value(seed, 2**64 - 1)[1] is None
    assert check_value(seed, 2**64)[1].message == "18446744073709551616 is above the maximum 18446744073709551615"


def test_a_run_time_input_error_names_the_input(engine):
    linked = wf(i={"type": "Int", "inputs": {"value": 0}},
                s={"type": "Span", "inputs": {"unit": {"node": "i", "output": "value"}}})
    result = engine.run(linked, outputs=["s"])
    assert result.status == "failed"
    assert (result.error.node, result.error.input, result.error.code) == ("s", "unit", "zero")
    assert result.error.message == "must not be 0: a span is counted in units"


def test_a_cycle_names_every_node_on_it(engine):
    workflow = wf(
        p={"type": "Add", "inputs": {"a": {"node": "r", "output": "sum"}}},
        q={"type": "Add", "inputs": {"a": {"node": "p", "output": "sum"}}},
        r={"type": "Add", "inputs": {"a": {"node": "q", "output": "sum"}}},
        ok={"type": "Number"},
    )
    problem = only_problem(engine, workflow)
    assert problem.code == "cycle"
    for name in ("p", "q", "r"):
        assert f"{name} ->" in problem.message or f"-> {name}" in problem.message
    assert "ok" not in problem.message


def test_self_loop_is_a_cycle(engine):
    problem = only_problem(engine, wf(p={"type": "Add", "inputs": {"a": {"node": "p", "output": "sum"}}}))
    assert problem.code == "cycle" and problem.input == "a"


@pytest.mark.parametrize("fmt", ["gouache/9", None, 1])
def test_unknown_format_is_refused_clearly(engine, fmt):
    raw = {"nodes": {}} if fmt is None else {"format": fmt, "nodes": {}}
    problem = only_problem(engine, raw)
    assert problem.code == "unknown_format" and "gouache/1" in problem.message


def test_every_problem_is_reported_at_once(engine):
    workflow = wf(
        x={"type": "Nope"},
        s={"type": "Add", "inputs": {"a": {"node": "ghost", "output": "v"}, "zz": 1, "b": "text"}},
        i={"type": "Int", "inputs": {"value": 10_000}},
    )
    valid, problems = engine.check(workflow)
    assert valid is None
    assert sorted(p.code for p in problems) == sorted(
        ["unknown_node_type", "missing_node", "unknown_input", "wrong_value_type", "out_of_range"])
    with pytest.raises(WorkflowInvalid) as caught:
        engine.validate(workflow)
    assert len(caught.value.problems) == 5


def test_int_feeds_float_and_int_literals_widen(engine):
    workflow = wf(i={"type": "Int", "inputs": {"value": 3}}, s={"type": "Add", "inputs": {"a": {"node": "i", "output": "value"}, "b": 2}})
    result = engine.run(workflow, outputs=["s"])
    assert result.ok and result.outputs["s"]["sum"] == 5.0


def test_defaults_fill_unset_inputs_and_optional_inputs_get_none(engine):
    valid = engine.validate(wf(s={"type": "Sum"}, a={"type": "Add"}))
    assert valid.nodes["a"].literals == {"a": 0.0, "b": 0.0}
    assert valid.nodes["s"].literals == {"a": None, "b": None, "c": None, "d": None}


def test_overrides_set_inputs_and_unknown_targets_are_problems(engine):
    workflow = wf(a={"type": "Number", "inputs": {"value": 1}})
    assert engine.run(workflow, overrides={"a.value": 7}).outputs["a"]["value"] == 7.0
    valid, problems = engine.check(workflow, overrides={"ghost.value": 1, "nodot": 2})
    assert valid is None and {p.code for p in problems} == {"unknown_node", "invalid_override"}


def test_not_a_dict_and_bad_nodes_give_problems(engine):
    assert only_problem(engine, ["not", "a", "workflow"]).code == "invalid_workflow"
    assert only_problem(engine, {"format": "gouache/1", "nodes": []}).code == "invalid_workflow"
    problem = only_problem(engine, wf(x={"inputs": {}}))
    assert problem.code == "invalid_node" and problem.node == "x"


def test_unknown_output_node_requested(engine):
    valid, problems = engine.check(wf(a={"type": "Number"}), outputs=["nope"])
    assert valid is None and problems[0].code == "unknown_output_node" and problems[0].node == "nope"


def test_the_published_json_schema_is_current():
    published = json.loads((Path(__file__).parents[2] / "docs" / "workflow.schema.json").read_text())
    assert published == json_schema()


def test_shipped_workflows_match_the_schema_structure():
    from gouache.engine.workflow import parse

    for path in (Path(__file__).parents[2] / "workflows").glob("*.json"):
        workflow, problems = parse(json.loads(path.read_text()))
        assert workflow is not None and not problems, (path, problems)


def test_a_linked_value_is_held_to_the_rules_of_the_input_it_feeds(engine):
    workflow = wf(i={"type": "Int", "inputs": {"value": 13}},
                  s={"type": "Span", "inputs": {"stop": {"node": "i", "output": "value"}}})
    result = engine.run(workflow, outputs=["s"])
    assert result.status == "failed"
    assert (result.error.node, result.error.input, result.error.code) == ("s", "stop", "not_a_multiple")
    assert result.error.message == "the value it was linked to 13 is not a multiple of 8"
    workflow["nodes"]["i"]["inputs"]["value"] = 16
    assert engine.run(workflow, outputs=["s"]).outputs["s"]["length"] == 16
