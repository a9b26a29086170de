"""Run events, one pydantic model per event type, and the bus that delivers them to subscribers.

Subscribers (the CLI's progress bar, the web server's websocket, tests) receive an :class:`Event`:
its ``type`` and its typed ``data``. The models below are the only definition of each event's
fields: the web layer publishes their JSON Schemas and checks what it sends against them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

ImageKind = Literal["output", "input", "temp"]
RunOutcome = Literal["succeeded", "failed", "interrupted"]


class ImageRef(BaseModel):
    """A file a node wrote, relative to the folder of its kind (served at /api/files/{kind}/{path})."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    kind: ImageKind
    path: str


class EventData(BaseModel):
    """What one event says: the run it belongs to and this event's own facts, never run state.

    A subclass sets ``event_type``; building one checks its fields, so a misspelt or missing field
    fails where the event is emitted. Validators are built with a type's first event, not at import
    (``defer_build``: a server that has run nothing needs none of them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    event_type: ClassVar[str]
    run_id: str

    def __getitem__(self, name: str) -> Any:
        """A field by name, for code that reads events as it reads their JSON (``data["node"]``)."""
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)


class QueuedData(EventData):
    """A run joined the queue (sent by the server, which owns the queue)."""

    event_type = "queued"
    position: int = Field(description="runs ahead of it")


class StartedData(EventData):
    """A run started."""

    event_type = "started"
    nodes: list[str] = Field(description="the nodes this run will visit, in order")


class NodeStartedData(EventData):
    """A node began to run (it was not in the cache)."""

    event_type = "node_started"
    node: str
    type: str = Field(description="the node's type name")


class ProgressData(EventData):
    """Step ``value`` of ``max`` of the running node (a sampler reports every step)."""

    event_type = "progress"
    node: str
    value: int
    max: int


class PreviewData(EventData):
    """A small JPEG of the running node's work in progress (a binary frame on the websocket)."""

    event_type = "preview"
    node: str
    jpeg: bytes


class NodeCachedData(EventData):
    """A node's outputs came from the cache; it did not run. ``images``: the files its cached run wrote,
    so a fully cached run still shows every image it stands for."""

    event_type = "node_cached"
    node: str
    images: list[ImageRef] = Field(default_factory=list, description="files the cached run wrote")


class NodeFinishedData(EventData):
    """A node ran and returned its outputs."""

    event_type = "node_finished"
    node: str
    seconds: float
    images: list[ImageRef] = Field(description="files the node wrote")


class NodeErrorData(EventData):
    """A node failed: the fields of :class:`~gouache.engine.problems.NodeError` and the run id."""

    event_type = "node_error"
    node: str
    type: str = Field(description="the node's type name")
    message: str
    traceback: str
    input: str | None = Field(description="the input the failure is about, when the node named one")
    code: str


class InterruptedData(EventData):
    """The run stopped because someone asked it to, in or before ``node``."""

    event_type = "interrupted"
    node: str


class FinishedData(EventData):
    """A run ended; always the run's last event."""

    event_type = "finished"
    status: RunOutcome
    seconds: float
    executed: int = Field(description="how many nodes ran")
    cached: int = Field(description="how many nodes came from the cache")


RUN_EVENTS: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (QueuedData, StartedData, NodeStartedData, ProgressData, PreviewData, NodeCachedData,
                  NodeFinishedData, NodeErrorData, InterruptedData, FinishedData)
}
"""Every event of a run, by type, in the order a run may send them."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a run: the event's type and its data."""

    data: EventData

    @property
    def type(self) -> str:
        """The event type, e.g. ``progress``."""
        return self.data.event_type


Subscriber = Callable[[Event], None]
E = TypeVar("E", bound=EventData)


@dataclass
class EventBus:
    """Delivers each event to every subscriber; a failing subscriber is logged, never fatal."""

    _subscribers: list[Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers = [*self._subscribers, subscriber]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not subscriber]

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether anyone listens (lets callers skip building event data)."""
        return bool(self._subscribers)

    def emit(self, kind: type[E], /, **fields: Any) -> None:
        """Build a ``kind`` event from ``fields`` and deliver it; nothing is built when nobody listens.

        Raises ``pydantic.ValidationError`` when a field is missing, unknown or of the wrong type.
        """
        if self._subscribers:
            self.publish(kind(**fields))

    def publish(self, data: EventData) -> None:
        """Deliver an event already built to every subscriber."""
        subscribers = self._subscribers
        if not subscribers:
            return
        event = Event(data)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.type)
