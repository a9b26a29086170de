"""Node modes: which nodes of a workflow run, and where each link of a running node really comes from.

A node's ``mode`` (``engine/workflow.py``) is absent for a node that runs, ``"mute"`` or ``"bypass"``.
The rules follow ComfyUI's (its "Never" and "Bypass" modes):

- A **muted** node does not run and makes nothing. A node whose every link comes from muted nodes
  (or from nodes silenced this way) does not run either: muting a node silences the branch only it
  feeds. A node that also has a link from a running node is a ``muted_input`` problem naming the
  input and the muted node: it could not run without that value.
- A **bypassed** node does not run; each of its outputs hands on what is wired into one of its inputs
  of the same socket type: the input at the output's position if it has that type, else the first
  input of that type (ComfyUI's rule). A consumer is wired straight to that source, so the cache keys
  downstream are those of the graph without the node. An output that is used but has no such input,
  or whose input is not connected, is a ``bypass_without_input`` problem naming the node and output.

Muted nodes are not validated (they do not run, as in ComfyUI); a bypassed node's type must be known,
since its inputs decide what it hands on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gouache.engine.jsonio import cut, shorten
from gouache.engine.problems import Problem
from gouache.engine.registry import Registry
from gouache.engine.workflow import MUTE, BYPASS, Link, Workflow


@dataclass(frozen=True)
class Gap:
    """A used output of a bypassed node that has nothing to hand on."""

    node: str
    output: str
    reason: str


@dataclass
class Modes:
    """What the modes do to one workflow."""

    running: list[str] = field(default_factory=list)
    """The nodes that run, in the file's order."""
    silent: dict[str, str] = field(default_factory=dict)
    """Every node that does not run: ``"muted"``, ``"bypassed"`` or ``"skipped"`` (fed only by muted nodes)."""
    links: dict[str, dict[str, Link]] = field(default_factory=dict)
    """Each running node's links, followed through bypassed nodes to the node that makes the value."""
    problems: list[Problem] = field(default_factory=list)


def resolve(workflow: Workflow, registry: Registry) -> Modes:
    """Apply the node modes of ``workflow``: see the module's docstring for the rules."""
    modes = Modes()
    entries = workflow.nodes
    followed: dict[str, dict[str, Link | Gap]] = {}
    for node_id, entry in entries.items():
        if entry.mode == MUTE:
            modes.silent[node_id] = "muted"
        elif entry.mode == BYPASS:
            modes.silent[node_id] = "bypassed"
        else:
            followed[node_id] = {name: _follow(workflow, registry, value)
                                 for name, value in entry.inputs.items() if isinstance(value, Link)}

    muted_root: dict[str, str] = {node_id: node_id for node_id, why in modes.silent.items() if why == "muted"}
    changed = True
    while changed:  # silence what only silent nodes feed, until nothing changes (a chain of n takes n rounds)
        changed = False
        for node_id, links in followed.items():
            if node_id in muted_root or not links:
                continue
            sources = [link.node for link in links.values() if isinstance(link, Link)]
            if len(sources) == len(links) and all(source in muted_root for source in sources):
                muted_root[node_id] = muted_root[sources[0]]
                modes.silent[node_id] = "skipped"
                changed = True

    reported: set[tuple[str, str]] = set()
    for node_id, links in followed.items():
        if node_id in modes.silent:
            continue
        modes.running.append(node_id)
        kept: dict[str, Link] = {}
        for name, link in links.items():
            where = f"node {shorten(node_id)} ({cut(entries[node_id].type)}) input {shorten(name)}"
            if isinstance(link, Gap):
                if (link.node, link.output) not in reported:
                    reported.add((link.node, link.output))
                    modes.problems.append(Problem(
                        link.node, None, "bypass_without_input",
                        f"node {shorten(link.node)} ({cut(entries[link.node].type)}) is bypassed, but its output "
                        f"{shorten(link.output)}, which {where} uses, has nothing to hand on: {link.reason}; "
                        "un-bypass the node, or mute it and what it feeds"))
            elif link.node in muted_root:
                root = muted_root[link.node]
                why = "is muted" if root == link.node else f"does not run: it is fed only by muted node {shorten(root)}"
                modes.problems.append(Problem(
                    node_id, name, "muted_input",
                    f"{where} comes from node {shorten(link.node)}, which {why}; un-mute it, bypass it instead "
                    f"(to hand its input on), or mute node {shorten(node_id)} too"))
            else:
                kept[name] = link
        modes.links[node_id] = kept
    return modes


def _follow(workflow: Workflow, registry: Registry, link: Link) -> Link | Gap:
    """Where a link's value comes from once bypassed nodes are passed through.

    A bypassed node whose type is unknown, or that lacks the output, is left in place: validation
    reports those problems on the node and the link.
    """
    seen: set[str] = set()
    while True:
        entry = workflow.nodes.get(link.node)
        if entry is None or entry.mode != BYPASS:
            return link
        node_class = registry.get(entry.type)
        outputs = [(output.name, output.type) for output in node_class.outputs] if node_class else []
        names = [name for name, _ in outputs]
        if node_class is None or link.output not in names:
            return link
        if link.node in seen:
            return Gap(link.node, link.output, "its inputs loop back through other bypassed nodes")
        seen.add(link.node)
        position = names.index(link.output)
        wanted = outputs[position][1]
        specs = list(node_class.inputs)
        same = [spec for spec in specs if spec.type == wanted]
        if position < len(specs) and specs[position].type == wanted:
            same.insert(0, specs[position])
        if not same:
            return Gap(link.node, link.output, f"it has no input of type {wanted}")
        value = entry.inputs.get(same[0].name)
        if not isinstance(value, Link):
            return Gap(link.node, link.output,
                       f"its input {shorten(same[0].name)} ({wanted}), which it would hand on, is not "
                       "connected: connect it")
        link = value
