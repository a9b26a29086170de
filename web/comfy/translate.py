"""ComfyUI's words for gouache's things: a prompt read into a workflow, problems as ``node_errors``,
runs as history entries, file references as ``{filename, subfolder, type}``.

ComfyUI's node ids are gouache's node ids: the importer keeps them, so a problem, an event or an
output of node ``"3"`` is node ``"3"`` of the prompt. Only input names and values differ, and the
importer's :class:`~gouache.engine.importers.ForeignNode` says how.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gouache.engine import Problem, Registry, WorkflowImporter

from gouache.web.comfy.messages import (
    ComfyImage, ErrorDetail, ExecutionCachedData, ExecutionErrorData, ExecutionInterruptedData, ExecutionStartData,
    ExecutionSuccessData, HistoryEntry, NodeErrors, NodeOutput, PromptStatus, Strict,
)
from gouache.web.comfy.prompts import ComfyPrompt

IMPORTER = "comfyui-api"
"""The name of the importer that reads ComfyUI's API format (the built-in pack registers it)."""

ERROR_TYPES = {
    "missing_input": "required_input_missing", "not_a_choice": "value_not_in_list",
    "wrong_value_type": "invalid_input_type", "type_mismatch": "return_type_mismatch",
    "missing_node": "bad_linked_input", "missing_output": "bad_linked_input", "unmapped_node": "missing_node_type",
}
"""gouache problem codes -> ComfyUI's error types where they mean the same (others keep gouache's code)."""


def comfy_importer(importers: list[WorkflowImporter]) -> WorkflowImporter | None:
    """The importer of ComfyUI's API format, if a pack provides one."""
    return next((importer for importer in importers if importer.name == IMPORTER), None)


def shape_problems(prompt: Any) -> list[Problem]:
    """What keeps ``prompt`` from being an API-format prompt at all: ``{id: {class_type, inputs}}``."""
    if not isinstance(prompt, dict) or not prompt:
        return [Problem(None, None, "invalid_prompt", "the prompt must be a non-empty object "
                        "{node_id: {\"class_type\": ..., \"inputs\": {...}}} (ComfyUI's API format, Save (API))")]
    problems = []
    for node_id, entry in prompt.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str):
            problems.append(Problem(node_id, None, "invalid_prompt",
                                    f"node {node_id!r} has no class_type; each node is {{\"class_type\", \"inputs\"}}"))
        elif not isinstance(entry.get("inputs", {}), dict):
            problems.append(Problem(node_id, None, "invalid_prompt", f"node {node_id!r}: inputs must be an object"))
    return problems


def output_nodes(workflow: dict[str, Any], registry: Registry) -> list[str]:
    """The workflow's output nodes (the ones ComfyUI's ``outputs_to_execute`` lists), in prompt order."""
    found = []
    for node_id, entry in (workflow.get("nodes") or {}).items():
        node_class = registry.get(entry.get("type", ""))
        if node_class is not None and node_class.output_node:
            found.append(node_id)
    return found


def _upstream(prompt: dict[str, Any], node_id: str) -> set[str]:
    """Every node ``node_id`` reads from, through links ``[id, index]``, itself included."""
    seen, stack = set(), [node_id]
    while stack:
        current = stack.pop()
        if current in seen or not isinstance(prompt.get(current), dict):
            continue
        seen.add(current)
        for value in (prompt[current].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)):
                stack.append(str(value[0]))
    return seen


def _their_input(spec: Any, ours: str | None) -> str | None:
    if ours is None or spec is None:
        return ours
    back = {mine: theirs for theirs, mine in spec.renames.items() if mine is not None}
    return back.get(ours, ours)


def _error_type(problem: Problem, value: Any, registry: Registry, our_type: str | None) -> str:
    if problem.code == "out_of_range" and isinstance(value, (int, float)) and our_type:
        node_class = registry.get(our_type)
        declared = next((spec for spec in (node_class.inputs if node_class else []) if spec.name == problem.input), None)
        if declared is not None and declared.min is not None and value < declared.min:
            return "value_smaller_than_min"
        return "value_bigger_than_max"
    return ERROR_TYPES.get(problem.code, problem.code)


def refusal(problems: list[Problem], prompt: dict[str, Any], importer: WorkflowImporter | None,
            registry: Registry, outputs: list[str]) -> tuple[ErrorDetail, dict[str, NodeErrors]]:
    """ComfyUI's 400 body for ``problems``: each node's errors under its id, the rest in ``error``."""
    nodes: dict[str, NodeErrors] = {}
    loose: list[str] = []
    for problem in problems:
        entry = prompt.get(problem.node) if isinstance(prompt, dict) and problem.node is not None else None
        if not isinstance(entry, dict):
            loose.append(problem.message)
            continue
        class_type = str(entry.get("class_type") or "")
        spec = importer.nodes.get(class_type) if importer is not None else None
        theirs = _their_input(spec, problem.input)
        value = (entry.get("inputs") or {}).get(theirs) if theirs else None
        extra: dict[str, Any] = {"code": problem.code}
        if theirs is not None:
            extra |= {"input_name": theirs, "received_value": value}
        if problem.code == "unmapped_node":
            extra |= {"node_id": problem.node, "class_type": class_type}
        detail = ErrorDetail(type=_error_type(problem, value, registry, spec.type if spec else None),
                             message=problem.message, details=theirs or "", extra_info=extra)
        if problem.node not in nodes:
            dependent = [out for out in outputs if problem.node in _upstream(prompt, out)]
            nodes[problem.node] = NodeErrors(errors=[], dependent_outputs=dependent, class_type=class_type)
        nodes[problem.node].errors.append(detail)
    unmapped = any(problem.code == "unmapped_node" for problem in problems)
    every = [f"node {node}: {error.message}" for node, entry in nodes.items() for error in entry.errors] + loose
    if unmapped:
        error = ErrorDetail(type="missing_node_type", message="the prompt uses node classes gouache has no equivalent for",
                            details="\n".join(every))
    elif not nodes and len(loose) == 1 and problems and problems[0].code in ("invalid_prompt", "prompt_no_outputs"):
        error = ErrorDetail(type=problems[0].code, message=loose[0], details="")
    else:
        error = ErrorDetail(type="prompt_outputs_failed_validation", message="Prompt outputs failed validation",
                            details="\n".join(every))
    return error, nodes


# ---- runs as ComfyUI shows them -----------------------------------------------------------------


def comfy_image(ref: Mapping[str, Any]) -> ComfyImage:
    """``{"kind", "path"}`` (gouache) as ``{"filename", "subfolder", "type"}`` (ComfyUI)."""
    subfolder, _, filename = str(ref["path"]).rpartition("/")
    return ComfyImage(filename=filename, subfolder=subfolder, type=ref["kind"])


def node_output(images: list[Any]) -> NodeOutput:
    """A node's images, from events (``ImageRef``) or records (dicts)."""
    return NodeOutput(images=[comfy_image(image if isinstance(image, Mapping) else image.model_dump())
                              for image in images])


def millis(seconds: float | None) -> int:
    """A timestamp in ComfyUI's unit (milliseconds since the epoch)."""
    return int((seconds if seconds is not None else time.time()) * 1000)


def class_of(prompt: ComfyPrompt, node: str | None) -> str | None:
    """The ComfyUI class of ``node`` in the prompt."""
    entry = prompt.prompt.get(node) if node is not None else None
    return str(entry.get("class_type")) if isinstance(entry, dict) else None


def error_data(prompt: ComfyPrompt, error: Mapping[str, Any], executed: list[str],
               timestamp: int) -> ExecutionErrorData:
    """A run's error (a ``NodeError``'s fields, or why it stopped outside any node) as ``execution_error``."""
    node = error.get("node")
    return ExecutionErrorData(
        prompt_id=prompt.prompt_id, node_id=node, node_type=class_of(prompt, node) or error.get("type"),
        executed=list(executed), exception_message=str(error.get("message", "")),
        exception_type=str(error.get("code", "error")), traceback=str(error.get("traceback") or "").splitlines(True),
        current_inputs={}, current_outputs={}, timestamp=timestamp)


def interrupted_data(prompt: ComfyPrompt, node: str | None, executed: list[str], timestamp: int
                     ) -> ExecutionInterruptedData:
    """``execution_interrupted`` for ``prompt``, stopped in or before ``node``."""
    return ExecutionInterruptedData(prompt_id=prompt.prompt_id, node_id=node, node_type=class_of(prompt, node),
                                    executed=list(executed), timestamp=timestamp)


def history_entry(prompt: ComfyPrompt, record: Mapping[str, Any]) -> HistoryEntry:
    """A finished run as ComfyUI's history lists it."""
    outputs = {node: node_output(value.get("images") or []) for node, value in (record.get("outputs") or {}).items()}
    started, finished = millis(record.get("started") or record.get("created")), millis(record.get("finished"))
    messages: list[tuple[str, Strict]] = [
        ("execution_start", ExecutionStartData(prompt_id=prompt.prompt_id, timestamp=started)),
        ("execution_cached", ExecutionCachedData(nodes=list(record.get("cached") or []), prompt_id=prompt.prompt_id,
                                                 timestamp=started)),
    ]
    status = record["status"]
    executed = list(record.get("executed") or [])
    error = record.get("error") or {}
    if status == "succeeded":
        messages.append(("execution_success", ExecutionSuccessData(prompt_id=prompt.prompt_id, timestamp=finished)))
    elif status == "interrupted":
        messages.append(("execution_interrupted", interrupted_data(prompt, error.get("node"), executed, finished)))
    else:
        messages.append(("execution_error", error_data(prompt, error, executed, finished)))
    meta = {node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outputs}
    return HistoryEntry(prompt=tuple(prompt.queue_item()), outputs=outputs,
                        status=PromptStatus(status_str="success" if status == "succeeded" else "error",
                                            completed=status == "succeeded",
                                            messages=[(kind, data.model_dump(mode="json")) for kind, data in messages]),
                        meta=meta)
