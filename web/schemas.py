"""Pydantic models of every HTTP body and websocket message; ``docs/api.md`` embeds their schemas.

Run events are the engine's own models (:mod:`gouache.engine.events`), problems and node errors
the engine's own dataclasses (:mod:`gouache.engine.problems`): this module adds only what the
server alone says. :data:`ROUTES` names the response model of each route and status; the web
tests check every body and message they receive against these models.

``python -m gouache.web.schemas docs/api.md`` rewrites the generated part of that page (between
the ``schemas:start`` and ``schemas:end`` markers); a test fails when it is out of date.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model, with_config

from gouache.engine import NodeInfo, PackReport, Problem, Workflow, jsonio
from gouache.engine.events import RUN_EVENTS, EventData, ImageRef

RunStatus = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled"]


# Validators and serializers are built on a model's first use (``defer_build``): the server uses a few
# of these models, and building all of them at import cost `gouache serve` a third of its start.
DEFERRED = ConfigDict(defer_build=True)


class Message(BaseModel):
    """Base of every message: unknown fields are refused on the way in."""

    model_config = ConfigDict(extra="forbid", **DEFERRED)


# ---- HTTP ---------------------------------------------------------------------------------------


class RunRequest(Message):
    """POST /api/runs: a gouache/1 workflow and, optionally, the node ids whose outputs are wanted.

    With ``sweep``, one run is queued for every combination of the values given (``zip``: value by
    value instead), each named by its values (``docs/api.md``, Sweeps).
    """

    workflow: dict[str, Any]
    outputs: list[str] | None = None
    sweep: dict[str, list[Any] | str] | None = Field(
        None, description='{"NODE.INPUT": [values] or "A..B[:STEP]"}, e.g. {"sampler.seed": "1..16"}')
    zip: bool = Field(False, description="pair the sweep's values by position instead of taking every combination")


class RunQueued(Message):
    """202 from POST /api/runs: the new run's id and how many runs are ahead of it."""

    run_id: str
    position: int


class SweepRun(Message):
    """One run of a sweep: its id, its place in the queue and the values it sets."""

    run_id: str
    position: int
    values: dict[str, Any]


class SweepQueued(Message):
    """202 from POST /api/runs with a ``sweep``: every run queued, in order."""

    runs: list[SweepRun]


class Problems(Message):
    """400 from POST /api/runs and PUT /api/workflows/{name}: every problem found, at once."""

    problems: list[Problem]


class NodeOutputs(Message):
    """What a run kept of one node's outputs: the images it wrote."""

    images: list[ImageRef]


class RunError(Message):
    """Why a run failed or stopped: a node's :class:`~gouache.engine.NodeError`, or, with ``node``
    and ``type`` null, what stopped the run outside any node (``code``: ``interrupted``,
    ``server_stopped``, ``workflow_invalid`` with its ``problems``, ``internal_error``)."""

    node: str | None
    type: str | None
    message: str
    traceback: str
    input: str | None
    code: str
    problems: list[Problem] | None = Field(None, description="only with code workflow_invalid")


def run_error(message: str, code: str, *, node: str | None = None,
              problems: list[Problem] | None = None) -> dict[str, Any]:
    """The ``error`` of a run that ended outside any node (``NodeError.to_json()`` is a node's)."""
    error = RunError(node=node, type=None, message=message, traceback="", input=None, code=code,
                     problems=problems)
    return error.model_dump(mode="json", exclude=None if problems is not None else {"problems"})


class Attempt(Message):
    """One try of a run on a cluster worker (``gouache serve --ray``; docs/scaling.md)."""

    worker: str = Field(description="the worker actor's name")
    host: str = Field(description="the machine it ran on")
    pid: int = Field(description="the worker's process id on that machine")
    started: float
    finished: float | None
    outcome: str = Field(description="running, worker_lost, server_stopped, or the run's status")
    message: str


class RunRecord(Message):
    """GET /api/runs/{id}: one run, queued, running or finished."""

    run_id: str
    seq: int
    status: RunStatus
    position: int | None = Field(None, description="runs ahead of it, while queued (absent in history)")
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
    attempts: list[Attempt] = Field(description="tries on cluster workers, oldest first; empty for in-process runs")
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


@with_config(ConfigDict(extra="forbid", **DEFERRED))
@dataclass
class PackModel(PackReport):
    """A node pack and what became of it: ``loaded``, ``error`` (with the message) or ``blocked``."""


class NodesResponse(Message):
    """GET /api/nodes: every node type, its inputs with widget specs (``choices_from`` resolved into
    ``choices`` now), its outputs; the categories; the socket types and colours; every node pack
    with its status, so the editor can show a pack that failed to load."""

    nodes: list[NodeInfo]
    categories: list[str]
    types: list[SocketTypeModel]
    packs: list[PackModel]


class ModelFile(BaseModel):
    """One model found: its name (as workflows use it), its path, and what its kind adds."""

    model_config = ConfigDict(extra="allow", **DEFERRED)

    name: str
    path: str


class ModelsResponse(RootModel[dict[str, list[ModelFile]]]):
    """GET /api/models: every model kind and the models found, as ``gouache models --json`` prints."""

    model_config = DEFERRED


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
    description: str | None = Field(None, description="the workflow's meta.description")
    thumbnail: str | None = Field(None, description="URL of a picture that stands for it (GET /api/workflows/{name}/thumbnail): "
                                                    "its newest output, else a picture shipped beside it; null when none")
    modified: float


class WorkflowList(Message):
    """GET /api/workflows."""

    workflows: list[WorkflowEntry]


class Imported(Message):
    """POST /api/import: another tool's workflow converted; what it lacks here is in ``problems``."""

    workflow: Workflow
    problems: list[Problem] = Field(description="the conversion's problems (nodes without an equivalent, which "
                                                "the workflow leaves out), then validation's (models not found)")


class WorkflowSaved(Message):
    """201 (new) or 200 (replaced) from PUT /api/workflows/{name}."""

    name: str


class WorkflowDeleted(Message):
    """DELETE /api/workflows/{name}."""

    name: str
    deleted: Literal[True]


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
    run_status: RunStatus | None = Field(None, description="409 from DELETE /api/runs/{id}: how the run ended")


Body = type[BaseModel] | tuple[type[BaseModel], ...]

ROUTES: dict[str, dict[int, Body]] = {
    "GET /api/nodes": {200: NodesResponse},
    "GET /api/models": {200: ModelsResponse},
    "GET /api/runs": {200: RunList},
    "POST /api/runs": {202: (RunQueued, SweepQueued), 400: (Problems, ErrorBody)},
    "GET /api/runs/{run_id}": {200: RunRecord},
    "DELETE /api/runs/{run_id}": {200: Cancelled, 202: Cancelled},
    "POST /api/uploads": {201: Uploaded},
    "POST /api/import": {200: Imported, 400: (Problems, ErrorBody)},
    "GET /api/workflows": {200: WorkflowList},
    "GET /api/workflows/{name}": {200: Workflow},
    "PUT /api/workflows/{name}": {200: WorkflowSaved, 201: WorkflowSaved, 400: (Problems, ErrorBody)},
    "DELETE /api/workflows/{name}": {200: WorkflowDeleted},
    "GET /api/extensions": {200: ExtensionList},
}
"""The JSON body of each API route by status (a tuple: one of these); any other 4xx/5xx of an API
route is an :class:`ErrorBody`. A 400 is ``Problems`` when the workflow is at fault, ``ErrorBody``
when the request is (a body that is not JSON, a bad name)."""


def response_models(route: str, status: int) -> tuple[type[BaseModel], ...]:
    """The models one of which describes the body ``route`` (``"GET /api/runs"``) answers with ``status``."""
    body = ROUTES.get(route, {}).get(status)
    if body is None:
        return (ErrorBody,) if status >= 400 else ()
    return body if isinstance(body, tuple) else (body,)


# ---- websocket (text frames: {"type", "data"}) ------------------------------------------------


class CancelledData(EventData):
    """A queued run was cancelled before it started (sent by the server)."""

    event_type = "cancelled"


class QueueEntry(Message):
    run_id: str
    status: Literal["queued", "running"]
    position: int | None
    created: float


class RunningData(Message):
    """The run in progress as a reconnecting client needs it (the hub keeps it up to date)."""

    run_id: str
    nodes: list[str]
    node: str | None = None
    progress: dict[str, int] | None = Field(None, description='{"value", "max"} of the running node')
    executed: list[str] = Field(default_factory=list)
    cached: list[str] = Field(default_factory=list)
    images: dict[str, list[ImageRef]] = Field(default_factory=dict)


class StateData(Message):
    """Sent first on every (re)connection."""

    queue: list[QueueEntry]
    running: RunningData | None


MESSAGES: dict[str, type[BaseModel]] = {
    "state": StateData,
    **{event_type: model for event_type, model in RUN_EVENTS.items() if event_type != "preview"},
    "cancelled": CancelledData,
}
"""The data model of each message's ``type``; previews travel as binary frames (hub.py)."""


def _message(event_type: str, data: type[BaseModel]) -> type[BaseModel]:
    name = "".join(part.title() for part in event_type.split("_")) + "Message"
    return create_model(name, __base__=Message, __doc__=f"A ``{event_type}`` message.",
                        type=(Literal[event_type], ...), data=(data, ...))


AnyMessage = Annotated[Union[tuple(_message(t, model) for t, model in MESSAGES.items())],  # noqa: UP007
                       Field(discriminator="type")]


class BatchData(Message):
    """Several messages in one frame, in the order they happened: what piled up for a client while
    the previous frame was being sent (a run of thousands of cached nodes sends thousands of events
    within milliseconds). Read it as if each message had come in a frame of its own."""

    events: list[AnyMessage]


EVENTS: dict[str, type[BaseModel]] = {**MESSAGES, "batch": BatchData}
"""The data model of each text frame's ``type``: every message, or a ``batch`` of them."""

HTTP: list[type[BaseModel]] = [RunRequest, *dict.fromkeys(model for route, statuses in ROUTES.items()
                                                             for status in statuses
                                                             for model in response_models(route, status))]

START, END = "<!-- schemas:start (generated by python -m gouache.web.schemas docs/api.md) -->", "<!-- schemas:end -->"


def render() -> str:
    """The generated Markdown: one JSON Schema per HTTP body and websocket message."""
    parts = [START, "", "### Responses by route", "",
             "Any other 4xx/5xx status of an `/api/` route answers an `ErrorBody`.", "",
             "| route | status: body |", "|---|---|"]
    for route, statuses in ROUTES.items():
        answers = ", ".join(f"{status}: " + " or ".join(f"`{model.__name__}`" for model in response_models(route, status))
                            for status in statuses)
        parts.append(f"| `{route}` | {answers} |")
    parts += ["", "### HTTP bodies", ""]
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
    return [f"#### {title}", "", "```json", jsonio.dumps(schema, indent=1, sort_keys=True), "```", ""]


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
