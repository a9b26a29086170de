"""ComfyUI's GET /object_info for the ComfyUI classes gouache maps, derived, not written by hand.

Each class is described from the gouache node it becomes (its declared inputs, ranges, defaults,
choices, outputs, category and description) read through the importer's
:class:`~gouache.engine.importers.ForeignNode`: input names back in ComfyUI's spelling, choice values
in ComfyUI's names where they differ, only the outputs ComfyUI's class has, in its order.

Inputs gouache has no counterpart for (``renames`` to ``None``: LoadImage's ``upload`` button,
LatentUpscale's ``crop``...) are not listed: gouache does not act on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gouache.engine import Input, Registry, WorkflowImporter

from gouache.web.comfy.messages import ObjectInfo

Choices = Callable[[str], list[str]]


def _choices(spec: Input, values: dict[str, Any], choices_for: Choices) -> list[Any]:
    ours = list(spec.choices) if spec.choices is not None else choices_for(spec.choices_from or "")
    if not values:
        return ours
    listed = [theirs for theirs, mine in values.items() if mine in ours]
    return listed + [choice for choice in ours if choice not in values.values()]


def input_spec(spec: Input, values: dict[str, Any], choices_for: Choices) -> list[Any]:
    """One input as ComfyUI writes it: ``[TYPE, {options}]`` or ``[[choices...], {options}]``."""
    options: dict[str, Any] = {}
    if spec.default is not None:
        options["default"] = next((theirs for theirs, mine in values.items() if mine == spec.default), spec.default)
    if spec.choices is not None or spec.choices_from is not None:
        if spec.upload:
            options["image_upload"] = True
        return [_choices(spec, values, choices_for), options]
    for bound in ("min", "max", "step"):
        if getattr(spec, bound) is not None:
            options[bound] = getattr(spec, bound)
    if spec.type == "STRING":
        options["multiline"] = spec.multiline
    if spec.seed:
        options["control_after_generate"] = True
    if spec.description:
        options["tooltip"] = spec.description
    return [spec.type, options] if options else [spec.type]


def describe(name: str, foreign: Any, registry: Registry, choices_for: Choices) -> ObjectInfo | None:
    """The ComfyUI class ``name`` as /object_info shows it, or ``None`` when its gouache node is not installed."""
    node_class = registry.get(foreign.type)
    if node_class is None:
        return None
    back = {ours: theirs for theirs, ours in foreign.renames.items() if ours is not None}
    values = foreign.values
    required: dict[str, list[Any]] = {}
    optional: dict[str, list[Any]] = {}
    for spec in node_class.inputs:
        if spec.name in foreign.fixed:
            continue
        theirs = back.get(spec.name, spec.name)
        section = required if not spec.has_default or theirs in foreign.widgets else optional
        section[theirs] = input_spec(spec, dict(values.get(spec.name, {})), choices_for)
    declared = {output.name: output.type for output in node_class.outputs}
    outputs = [name for name in foreign.outputs if name in declared]
    sections = {"required": required, **({"optional": optional} if optional else {})}
    info = node_class.info(registry.pack_of(foreign.type))
    return ObjectInfo(
        input=sections, input_order={key: list(section) for key, section in sections.items()},
        output=[declared[name] for name in outputs], output_is_list=[False] * len(outputs),
        output_name=outputs, name=name, display_name=name,
        description=f"gouache {foreign.type}: {info.description.splitlines()[0] if info.description else ''}".strip(),
        python_module=f"gouache.{info.pack}", category=info.category, output_node=info.output_node)


def object_info(importer: WorkflowImporter | None, registry: Registry, choices_for: Choices,
                only: str | None = None) -> dict[str, Any]:
    """Every mapped class (or just ``only``) whose gouache node is installed, as JSON."""
    if importer is None:
        return {}
    names = [only] if only is not None else sorted(importer.nodes)
    described = {}
    for name in names:
        foreign = importer.nodes.get(name)
        info = describe(name, foreign, registry, choices_for) if foreign is not None else None
        if info is not None:
            described[name] = info.model_dump(mode="json")
    return described
