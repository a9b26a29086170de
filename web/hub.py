"""Delivers run events to every websocket client: JSON text frames, previews as binary frames.

Progress and previews are throttled per node (at most one per ``interval`` seconds, and the last
one is always delivered before the node's next event). A client that (re)connects first gets a
``state`` message: the queue and the running run's state, so a reloaded page catches up.

Every node sends its own events, so a run of thousands of cached nodes makes thousands of
messages within milliseconds. Messages wait in each client's own backlog; whatever has piled up
while the previous frame was being sent goes out as one ``batch`` frame,
``{"type": "batch", "data": {"events": [MESSAGE, ...]}}``, the messages in the order they happened.
A client that reads as fast as it can therefore never falls behind by more than one frame; only a
client whose backlog passes :data:`CLIENT_BACKLOG_BYTES` (it stopped reading) is dropped.

Binary frame layout (previews)::

    byte 0      frame kind: 1 = latent preview JPEG
    bytes 1-2   N, the length of the node id in bytes (unsigned, big-endian)
    bytes 3..   the node id, UTF-8 (N bytes), then the JPEG image to the end of the frame
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gouache.engine import Event, jsonio
from gouache.engine.events import (
    EventData, FinishedData, NodeCachedData, NodeFinishedData, NodeStartedData, PreviewData, ProgressData,
    StartedData,
)

if TYPE_CHECKING:  # imported where used: a server's start needs none of the schemas (issue 18)
    from gouache.web.schemas import RunningData

log = logging.getLogger(__name__)

PREVIEW_FRAME = 1
CLIENT_BACKLOG_BYTES = 32 * 1024 * 1024
"""Bytes of messages a client may fall behind by before it is dropped (it reconnects and catches
up). A 5,000-node run sends about 1.4 MB of events."""
BATCH_BYTES = 1024 * 1024
"""A batch frame is closed once it holds this many bytes of messages (the next frame takes the rest)."""


def preview_frame(node: str, jpeg: bytes) -> bytes:
    """A binary websocket frame carrying a preview JPEG for ``node``."""
    name = node.encode("utf-8")
    return struct.pack(">BH", PREVIEW_FRAME, len(name)) + name + jpeg


def parse_preview_frame(frame: bytes) -> tuple[str, bytes]:
    """The node id and JPEG of a preview frame (the inverse of :func:`preview_frame`)."""
    kind, length = struct.unpack(">BH", frame[:3])
    if kind != PREVIEW_FRAME:
        raise ValueError(f"unknown binary frame kind {kind}")
    return frame[3 : 3 + length].decode("utf-8"), frame[3 + length :]


def batch_frame(messages: list[str]) -> str:
    """One text frame holding ``messages`` (each a JSON ``{"type", "data"}`` text) in order."""
    return '{"type": "batch", "data": {"events": [' + ", ".join(messages) + "]}}"


class Client:
    """One websocket connection with its own backlog, so a slow client delays nobody."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.backlog: deque[str | bytes] = deque()
        self.backlog_bytes = 0
        self._ready = asyncio.Event()

    def send(self, message: str | bytes) -> bool:
        """Queue a message; ``False`` when the client is too far behind."""
        self.backlog.append(message)
        self.backlog_bytes += len(message)
        self._ready.set()
        return self.backlog_bytes <= CLIENT_BACKLOG_BYTES

    def next_frame(self) -> str | bytes:
        """The next frame to send: a preview, one message, or a batch of the text messages waiting."""
        first = self.backlog.popleft()
        self.backlog_bytes -= len(first)
        if isinstance(first, bytes) or not self.backlog or isinstance(self.backlog[0], bytes):
            return first
        messages, size = [first], len(first)
        while self.backlog and isinstance(self.backlog[0], str) and size < BATCH_BYTES:
            message = self.backlog.popleft()
            self.backlog_bytes -= len(message)
            messages.append(message)
            size += len(message)
        return batch_frame(messages)

    async def pump(self) -> None:
        """Send what is queued, frame by frame, until the connection closes."""
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self.backlog:
                    if self.ws.closed:
                        return
                    frame = self.next_frame()
                    if isinstance(frame, bytes):
                        await self.ws.send_bytes(frame)
                    else:
                        await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError) as error:  # the client went away mid-send
            log.debug("websocket client gone: %s", error)


class Inbox:
    """Events handed over from any thread (the worker's) to one event loop.

    They wait in a list; the loop is woken once for all that arrive before it drains them (a run of
    cached nodes would otherwise wake it once per node), and each is passed to ``dispatch`` there.
    """

    def __init__(self, dispatch: Callable[[Event], None]) -> None:
        self.dispatch = dispatch
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def put(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``event`` and wake ``loop`` if it has nothing waiting yet (any thread)."""
        with self._lock:
            self._events.append(event)
            wake = len(self._events) == 1
        if wake:
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            self.dispatch(event)


class Hub:
    """Fan-out of events to websocket clients; all methods but :meth:`publish` run on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_snapshot: Callable[[], list[dict[str, Any]]],
                 interval: float = 0.1) -> None:
        self.loop = loop
        self.queue_snapshot = queue_snapshot
        self.interval = interval
        self.clients: set[Client] = set()
        self.running: RunningData | None = None
        self.preview: PreviewData | None = None
        """The running node's last preview, sent to a client that connects mid-run."""
        self._pending: dict[tuple[str, str], Event] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._inbox = Inbox(self._dispatch)

    def publish(self, event: Event) -> None:
        """Hand an event over from any thread (through an :class:`Inbox`)."""
        self._inbox.put(event, self.loop)

    def state(self) -> dict[str, Any]:
        """The ``state`` message a client gets on connecting."""
        from gouache.web.schemas import QueueEntry, StateData

        queue = [QueueEntry(run_id=run["run_id"], status=run["status"], position=run["position"],
                            created=run["created"]) for run in self.queue_snapshot()]
        return {"type": "state", "data": StateData(queue=queue, running=self.running).model_dump(mode="json")}

    def attach(self, ws: web.WebSocketResponse) -> Client:
        """Register a connected client and queue its catch-up messages first."""
        client = Client(ws)
        client.send(jsonio.dumps(self.state()))
        if self.running and self.preview:
            client.send(preview_frame(self.preview.node, self.preview.jpeg))
        self.clients.add(client)
        return client

    def detach(self, client: Client) -> None:
        """Forget a client that went away."""
        self.clients.discard(client)

    def _dispatch(self, event: Event) -> None:
        self._track(event.data)
        node = getattr(event.data, "node", None)
        if event.type in ("progress", "preview"):
            self._throttle((event.type, node), event)
            return
        if node is not None:
            # The last progress and preview of a node always arrive before what follows them.
            self._flush(("progress", node))
            self._flush(("preview", node))
        if event.type == "finished":
            for key in list(self._pending):
                self._flush(key)
            self._last.clear()
        self._broadcast(event)

    def _track(self, data: EventData) -> None:
        if isinstance(data, StartedData):
            from gouache.web.schemas import RunningData

            self.running, self.preview = RunningData(run_id=data.run_id, nodes=data.nodes), None
            return
        running = self.running
        if running is None or data.run_id != running.run_id:
            return
        match data:
            case NodeStartedData():
                running.node, running.progress = data.node, None
            case ProgressData():
                running.node, running.progress = data.node, {"value": data.value, "max": data.max}
            case PreviewData():
                self.preview = data
            case NodeCachedData():
                running.cached.append(data.node)
                if data.images:
                    running.images[data.node] = list(data.images)
            case NodeFinishedData():
                running.executed.append(data.node)
                if data.images:
                    running.images[data.node] = list(data.images)
                running.node, running.progress, self.preview = None, None, None
            case FinishedData():
                self.running, self.preview = None, None

    def _throttle(self, key: tuple[str, str], event: Event) -> None:
        self._pending[key] = event
        now = self.loop.time()
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            self._flush(key)
        elif key not in self._timers:
            self._timers[key] = self.loop.call_at(last + self.interval, self._flush, key)

    def _flush(self, key: tuple[str, str]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        event = self._pending.pop(key, None)
        if event is None:
            return
        self._last[key] = self.loop.time()
        self._broadcast(event)

    def _broadcast(self, event: Event) -> None:
        if not self.clients:
            return
        data = event.data
        if isinstance(data, PreviewData):
            message: str | bytes = preview_frame(data.node, data.jpeg)
        else:
            message = jsonio.dumps({"type": event.type, "data": data.model_dump(mode="json")})
        for client in list(self.clients):
            if not client.send(message):
                log.warning("dropping a websocket client that fell %d bytes behind", client.backlog_bytes)
                self.clients.discard(client)
                self.loop.create_task(client.ws.close(code=1013, message=b"too slow; reconnect"))
