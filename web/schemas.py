"""Pydantic models of every HTTP body and websocket message; ``docs/api.md`` embeds their schemas.

``python -m gouache.web.schemas docs/api.md`` rewrites the generated part of that page (between
the ``schemas:start`` and ``schemas:end`` markers); a test fails when it is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gouache.engine import NodeInfo

RunStatus = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled"]


class Message(BaseModel):
    """Base of every message: unknown fields are refused on the way in."""

    model_config = ConfigDict(extra="forbid")


# ---- HTTP ---------------------------------------------------------------------------------------


class RunRequest(Message):
    """POST /api/runs: a gouache/1 workflow and, optionally, the node ids whose outputs are wanted."""

    workflow: dict[str, Any]
    outputs: list[str] | None = None


class RunQueued(Message):
    """202 from POST /api/runs: the new run's id and how many runs are ahead of it."""

    run_id: str
    position: int


class ProblemModel(Message):
    """One problem that stops a workflow from running (node/input null for whole-file problems)."""

    node: str | None
    input: str | None
    code: str
    message: str


class Problems(Message):
    """400 from POST /api/runs: every problem found, at once."""

    problems: list[ProblemModel]


class ImageRef(Message):
    """A file a node wrote, fetched at GET /api/files/{kind}/{path}."""

    kind: Literal["output", "input", "temp"]
    path: str


class NodeOutputs(Message):
    """What a run kept of one node's outputs: the images it wrote."""

    images: list[ImageRef]


class RunError(Message):
    """Why a run failed or stopped: the node, its type, the message (and a traceback)."""

    node: str | None
    type: str | None
    message: str
    traceback: str = ""
    problems: list[ProblemModel] | None = None


class RunRecord(Message):
    """GET /api/runs/{id}: one run, queued, running or finished."""

    run_id: str
    seq: int
    status: RunStatus
    position: int | None = Field(None, description="runs ahead of it, while queued")
    created: float
    started: float | None
    finished: float | None
    seconds: float | None
    executed: list[str]
    cached: list[str]
    outputs: dict[str, NodeOutputs]
    timings: dict[str, float]
    error: RunError | None
    targets: list[str] | None
    workflow: dict[str, Any] | None = Field(None, description="only with ?workflow=1")


class RunList(Message):
    """GET /api/runs?limit=20&before=SEQ: the queue, then finished runs newest first, a page at a time."""

    queue: list[RunRecord]
    history: list[RunRecord]
    next_before: int | None = Field(description="pass as ?before= for the next page; null on the last")


class Cancelled(Message):
    """DELETE /api/runs/{id}: ``cancelled`` (was queued) or ``interrupting`` (was running)."""

    run_id: str
    status: Literal["cancelled", "interrupting"]


class SocketTypeModel(Message):
    """A socket type: its name, slot colour and the types it may also feed."""

    name: str
    color: str
    converts_to: list[str]
    description: str


class PackModel(Message):
    """A node pack and what became of it: ``loaded``, ``error`` (with the message) or ``blocked``."""

    name: str
    status: str
    distribution: str | None
    version: str | None
    error: str | None
    node_types: list[str]
    web_extensions: list[str]


class NodesResponse(Message):
    """GET /api/nodes: every node type, its inputs with widget specs (``choices_from`` resolved into
    ``choices`` now), its outputs; the categories; the socket types and colours; every node pack
    with its status, so the editor can show a pack that failed to load."""

    nodes: list[NodeInfo]
    categories: list[str]
    types: list[SocketTypeModel]
    packs: list[PackModel]


class Uploaded(Message):
    """201 from POST /api/uploads: the name the image was stored under in the input folder."""

    name: str
    kind: Literal["input"]
    path: str


class WorkflowEntry(Message):
    """One saved workflow."""

    name: str
    source: Literal["user", "shipped"]
    read_only: bool
    title: str | None
    modified: float


class WorkflowList(Message):
    """GET /api/workflows."""

    workflows: list[WorkflowEntry]


class ExtensionEntry(Message):
    """A pack's web extension: URLs of its ES modules and stylesheets."""

    name: str
    scripts: list[str]
    styles: list[str]


class ExtensionList(Message):
    """GET /api/extensions."""

    extensions: list[ExtensionEntry]


class ErrorBody(Message):
    """Any other 4xx/5xx: what went wrong and how to fix it."""

    error: str


# ---- websocket (text frames: {"type", "data"}) ------------------------------------------------


class QueuedData(Message):
    run_id: str
    position: int


class CancelledData(Message):
    run_id: str


class StartedData(Message):
    run_id: str
    nodes: list[str] = Field(description="the nodes this run will visit, in order")


class NodeStartedData(Message):
    run_id: str
    node: str
    type: str


class ProgressData(Message):
    run_id: str
    node: str
    value: int
    max: int


class NodeCachedData(Message):
    run_id: str
    node: str


class NodeFinishedData(Message):
    run_id: str
    node: str
    seconds: float
    images: list[ImageRef]


class NodeErrorData(Message):
    run_id: str
    node: str
    type: str
    message: str
    traceback: str
    input: str | None = None
    code: str = "node_failed"


class FinishedData(Message):
    run_id: str
    status: Literal["succeeded", "failed", "interrupted"]
    seconds: float
    executed: int
    cached: int


class InterruptedData(Message):
    run_id: str
    node: str


class QueueEntry(Message):
    run_id: str
    status: Literal["queued", "running"]
    position: int | None
    created: float


class RunningData(Message):
    run_id: str
    nodes: list[str]
    node: str | None
    progress: dict[str, int] | None = Field(description='{"value", "max"} of the running node')
    executed: list[str]
    cached: list[str]
    images: dict[str, list[ImageRef]]


class StateData(Message):
    """Sent first on every (re)connection."""

    queue: list[QueueEntry]
    running: RunningData | None


EVENTS: dict[str, type[Message]] = {
    "state": StateData, "queued": QueuedData, "cancelled": CancelledData, "started": StartedData,
    "node_started": NodeStartedData, "progress": ProgressData, "node_cached": NodeCachedData,
    "node_finished": NodeFinishedData, "node_error": NodeErrorData, "finished": FinishedData,
    "interrupted": InterruptedData,
}

HTTP: list[type[Message]] = [RunRequest, RunQueued, Problems, RunRecord, RunList, Cancelled, NodesResponse,
                             Uploaded, WorkflowList, ExtensionList, ErrorBody]

START, END = "<!-- schemas:start (generated by python -m gouache.web.schemas docs/api.md) -->", "<!-- schemas:end -->"


def render() -> str:
    """The generated Markdown: one JSON Schema per HTTP body and websocket message."""
    parts = [START, "", "### HTTP bodies", ""]
    for model in HTTP:
        parts += _schema_block(model.__name__, model)
    parts += ["### Websocket messages", "",
              "Each text frame is `{\"type\": TYPE, \"data\": DATA}`; the schema below is DATA's.", ""]
    for event_type, model in EVENTS.items():
        parts += _schema_block(f"`{event_type}`", model)
    parts.append(END)
    return "\n".join(parts)


def _schema_block(title: str, model: type[BaseModel]) -> list[str]:
    schema = model.model_json_schema()
    return [f"#### {title}", "", "```json", json.dumps(schema, indent=1, sort_keys=True), "```", ""]


def update(page: Path) -> bool:
    """Rewrite the generated part of ``page``; returns whether it changed."""
    text = page.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = head + render() + tail
    if new != text:
        page.write_text(new, encoding="utf-8")
        return True
    return False


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api.md")
    print(f"{target}: {'updated' if update(target) else 'up to date'}")
