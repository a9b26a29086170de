"""ComfyUI's two workflow formats read into one graph: the API format and the UI format.

The UI format's helpers are resolved here, so the converter sees only real nodes: reroutes are
followed, a ``PrimitiveNode``'s value becomes a literal on the inputs it feeds, and a subgraph instance
is replaced by its definition's nodes (ids ``INSTANCE:INNER``). A muted (mode 2, "Never") or bypassed
(mode 4) node that gouache has an equivalent for stays, with our ``mute`` / ``bypass`` mode
(``engine/modes.py`` applies ComfyUI's rules to it); one that has none is resolved here by the same
rules (a bypassed one passes its input of the same type through, a muted one feeds nothing), so a
switched-off custom node is no problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gouache.nodes.interop.comfy_nodes import COMFY_NODES, SEED_CONTROLS

MUTED, BYPASSED = 2, 4
MODES = {MUTED: "mute", BYPASSED: "bypass"}
"""ComfyUI's node modes and ours (``NodeEntry.mode``); mode 0 runs, and we have no counterpart of 1 (on event)."""
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20


@dataclass(frozen=True)
class Ref:
    """A link to output ``slot`` of node ``node``."""

    node: str
    slot: int


@dataclass(frozen=True)
class Literal:
    """A value that reaches an input through a UI helper (a ``PrimitiveNode``)."""

    value: Any


@dataclass
class ComfyNodeEntry:
    """One real ComfyUI node: its class, inputs (literals or :class:`Ref`) and what the editor needs."""

    id: str
    cls: str
    inputs: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)
    title: str | None = None
    pos: list[float] | None = None
    size: list[float] | None = None
    pack: str | None = None
    mode: str | None = None
    """``"mute"`` or ``"bypass"``; ``None`` for a node that runs."""


@dataclass
class ComfyGraph:
    """Real nodes, plus the helpers' outputs (``helpers[(id, slot)]``) that links pass through."""

    nodes: dict[str, ComfyNodeEntry] = field(default_factory=dict)
    helpers: dict[tuple[str, int], Any] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def resolve(self, value: Any) -> Any:
        """Follow a link through reroutes, primitives, bypassed nodes and subgraph borders.

        Returns a :class:`Ref` to a real node, a :class:`Literal`, or ``None`` (nothing feeds it).
        """
        seen = set()
        while isinstance(value, Ref) and (value.node, value.slot) in self.helpers:
            if (value.node, value.slot) in seen:
                return None
            seen.add((value.node, value.slot))
            value = self.helpers[(value.node, value.slot)]
        if isinstance(value, Ref) and value.node not in self.nodes:
            return None
        return value


def is_api_link(value: Any) -> bool:
    """``[node_id, output_index]``: how the API format writes a link."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def read_api(prompt: dict[str, Any]) -> ComfyGraph:
    """The API format: ``{id: {"class_type", "inputs", "_meta": {"title"}}}``."""
    graph = ComfyGraph()
    for node_id, entry in prompt.items():
        inputs = {name: Ref(str(value[0]), value[1]) if is_api_link(value) else value
                  for name, value in (entry.get("inputs") or {}).items()}
        title = (entry.get("_meta") or {}).get("title")
        graph.nodes[str(node_id)] = ComfyNodeEntry(str(node_id), str(entry.get("class_type")), inputs, title=title)
    return graph


def _links(raw_links: list[Any]) -> dict[int, tuple[Any, int, Any, int, Any]]:
    """Link id -> (origin node, origin slot, target node, target slot, type); lists or objects."""
    links = {}
    for link in raw_links or []:
        if isinstance(link, dict):
            links[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                                 link.get("type"))
        elif isinstance(link, list) and len(link) >= 5:
            links[link[0]] = (link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
    return links


def _pair(value: Any) -> list[float] | None:
    if isinstance(value, dict):  # old files write positions as {"0": x, "1": y}
        value = [value.get("0"), value.get("1")]
    return list(value[:2]) if isinstance(value, (list, tuple)) and len(value) >= 2 else None


def _widget_values(cls: str, values: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Positional ``widgets_values`` by name, and the "control after generate" value of each seed."""
    spec = COMFY_NODES.get(cls)
    if isinstance(values, dict):
        return dict(values), {}
    if spec is None or not isinstance(values, list):
        return {}, {}
    named, controls, position = {}, {}, 0
    for name in spec.widgets:
        if position >= len(values):
            break
        named[name] = values[position]
        position += 1
        if name in spec.seeds and position < len(values) and values[position] in SEED_CONTROLS:
            controls[name] = values[position]
            position += 1
    return named, controls


def read_ui(workflow: dict[str, Any]) -> ComfyGraph:
    """The UI format: ``nodes`` with positional ``widgets_values``, ``links``, ``groups``, subgraphs."""
    subgraphs = {sub.get("id"): sub for sub in (workflow.get("definitions") or {}).get("subgraphs") or []
                 if isinstance(sub, dict)}
    graph = ComfyGraph(groups=[{key: group[key] for key in ("title", "bounding", "color") if key in group}
                               for group in workflow.get("groups") or [] if isinstance(group, dict)])
    _read_level(graph, workflow, subgraphs, prefix="", outer=None, depth=0)
    return graph


def _read_level(graph: ComfyGraph, level: dict[str, Any], subgraphs: dict[Any, dict[str, Any]], prefix: str,
                outer: dict[int, Any] | None, depth: int) -> None:
    """Read one graph level; ``outer`` feeds a subgraph's input slots from its instance."""
    links = _links(level.get("links") or [])

    def ref(link_id: Any) -> Any:
        if link_id is None or link_id not in links:
            return None
        origin, slot = links[link_id][0], links[link_id][1]
        if origin == SUBGRAPH_INPUT:
            return (outer or {}).get(slot)
        return Ref(f"{prefix}{origin}", slot)

    for node in level.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        node_id, cls, mode = f"{prefix}{node.get('id')}", str(node.get("type")), node.get("mode", 0)
        inputs = [slot for slot in node.get("inputs") or [] if isinstance(slot, dict)]
        outputs = [slot for slot in node.get("outputs") or [] if isinstance(slot, dict)]
        if cls == "Reroute":
            graph.helpers[(node_id, 0)] = ref(inputs[0].get("link")) if inputs else None
        elif cls == "PrimitiveNode":
            values = node.get("widgets_values") or [None]
            graph.helpers[(node_id, 0)] = Literal(values[0])
        elif cls in ("Note", "MarkdownNote"):
            continue
        elif mode == MUTED and cls not in COMFY_NODES:
            for slot in range(len(outputs)):
                graph.helpers[(node_id, slot)] = None
        elif mode == BYPASSED and cls not in COMFY_NODES:
            for slot, output in enumerate(outputs):
                same = [i for i in inputs if i.get("type") == output.get("type") and i.get("link") is not None]
                graph.helpers[(node_id, slot)] = ref(same[0]["link"]) if same else None
        elif cls in subgraphs and depth < 8:
            sub = subgraphs[cls]
            feeds = {slot: ref(i.get("link")) for slot, i in enumerate(inputs)}
            inner = f"{node_id}:"
            _read_level(graph, sub, subgraphs, inner, feeds, depth + 1)
            for link in _links(sub.get("links") or []).values():
                if link[2] == SUBGRAPH_OUTPUT:
                    graph.helpers[(node_id, link[3])] = Ref(f"{inner}{link[0]}", link[1])
        else:
            named, controls = _widget_values(cls, node.get("widgets_values"))
            for slot in inputs:
                fed = ref(slot.get("link"))
                # A widget promoted to a subgraph input that nothing outside feeds keeps its own value.
                if fed is not None or slot.get("name") not in named:
                    named[slot.get("name")] = fed
            properties = node.get("properties") or {}
            pack = properties.get("cnr_id") or properties.get("aux_id")
            graph.nodes[node_id] = ComfyNodeEntry(node_id, cls, named, controls, node.get("title"),
                                                  _pair(node.get("pos")), _pair(node.get("size")), pack,
                                                  MODES.get(mode))
