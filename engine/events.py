"""Run events and the bus that delivers them to subscribers (CLI progress, websocket, tests)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "queued", "started", "node_started", "progress", "preview", "node_cached",
    "node_finished", "node_error", "finished", "interrupted",
)


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run. ``data`` holds only this event's facts, never run state."""

    type: str
    data: dict[str, Any]


Subscriber = Callable[[Event], None]


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

    def emit(self, event_type: str, /, **data: Any) -> None:
        """Deliver an event to every subscriber."""
        subscribers = self._subscribers
        if not subscribers:
            return
        event = Event(event_type, data)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event_type)
