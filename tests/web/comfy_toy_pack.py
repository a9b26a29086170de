"""A ComfyUI API-format importer for the web tests' toy nodes, registered under the name the built-in pack's
uses (``comfyui-api``): the ComfyUI routes are exercised on fast toy runs, through the same hook any pack uses.

Classes: ``ToyNumber`` (Number: value), ``ToySteps`` (Steps: x, steps, delay; one output),
``ToySwatch`` (Swatch: value, prefix; saves a PNG), ``ToyLookup`` (Lookup: key; fails on an unknown key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gouache.engine import Problem, WorkflowImporter, hookimpl


@dataclass(frozen=True)
class ToyClass:
    """How a toy ComfyUI class maps onto a toy node (the engine's ForeignNode)."""

    type: str
    widgets: tuple[str, ...]
    outputs: tuple[str, ...]
    renames: dict[str, str | None] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, dict[str, Any]]:
        return {}


CLASSES = {
    "ToyNumber": ToyClass("Number", ("value",), ("value",)),
    "ToySteps": ToyClass("Steps", ("x", "steps", "delay"), ("x",), renames={"count": "steps"}),
    "ToySwatch": ToyClass("Swatch", ("value", "prefix"), ()),
    "ToyLookup": ToyClass("Lookup", ("key",), ("value",)),
}


def recognise(raw: Any) -> bool:
    return isinstance(raw, dict) and bool(raw) and "format" not in raw and all(
        isinstance(entry, dict) and "class_type" in entry for entry in raw.values())


def convert(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
    nodes, problems = {}, []
    for node_id, entry in raw.items():
        spec = CLASSES.get(entry["class_type"])
        if spec is None:
            problems.append(Problem(node_id, None, "unmapped_node", f"node {node_id!r} is a {entry['class_type']!r}: "
                                    "no toy equivalent"))
            continue
        inputs = {}
        for name, value in (entry.get("inputs") or {}).items():
            ours = spec.renames.get(name, name)
            if isinstance(value, list) and len(value) == 2:
                source = CLASSES[raw[value[0]]["class_type"]]
                value = {"node": value[0], "output": source.outputs[value[1]]}
            inputs[ours] = value
        nodes[node_id] = {"type": spec.type, "inputs": inputs}
    return {"format": "gouache/1", "nodes": nodes}, problems


@hookimpl
def gouache_register_workflow_importers():
    return [WorkflowImporter("comfyui-api", recognise, convert, "toy ComfyUI API prompts", nodes=CLASSES)]
