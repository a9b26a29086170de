"""Property-based tests: random graphs run in dependency order; random damage never crashes."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toy_pack
from gouache.engine import Engine, Input, Node, Output

ORDER: list[str] = []


class Visit(Node):
    """Record the order of visits; up to three optional inputs."""

    type_name = "Visit"
    inputs = [Input(name, "FLOAT", optional=True) for name in ("a", "b", "c")] + [Input("tag", "STRING", default="")]
    outputs = [Output("out", "FLOAT")]

    def run(self, ctx, a, b, c, tag):
        ORDER.append(tag)
        return {"out": 1.0 + sum(v for v in (a, b, c) if v is not None)}


class VisitPack:
    from gouache.engine import hookimpl

    @hookimpl
    def gouache_register_nodes(self):
        return [Visit]


@st.composite
def dags(draw):
    size = draw(st.integers(1, 30))
    nodes = {}
    for index in range(size):
        inputs = {"tag": f"v{index}"}
        if index:
            parents = draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True))
            for slot, parent in zip("abc", parents):
                inputs[slot] = {"node": f"v{parent}", "output": "out"}
        nodes[f"v{index}"] = {"type": "Visit", "inputs": inputs}
    ids = list(nodes)
    shuffled = draw(st.permutations(ids))
    return {"format": "gouache/1", "nodes": {node_id: nodes[node_id] for node_id in shuffled}}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflow=dags())
def test_random_dags_run_every_node_after_all_of_its_inputs(tmp_path, workflow):
    engine = Engine(packs={"visit": VisitPack()}, entry_points=False, home=tmp_path)
    ORDER.clear()
    result = engine.run(workflow)
    assert result.ok
    position = {tag: i for i, tag in enumerate(ORDER)}
    needed = set(result.executed)
    for node_id in needed:
        for value in workflow["nodes"][node_id]["inputs"].values():
            if isinstance(value, dict):
                assert value["node"] in needed
                assert position[value["node"]] < position[node_id]
    assert sorted(ORDER) == sorted(needed)


BASE = {"format": "gouache/1", "nodes": {
    "a": {"type": "Number", "inputs": {"value": 1}},
    "b": {"type": "Int", "inputs": {"value": 2}},
    "s": {"type": "Add", "inputs": {"a": {"node": "a", "output": "value"}, "b": {"node": "b", "output": "value"}}},
    "x": {"type": "Scale", "inputs": {"x": {"node": "s", "output": "sum"}, "factor": 2.0}},
    "r": {"type": "Record", "inputs": {"value": {"node": "x", "output": "x"}}},
}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
words = st.sampled_from(["a", "b", "s", "x", "r", "value", "sum", "out", "node", "output", "inputs", "type",
                         "nodes", "format", "Add", "Nope", "zz"])


@st.composite
def mutations(draw):
    workflow = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        if not isinstance(workflow.get("nodes"), dict):
            break
        kind = draw(st.integers(0, 6))
        node_id = draw(st.sampled_from(sorted(workflow["nodes"]))) if workflow["nodes"] else "a"
        node = workflow["nodes"].get(node_id)
        node = node if isinstance(node, dict) else None
        if kind == 0 and node is not None:
            node["type"] = draw(words)
        elif kind == 1 and node is not None and isinstance(node.get("inputs"), dict):
            node["inputs"][draw(words)] = draw(json_values)
        elif kind == 2 and node is not None and isinstance(node.get("inputs"), dict):
            node["inputs"][draw(words)] = {"node": draw(words), "output": draw(words)}
        elif kind == 3:
            workflow["nodes"].pop(node_id, None)
        elif kind == 4 and node is not None:
            node[draw(words)] = draw(json_values)
        elif kind == 5:
            workflow[draw(st.sampled_from(["format", "nodes", "layout", "meta", "extra"]))] = draw(json_values)
        elif kind == 6:
            workflow["nodes"][node_id] = draw(json_values)
    return workflow


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflow=mutations())
def test_random_mutations_give_structured_problems_never_a_crash(tmp_path, workflow):
    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path)
    valid, problems = engine.check(workflow)
    if valid is None:
        assert problems
        for problem in problems:
            assert problem.code and problem.message
            json.dumps(problem.to_json())
            if problem.node is not None:
                assert repr(problem.node) in problem.message or problem.code == "unknown_node"
    else:
        result = engine.run(valid)
        assert result.status in ("succeeded", "failed")
