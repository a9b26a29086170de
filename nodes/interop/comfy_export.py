"""A ``gouache/1`` workflow written in ComfyUI's API format, so work can go back to ComfyUI."""

from __future__ import annotations

from typing import Any

from gouache.engine import Problem, Registry
from gouache.engine.modes import resolve as resolve_modes
from gouache.engine.workflow import parse
from gouache.nodes.interop.comfy_nodes import COMFY_NODES, VALUE_MAPS, VALUE_MAPS_BY_TYPE, ComfyNode

COMFY_DEFAULTS: dict[str, dict[str, Any]] = {
    "LatentUpscale": {"crop": "disabled"}, "ImageScale": {"crop": "disabled"},
    "VAEDecodeTiled": {"overlap": 64, "temporal_size": 64, "temporal_overlap": 8},
    "VAEEncodeTiled": {"overlap": 64, "temporal_size": 64, "temporal_overlap": 8},
    "ImageScaleToTotalPixels": {"resolution_steps": 1}, "DualCLIPLoader": {"device": "default"},
}
"""Inputs ComfyUI requires that gouache has no counterpart for, at ComfyUI's defaults."""


def _comfy_class(our_type: str, inputs: dict[str, Any]) -> tuple[str, ComfyNode] | None:
    """The ComfyUI class for one of our nodes: the ``...By`` variants when the size is not set."""
    candidates = [(cls, spec) for cls, spec in COMFY_NODES.items() if spec.type == our_type]
    if our_type in ("LatentUpscale", "ImageScale"):
        by_scale = not inputs.get("width") and not inputs.get("height")
        candidates = [(cls, spec) for cls, spec in candidates if cls.endswith("By") == by_scale]
    if our_type == "TextEncoderLoader":
        three = inputs.get("text_encoder_3") not in (None, "")
        candidates = [(cls, spec) for cls, spec in candidates if cls.startswith("Triple") == three]
    if our_type == "EmptyLatent":
        candidates = [(cls, spec) for cls, spec in candidates if cls == "EmptyLatentImage"]
    return candidates[0] if candidates else None


def _running(workflow: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """The nodes that run, with links followed through bypassed nodes: ComfyUI's API format has no modes,
    and ComfyUI's own "Save (API)" leaves muted and bypassed nodes out the same way."""
    nodes = workflow.get("nodes") or {}
    parsed, _ = parse(workflow)
    if parsed is None or not any(entry.mode for entry in parsed.nodes.values()):
        return nodes
    modes = resolve_modes(parsed, registry)
    running = {}
    for node_id in modes.running:
        inputs = {name: value for name, value in (nodes[node_id].get("inputs") or {}).items()
                  if not (isinstance(value, dict) and set(value) == {"node", "output"})}
        inputs.update({name: link.model_dump() for name, link in modes.links[node_id].items()})
        running[node_id] = {"type": nodes[node_id]["type"], "inputs": inputs}
    return running


def export_api(workflow: dict[str, Any], registry: Registry) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The workflow as a ComfyUI API prompt, or ``None`` and a problem for every node that does not map.

    Muted nodes, and those only they feed, are left out; links through a bypassed node go to its source.
    """
    nodes = _running(workflow, registry)
    problems: list[Problem] = []
    chosen: dict[str, tuple[str, ComfyNode]] = {}
    for node_id, entry in nodes.items():
        found = _comfy_class(entry.get("type"), entry.get("inputs") or {})
        if found is None:
            problems.append(Problem(node_id, None, "no_comfy_equivalent",
                                    f"node {node_id!r} is a {entry.get('type')!r}, which ComfyUI's core has no node "
                                    "for; replace it to export this workflow"))
        else:
            chosen[node_id] = found
    if problems:
        return None, problems
    prompt: dict[str, Any] = {}
    for node_id, entry in nodes.items():
        cls, spec = chosen[node_id]
        node_class = registry.get(entry["type"])
        values = {spec_input.name: spec_input.default for spec_input in (node_class.inputs if node_class else [])
                  if spec_input.default is not None}
        values.update(entry.get("inputs") or {})
        back = {ours: theirs for theirs, ours in spec.renames.items() if ours is not None}
        inputs: dict[str, Any] = dict(COMFY_DEFAULTS.get(cls, {}))
        for name, value in values.items():
            if name in spec.fixed:
                continue
            theirs = back.get(name, name)
            if theirs not in spec.widgets and not isinstance(value, dict):
                continue  # an input of ours ComfyUI's node does not have (e.g. UpscaleWithModel's tile_size)
            if isinstance(value, dict) and set(value) == {"node", "output"}:
                source_cls, source_spec = chosen[value["node"]]
                inputs[theirs] = [value["node"], source_spec.outputs.index(value["output"])]
                continue
            mapping = VALUE_MAPS_BY_TYPE.get((entry["type"], name)) or VALUE_MAPS.get(name)
            if mapping is not None and isinstance(value, str):
                value = next((comfy for comfy, ours in mapping.items() if ours == value), value)
            inputs[theirs] = value
        prompt[node_id] = {"class_type": cls, "inputs": inputs,
                           "_meta": {"title": (workflow.get("layout") or {}).get(node_id, {}).get("title", cls)}}
    return prompt, []
