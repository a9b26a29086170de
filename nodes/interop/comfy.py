"""ComfyUI workflows (API and UI formats, JSON files and PNG chunks) converted to ``gouache/1``."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from gouache.engine import PngChunks, Problem, WorkflowImporter
from gouache.nodes.interop.comfy_graph import ComfyGraph, ComfyNodeEntry, Literal, Ref, read_api, read_ui
from gouache.nodes.interop.comfy_nodes import COMFY_NODES, VALUE_MAPS, VALUE_MAPS_BY_TYPE

BUILTIN_CHECKPOINT = "gouache-tiny"
CORE = "comfy-core"


def _checkpoint_name(name: Any) -> Any:
    """ComfyUI names files with their extension; our embedded checkpoint is named without one."""
    if isinstance(name, str) and PurePath(name.replace("\\", "/")).stem == BUILTIN_CHECKPOINT:
        return BUILTIN_CHECKPOINT
    return name


def _unmapped(node: ComfyNodeEntry) -> Problem:
    if node.pack is None:  # the API format never says; the UI format says for nodes saved since 2025
        pack = "ComfyUI's core or a custom node pack (the workflow does not say which)"
    else:
        pack = "ComfyUI's core nodes" if node.pack == CORE else f"the ComfyUI pack {node.pack!r}"
    title = f" titled {node.title!r}" if node.title and node.title != node.cls else ""
    return Problem(node.id, None, "unmapped_node",
                   f"node {node.id!r}{title} is a {node.cls!r} from {pack}: gouache has no equivalent; "
                   "remove it or install a gouache pack that provides one, then import again")


def _value(node: ComfyNodeEntry, our_type: str, name: str, value: Any, problems: list[Problem]) -> tuple[bool, Any]:
    """A literal translated to our names; ``(False, None)`` when it has no counterpart here."""
    mapping = VALUE_MAPS_BY_TYPE.get((our_type, name)) or VALUE_MAPS.get(name)
    if mapping is not None and isinstance(value, str):
        if value not in mapping:
            problems.append(Problem(node.id, name, "unmapped_value",
                                    f"node {node.id!r} ({node.cls}): {name} {value!r} has no equivalent in gouache; "
                                    f"gouache has {sorted(set(mapping.values()))}"))
            return False, None
        return True, mapping[value]
    if our_type == "CheckpointLoader" and name == "name":
        return True, _checkpoint_name(value)
    return True, value


def _same_meaning(our_type: str, inputs: dict[str, Any]) -> None:
    """Values ComfyUI accepts beyond our ranges that mean the same as one inside them."""
    end, steps = inputs.get("end_at_step"), inputs.get("steps")
    if our_type == "SamplerAdvanced" and isinstance(end, int) and isinstance(steps, int) and end > steps:
        inputs["end_at_step"] = steps  # ComfyUI's default 10000 means "to the last step"


def _vae_family(nodes: dict[str, Any]) -> None:
    """ComfyUI's VAELoader reads the family from the file; ours is told. A workflow whose text encoders are
    SD 3.x's or Flux.1's uses that family's VAE, so its VAELoaders are set to it (other files keep sd1)."""
    families = {entry["inputs"].get("family") for entry in nodes.values() if entry["type"] == "TextEncoderLoader"}
    if len(families) == 1 and None not in families:
        for entry in nodes.values():
            if entry["type"] == "VAELoader":
                entry["inputs"].setdefault("family", next(iter(families)))


def convert_graph(graph: ComfyGraph, source: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The graph as a ``gouache/1`` dict (ids kept), with every problem found at once."""
    problems = [_unmapped(node) for node in graph.nodes.values() if node.cls not in COMFY_NODES]
    nodes: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    for node in graph.nodes.values():
        spec = COMFY_NODES.get(node.cls)
        if spec is None:
            continue
        inputs: dict[str, Any] = {}
        for name, raw in node.inputs.items():
            ours = spec.renames.get(name, name)
            if ours is None:
                if name == "crop" and raw not in ("disabled", None):
                    problems.append(Problem(node.id, "crop", "unmapped_value",
                                            f"node {node.id!r} ({node.cls}): crop {raw!r} has no equivalent in "
                                            "gouache; crop the image with CropImage before scaling"))
                continue
            value = graph.resolve(raw) if isinstance(raw, Ref) else raw
            if value is None:
                continue  # fed by nothing, or by a node reported above
            if isinstance(value, Ref):
                source_spec = COMFY_NODES[graph.nodes[value.node].cls] if graph.nodes[value.node].cls in COMFY_NODES \
                    else None
                if source_spec is None:
                    continue  # that node is already a problem; its links add nothing
                if not 0 <= value.slot < len(source_spec.outputs):
                    problems.append(Problem(node.id, ours, "missing_output",
                                            f"node {node.id!r} ({node.cls}): {name} is linked to output "
                                            f"{value.slot} of node {value.node!r}, which has no such output"))
                    continue
                inputs[ours] = {"node": value.node, "output": source_spec.outputs[value.slot]}
                continue
            if isinstance(value, Literal):
                value = value.value
            kept, value = _value(node, spec.type, ours, value, problems)
            if kept:
                inputs[ours] = value
        for name, value in spec.fixed.items():
            inputs.setdefault(name, value)
        _same_meaning(spec.type, inputs)
        nodes[node.id] = {"type": spec.type, "inputs": inputs, **({"mode": node.mode} if node.mode else {})}
        place: dict[str, Any] = {}
        if node.pos:
            place["pos"] = node.pos
        if node.size:
            place["size"] = node.size
        if node.title and node.title != node.cls:
            place["title"] = node.title
        if node.controls:
            place["seed_control"] = {spec.renames.get(name) or name: control for name, control in node.controls.items()}
        if place:
            layout[node.id] = place
    _vae_family(nodes)
    workflow = {"format": "gouache/1", "nodes": nodes, "layout": layout, "groups": graph.groups,
                "meta": {"imported_from": source}}
    return workflow, problems


def _chunk(raw: Any, name: str) -> Any:
    """A PNG chunk's JSON, or ``None`` when the chunk is missing or not JSON."""
    if not isinstance(raw, PngChunks) or name not in raw.chunks:
        return None
    try:
        return json.loads(raw.chunks[name])
    except ValueError:
        return None


def is_ui(raw: Any) -> bool:
    """ComfyUI's UI format: a ``nodes`` list and a ``links`` list."""
    return isinstance(raw, dict) and isinstance(raw.get("nodes"), list) and "format" not in raw


def is_api(raw: Any) -> bool:
    """ComfyUI's API format: every value an object with a ``class_type``."""
    return (isinstance(raw, dict) and bool(raw) and "format" not in raw
            and all(isinstance(entry, dict) and "class_type" in entry for entry in raw.values()))


def convert_ui(raw: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A UI-format workflow (or a PNG's ``workflow`` chunk) as ``gouache/1``."""
    workflow = _chunk(raw, "workflow") if isinstance(raw, PngChunks) else raw
    return convert_graph(read_ui(workflow), "comfyui-ui")


def convert_api(raw: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """An API-format prompt (or a PNG's ``prompt`` chunk) as ``gouache/1``."""
    prompt = _chunk(raw, "prompt") if isinstance(raw, PngChunks) else raw
    return convert_graph(read_api(prompt), "comfyui-api")


def importers() -> list[WorkflowImporter]:
    """The ComfyUI importers, UI format first (it keeps the layout) when a PNG carries both."""
    return [
        WorkflowImporter("comfyui-ui", lambda raw: is_ui(raw) or is_ui(_chunk(raw, "workflow")), convert_ui,
                         "ComfyUI's UI format (saved workflows, PNG 'workflow' chunks)"),
        WorkflowImporter("comfyui-api", lambda raw: is_api(raw) or is_api(_chunk(raw, "prompt")), convert_api,
                         "ComfyUI's API format (Save (API), POST /prompt bodies, PNG 'prompt' chunks)",
                         nodes=COMFY_NODES),
    ]
