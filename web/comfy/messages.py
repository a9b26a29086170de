"""The bodies and websocket messages of ComfyUI's API, as gouache sends them (one model each).

The shapes are ComfyUI's (``server.py``, ``execution.py``); fields ComfyUI has that gouache fills
differently are said where they are declared. Every message is built through its model, so a field
misspelt or missing fails where it is sent; the tests read what they receive back through them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FileType = Literal["output", "input", "temp"]


class Strict(BaseModel):
    """Base of every body and message: unknown fields are refused when a test reads one back."""

    # Built on first use (``defer_build``): building all of them at import slowed `gouache serve`'s start.
    model_config = ConfigDict(extra="forbid", defer_build=True)


# ---- HTTP ---------------------------------------------------------------------------------------


class PromptRequest(BaseModel):
    """POST /prompt. Fields gouache does not know are kept (``model_extra``) so each can be named in a warning."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    prompt: dict[str, Any] | None = None
    client_id: str | None = None
    prompt_id: str | None = None
    extra_data: dict[str, Any] | None = None
    front: bool | None = None
    number: float | None = None
    partial_execution_targets: list[str] | None = None


class ErrorDetail(Strict):
    """One error, in ComfyUI's shape; ``extra_info`` names the input (ComfyUI's name) when there is one."""

    type: str
    message: str
    details: str
    extra_info: dict[str, Any] = Field(default_factory=dict)


class NodeErrors(Strict):
    """A node's errors and the output nodes they keep from running."""

    errors: list[ErrorDetail]
    dependent_outputs: list[str]
    class_type: str


class PromptQueued(Strict):
    """200 from POST /prompt. ``warnings`` (not ComfyUI's) names each request field gouache does not act on."""

    prompt_id: str
    number: int
    node_errors: dict[str, NodeErrors]
    warnings: list[str] = Field(default_factory=list)


class PromptRefused(Strict):
    """400 from POST /prompt: ComfyUI's ``error`` and ``node_errors``."""

    error: ErrorDetail
    node_errors: dict[str, NodeErrors]


class ComfyImage(Strict):
    """An image as ComfyUI names one: its file name, the subfolder it is in, and the folder's type."""

    filename: str
    subfolder: str
    type: FileType


class NodeOutput(Strict):
    """What ComfyUI lists of an output node: its images."""

    images: list[ComfyImage]


class PromptStatus(Strict):
    """How a finished prompt ended, with the messages its run sent (``[type, data]`` pairs)."""

    status_str: Literal["success", "error"]
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]


class HistoryEntry(Strict):
    """One finished prompt: ``prompt`` is ComfyUI's queue item ``[number, prompt_id, prompt, extra_data,
    outputs_to_execute]``."""

    prompt: tuple[int, str, dict[str, Any], dict[str, Any], list[str]]
    outputs: dict[str, NodeOutput]
    status: PromptStatus
    meta: dict[str, dict[str, Any]]


class QueueListing(Strict):
    """GET /queue: the running prompt and the pending ones, each a queue item."""

    queue_running: list[tuple[int, str, dict[str, Any], dict[str, Any], list[str]]]
    queue_pending: list[tuple[int, str, dict[str, Any], dict[str, Any], list[str]]]


class QueueRequest(Strict):
    """POST /queue: ``clear`` every pending prompt and/or ``delete`` some by id."""

    model_config = ConfigDict(extra="forbid", strict=True)

    clear: bool | None = None
    delete: list[str] | None = None


class InterruptRequest(Strict):
    """POST /interrupt (optional body): interrupt only if this prompt is the one running."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_id: str | None = None


class Uploaded(Strict):
    """POST /upload/image and /upload/mask: the name the file was stored under."""

    name: str
    subfolder: str
    type: FileType


class ObjectInfo(Strict):
    """One node class as ComfyUI's GET /object_info describes it (``input`` specs: ``[TYPE, {options}]``,
    or ``[[choices...], {options}]`` for a list)."""

    input: dict[str, dict[str, list[Any]]]
    input_order: dict[str, list[str]]
    output: list[str]
    output_is_list: list[bool]
    output_name: list[str]
    name: str
    display_name: str
    description: str
    python_module: str
    category: str
    output_node: bool


# ---- websocket (text frames: {"type", "data"}) ------------------------------------------------


class ExecInfo(Strict):
    queue_remaining: int


class QueueStatus(Strict):
    exec_info: ExecInfo


class StatusData(Strict):
    """The queue's length; ``sid`` only in the first message a connection gets (its client id)."""

    status: QueueStatus
    sid: str | None = None


class ExecutionStartData(Strict):
    prompt_id: str
    timestamp: int


class ExecutionCachedData(Strict):
    """Nodes whose outputs came from the cache. ComfyUI sends one before any node runs; gouache learns of
    a cached node as the run reaches it, so a node cached after others ran comes in a later message."""

    nodes: list[str]
    prompt_id: str
    timestamp: int


class ExecutingData(Strict):
    """A node began to run; ``node`` null: the prompt is done (whatever the outcome)."""

    node: str | None
    display_node: str | None
    prompt_id: str


class ProgressData(Strict):
    value: int
    max: int
    prompt_id: str
    node: str


class ExecutedData(Strict):
    """An output node wrote images (or, cached, stands for the images its cached run wrote)."""

    node: str
    display_node: str
    output: NodeOutput
    prompt_id: str


class ExecutionSuccessData(Strict):
    prompt_id: str
    timestamp: int


class ExecutionErrorData(Strict):
    """A node failed. ``exception_type`` is gouache's error code (``node_failed``, ``unknown_key``...);
    ``current_inputs`` and ``current_outputs`` are empty: gouache does not send values."""

    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, Any]
    current_outputs: dict[str, Any]
    timestamp: int


class ExecutionInterruptedData(Strict):
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]
    timestamp: int


MESSAGES: dict[str, type[Strict]] = {
    "status": StatusData, "execution_start": ExecutionStartData, "execution_cached": ExecutionCachedData,
    "executing": ExecutingData, "progress": ProgressData, "executed": ExecutedData,
    "execution_success": ExecutionSuccessData, "execution_error": ExecutionErrorData,
    "execution_interrupted": ExecutionInterruptedData,
}
"""The data model of each ComfyUI message type."""

PREVIEW_IMAGE = 1
"""Binary frame event type: ``>I 1``, then ``>I`` the image format (1 JPEG, 2 PNG), then the image."""
JPEG, PNG = 1, 2


def message(kind: str, data: Strict) -> dict[str, Any]:
    """``{"type": kind, "data": ...}`` with ``data`` checked to be ``kind``'s model."""
    if not isinstance(data, MESSAGES[kind]):
        raise TypeError(f"a {kind!r} message carries {MESSAGES[kind].__name__}, not {type(data).__name__}")
    return {"type": kind, "data": data.model_dump(mode="json", exclude_none=kind == "status")}
