"""Validation of a parsed workflow against a registry, reporting every problem at once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from gouache.engine.jsonio import cut, shorten
from gouache.engine.declaration import Node
from gouache.engine import modes as node_modes
from gouache.engine.problems import InputError, Problem
from gouache.engine.registry import Registry
from gouache.engine.values import check_value
from gouache.engine.workflow import Link, Workflow

if TYPE_CHECKING:  # imported where a graph is built: the server answers /api/nodes without it
    import networkx as nx

ChoiceProvider = Callable[[str], list[str]]


@dataclass(frozen=True)
class ValidNode:
    """A node whose type is known and whose inputs all check out."""

    id: str
    node_class: type[Node]
    literals: dict[str, Any]
    """Typed-in values (defaults filled in), by input name."""
    links: dict[str, tuple[str, str]]
    """Wired inputs: input name -> (source node id, source output name)."""


@dataclass
class ValidWorkflow:
    """A workflow that passed validation, with its dependency graph (edges source -> consumer)."""

    workflow: Workflow
    nodes: dict[str, ValidNode]
    graph: nx.DiGraph
    order: list[str] = field(default_factory=list)
    """Every node that runs, in a topological order."""
    silent: dict[str, str] = field(default_factory=dict)
    """The nodes that do not run: ``"muted"``, ``"bypassed"``, or ``"skipped"`` (fed only by muted nodes)."""


def _link_of(value: Any) -> Link | None:
    return value if isinstance(value, Link) else None


def validate(workflow: Workflow, registry: Registry,
             choices_for: ChoiceProvider | None = None) -> tuple[ValidWorkflow | None, list[Problem]]:
    """Check every node and input; return the valid workflow or ``None`` and every problem."""
    import networkx as nx

    modes = node_modes.resolve(workflow, registry)
    problems: list[Problem] = list(modes.problems)
    nodes: dict[str, ValidNode] = {}
    graph = nx.DiGraph()
    graph.add_nodes_from(modes.running)
    dynamic: dict[str, list[str]] = {}

    def choices(kind: str) -> list[str]:
        if kind not in dynamic:
            dynamic[kind] = choices_for(kind) if choices_for else []
        return dynamic[kind]

    for node_id, entry in workflow.nodes.items():
        if modes.silent.get(node_id) in ("muted", "skipped"):
            continue  # nothing of it runs: like ComfyUI, no problem of its own stops the others
        node_class = registry.get(entry.type)
        if node_class is None:
            problems.append(Problem(node_id, None, "unknown_node_type",
                                    f"node {shorten(node_id)}: unknown node type {shorten(entry.type)}; "
                                    f"{_did_you_mean(entry.type, registry.node_types())}"
                                    "check the spelling or install the pack that provides it "
                                    "(`gouache nodes` lists the known types)"))
            continue
        if node_id in modes.silent:
            continue  # bypassed: what it hands on was followed to its source above
        followed = modes.links[node_id]
        specs = {spec.name: spec for spec in node_class.inputs}
        for name in entry.inputs:
            if name not in specs:
                known = ", ".join(specs) or "none"
                problems.append(Problem(node_id, name, "unknown_input",
                                        f"node {shorten(node_id)} ({cut(entry.type)}): unknown input {shorten(name)}; "
                                        f"{_did_you_mean(name, list(specs))}its inputs are: {known}"))
        literals: dict[str, Any] = {}
        links: dict[str, tuple[str, str]] = {}
        for name, spec in specs.items():
            where = f"node {shorten(node_id)} ({cut(entry.type)}) input {shorten(name)}"
            if name not in entry.inputs:
                if spec.has_default:
                    literals[name] = spec.default
                else:
                    how = "connect a link" if not spec.accepts_literal else "set a value or connect a link"
                    problems.append(Problem(node_id, name, "missing_input",
                                            f"{where} is required: {how} ({spec.type})"))
                continue
            value = entry.inputs[name]
            link = _link_of(value)
            if link is not None:
                if name not in followed:
                    continue  # from a muted node: a muted_input problem already names it
                link = followed[name]
                problem = _check_link(workflow, registry, where, node_id, name, spec.type,
                                      spec.accepts_link, link)
                if problem is None:
                    links[name] = (link.node, link.output)
                    graph.add_edge(link.node, node_id)
                else:
                    problems.append(problem)
                continue
            if not spec.accepts_literal:
                problems.append(Problem(node_id, name, "literal_not_allowed",
                                        f"{where} takes a {spec.type} from a link, not a typed-in value; "
                                        f"connect the output of a node that makes a {spec.type}"))
                continue
            checked, problem = check_value(spec, value)
            if problem is None and spec.choices_from is not None and checked not in choices(spec.choices_from):
                found = ", ".join(map(shorten, choices(spec.choices_from)[:12])) or f"none found in {spec.choices_from}"
                hint = _did_you_mean(checked, choices(spec.choices_from)) if isinstance(checked, str) else ""
                problem_message = f"{shorten(checked)} is not one of the available {spec.choices_from}; {hint}found: {found}"
                problems.append(Problem(node_id, name, "not_a_choice", f"{where}: {problem_message}"))
                continue
            if problem is not None:
                problems.append(Problem(node_id, name, problem.code, f"{where}: {problem.message}"))
                continue
            literals[name] = checked
        if not any(problem.node == node_id for problem in problems):
            problems.extend(_cross_input_problems(node_id, entry.type, node_class, literals, links, choices))
        nodes[node_id] = ValidNode(node_id, node_class, literals, links)

    order: list[str] = []
    try:
        order = list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        problems.extend(_cycle_problems(graph, workflow))
    problems.extend(_nothing_to_run(workflow, registry, modes))
    if problems or len(nodes) != len(modes.running):
        return None, problems
    return ValidWorkflow(workflow, nodes, graph, order, modes.silent), problems


def _nothing_to_run(workflow: Workflow, registry: Registry, modes: node_modes.Modes) -> list[Problem]:
    """A problem when the workflow has output nodes and none of them runs (ComfyUI: "no outputs")."""
    outputs = [node_id for node_id, entry in workflow.nodes.items()
               if (node_class := registry.get(entry.type)) is not None and node_class.output_node]
    if not outputs or any(node_id not in modes.silent for node_id in outputs):
        return []
    listed = ", ".join(f"{shorten(node_id)} ({modes.silent[node_id]})" for node_id in outputs[:8])
    return [Problem(None, None, "nothing_to_run",
                    f"no output node runs: {listed}; un-mute or un-bypass one of them, or what it is fed by")]


def _did_you_mean(word: str, known: list[str]) -> str:
    """``did you mean 'X'? `` for the closest of ``known`` to ``word``, or nothing."""
    import difflib  # only when suggesting a name: it is not needed to start

    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if len(word) <= 200 else []
    return f"did you mean {close[0]!r}? " if close else ""


@lru_cache(maxsize=4096)
def _check_takes_choices(node_class: type[Node]) -> bool:
    """Whether the node's ``check`` also takes the model-name lookup: ``check(self, values, choices)``."""
    try:
        return len(inspect.signature(node_class.check).parameters) >= 3
    except (TypeError, ValueError):
        return False


def _cross_input_problems(node_id: str, type_name: str, node_class: type[Node], literals: dict[str, Any],
                          links: dict[str, tuple[str, str]], choices: ChoiceProvider) -> list[Problem]:
    """The node's own ``check`` of its typed-in values taken together, as problems."""
    values = {name: value for name, value in literals.items() if name not in links}
    try:
        node = node_class()
        found = list((node.check(values, choices) if _check_takes_choices(node_class) else node.check(values)) or [])
    except Exception as error:  # a bug in the pack's check must not hide the other problems
        return [Problem(node_id, None, "check_failed",
                        f"node {shorten(node_id)} ({cut(type_name)}): its check() failed: {type(error).__name__}: "
                        f"{cut(str(error))}")]
    problems = []
    for error in found:
        if not isinstance(error, InputError):
            problems.append(Problem(node_id, None, "check_failed",
                                    f"node {shorten(node_id)} ({cut(type_name)}): check() returned {shorten(error)}, not an InputError"))
            continue
        problems.append(Problem(node_id, error.input, error.code,
                                f"node {shorten(node_id)} ({cut(type_name)}) input {shorten(error.input)}: {error.message}"))
    return problems


@lru_cache(maxsize=4096)
def output_types(node_class: type[Node]) -> dict[str, str]:
    """A node class's outputs as name -> socket type (classes are immutable once registered)."""
    return {output.name: output.type for output in node_class.outputs}


def _check_link(workflow: Workflow, registry: Registry, where: str, node_id: str, name: str,
                input_type: str, accepts_link: bool, link: Link) -> Problem | None:
    if not accepts_link:
        return Problem(node_id, name, "link_not_allowed", f"{where} takes a typed-in value, not a link")
    source = workflow.nodes.get(link.node)
    if source is None:
        return Problem(node_id, name, "missing_node",
                       f"{where} links to node {shorten(link.node)}, which is not in the workflow")
    source_class = registry.get(source.type)
    if source_class is None:
        return None  # the source's own unknown_node_type problem says what is wrong; one problem, not two
    outputs = output_types(source_class)
    if link.output not in outputs:
        known = ", ".join(outputs) or "none"
        return Problem(node_id, name, "missing_output",
                       f"{where} links to output {shorten(link.output)} of {shorten(link.node)} ({cut(source.type)}), "
                       f"which has no such output; its outputs are: {known}")
    if not registry.types.compatible(outputs[link.output], input_type):
        return Problem(node_id, name, "type_mismatch",
                       f"{where} expects {input_type} but {shorten(link.node)}.{link.output} is "
                       f"{outputs[link.output]}; connect an output of type {input_type}")
    return None


def _cycle_problems(graph: nx.DiGraph, workflow: Workflow) -> Iterable[Problem]:
    """One problem per cycle-carrying component, naming the nodes on a cycle in it (linear time)."""
    import networkx as nx

    for component in nx.strongly_connected_components(graph):
        if len(component) == 1:
            (only,) = component
            if not graph.has_edge(only, only):
                continue
        cycle_edges = nx.find_cycle(graph.subgraph(component))
        on_cycle = [edge[0] for edge in cycle_edges]
        first, second = cycle_edges[-1][0], cycle_edges[-1][1]
        entry = workflow.nodes[second]
        input_name = next((name for name, value in entry.inputs.items()
                           if isinstance(value, Link) and value.node == first), None)
        path = " -> ".join(on_cycle + [on_cycle[0]])
        yield Problem(second, input_name, "cycle",
                      f"node {shorten(second)} input {shorten(input_name)} closes a cycle: {path}; "
                      "a workflow must not feed a node's output back into itself")
