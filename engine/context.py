"""What a running node may reach: progress, previews, interruption, files, settings, shared resources."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gouache.engine.events import EventBus, PreviewData, ProgressData
from gouache.engine.model_index import ModelIndex
from gouache.engine.settings import Settings
from gouache.engine.workflow import Workflow

T = TypeVar("T")


class Interrupted(Exception):
    """Raised inside a run when someone asked it to stop; the run ends as ``interrupted``."""


_RUNNING: ContextVar[RunContext | None] = ContextVar("gouache_running_node", default=None)


def running_context() -> RunContext | None:
    """The context of the node running in this thread, ``None`` outside a node's ``run``.

    For code deep inside a node's work that is handed no context (a model file's loader) to call
    ``check_interrupt`` between long steps.
    """
    return _RUNNING.get()


@dataclass
class Resources:
    """Long-lived objects packs share across runs (a model manager), created on first use."""

    _items: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str, factory: Callable[[], T]) -> T:
        """The object under ``key``, made by ``factory`` the first time."""
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]


@dataclass
class RunContext:
    """Handed to ``Node.run``: everything a node may touch beyond its inputs."""

    run_id: str
    node_id: str
    node_type: str
    settings: Settings
    models: ModelIndex
    resources: Resources
    workflow: Workflow
    """The workflow being run (overrides applied), e.g. for embedding in saved images."""
    _bus: EventBus
    _stop: threading.Event
    images: list[dict[str, str]] = field(default_factory=list)

    def check_interrupt(self) -> None:
        """Raise :class:`Interrupted` if the run should stop; call it between long steps."""
        if self._stop.is_set():
            raise Interrupted(f"interrupted in node {self.node_id!r}")

    def progress(self, value: int, total: int) -> None:
        """Report step ``value`` of ``total``, and stop here if interrupted."""
        self._bus.emit(ProgressData, run_id=self.run_id, node=self.node_id, value=value, max=total)
        self.check_interrupt()

    @property
    def wants_previews(self) -> bool:
        """Whether anyone listens for previews (skip making them otherwise)."""
        return self._bus.active

    def preview(self, jpeg: bytes) -> None:
        """Offer a small JPEG preview of work in progress."""
        self._bus.emit(PreviewData, run_id=self.run_id, node=self.node_id, jpeg=jpeg)

    def add_image(self, kind: str, path: Path) -> dict[str, str]:
        """Record an image this node wrote under the ``kind`` folder (output, temp, input)."""
        relative = Path(path).resolve().relative_to(self.settings.folder(kind).resolve()).as_posix()
        image = {"kind": kind, "path": relative}
        self.images.append(image)
        return image
