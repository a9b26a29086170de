"""ComfyUI's websocket, ``/ws?clientId=ID``: run events told in ComfyUI's messages to the client that
queued the prompt, and the queue's length (``status``) to every ComfyUI client.

The relay gets the same events as gouache's own hub, from the same worker (a run's ``finished``
comes once its record is stored, so a client that reads /history on ``executing`` with ``node``
null finds the prompt there). A run queued through gouache's own API sends ComfyUI clients only
``status``; a prompt queued without a ``client_id`` sends nobody its messages (as in ComfyUI).

Previews are binary frames in ComfyUI's layout: ``>I`` 1 (preview image), ``>I`` 1 (JPEG), the JPEG.
Each client has gouache's websocket backlog (``hub.Client``): one that falls 32 MiB behind is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gouache.engine import Event, jsonio

from gouache.web.comfy.messages import (
    JPEG, PREVIEW_IMAGE, ExecInfo, ExecutedData, ExecutingData, ExecutionCachedData, ExecutionStartData,
    ExecutionSuccessData, ProgressData, QueueStatus, StatusData, Strict, message,
)
from gouache.web.comfy.prompts import ComfyPrompt, PromptTable
from gouache.web.comfy.translate import error_data, interrupted_data, millis, node_output
from gouache.web.hub import Client, Inbox

log = logging.getLogger(__name__)


def preview_frame(jpeg: bytes) -> bytes:
    """A binary frame carrying a preview JPEG, laid out as ComfyUI's."""
    return struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg


class Socket(Client):
    """One ComfyUI websocket connection: gouache's client backlog (a slow client delays nobody), one
    message per frame (ComfyUI's clients know no ``batch``)."""

    def next_frame(self) -> str | bytes:
        """The oldest frame waiting."""
        frame = self.backlog.popleft()
        self.backlog_bytes -= len(frame)
        return frame


@dataclass
class Running:
    """What the relay remembers of a prompt while it runs."""

    prompt: ComfyPrompt
    node: str | None = None
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    """Cached nodes not yet announced (one ``execution_cached`` for those seen before the next node runs)."""
    ended: bool = False
    """An ``execution_error`` or ``execution_interrupted`` was sent."""


class Relay:
    """ComfyUI websocket clients by client id, and the prompts running; all but :meth:`publish` run on the loop."""

    def __init__(self, prompts: PromptTable, queue_length: Callable[[], int],
                 run_error: Callable[[str], dict[str, Any] | None], ws_message_bytes: int) -> None:
        self.prompts = prompts
        self.queue_length = queue_length
        self.run_error = run_error
        self.ws_message_bytes = ws_message_bytes
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sockets: dict[str, Socket] = {}
        self.running: dict[str, Running] = {}
        self._inbox = Inbox(self._dispatch_safely)
        self._status_due = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events on ``loop`` from now on."""
        self.loop = loop

    async def close(self) -> None:
        """Close every connection (the server is stopping)."""
        for socket in list(self.sockets.values()):
            await socket.ws.close(code=1001, message=b"server shutting down")

    def publish(self, event: Event) -> None:
        """Hand an event over from any thread (the worker's)."""
        if self.loop is None:
            return
        self._inbox.put(event, self.loop)

    def _dispatch_safely(self, event: Event) -> None:
        try:
            self._dispatch(event)
        except Exception:  # one bad event must not silence the rest
            log.exception("ComfyUI relay failed on %s", event.type)
        if self._status_due:  # one status for all the queue changes drained at once (a sweep queues thousands)
            self._status_due = False
            self._broadcast_status()

    # ---- connections ---------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``/ws?clientId=ID``: ComfyUI's protocol (server -> client; what clients send is ignored)."""
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.ws_message_bytes)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        socket = Socket(ws)
        self.sockets[sid] = socket  # a client reconnecting with its id replaces its old connection
        socket.send(self._text("status", self._status(sid)))
        for run in self.running.values():
            if run.prompt.client_id == sid and run.node is not None:
                socket.send(self._text("executing", ExecutingData(node=run.node, display_node=run.node,
                                                                  prompt_id=run.prompt.prompt_id)))
        pump = asyncio.create_task(socket.pump())
        try:
            async for _message in ws:
                pass
        finally:
            if self.sockets.get(sid) is socket:
                del self.sockets[sid]
            pump.cancel()
        return ws

    def _status(self, sid: str | None = None) -> StatusData:
        return StatusData(status=QueueStatus(exec_info=ExecInfo(queue_remaining=self.queue_length())), sid=sid)

    @staticmethod
    def _text(kind: str, data: Strict) -> str:
        return jsonio.dumps(message(kind, data))

    def _send(self, client_id: str | None, frame: str | bytes) -> None:
        socket = self.sockets.get(client_id) if client_id is not None else None
        if socket is not None and not socket.send(frame):
            log.warning("dropping a ComfyUI websocket client that fell %d bytes behind", socket.backlog_bytes)
            del self.sockets[client_id]
            asyncio.ensure_future(socket.ws.close(code=1013, message=b"too slow; reconnect"))

    def _broadcast_status(self) -> None:
        if self.sockets:
            frame = self._text("status", self._status())
            for client_id in list(self.sockets):
                self._send(client_id, frame)

    # ---- events --------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        data = event.data
        if event.type in ("queued", "cancelled"):
            self._status_due = True
            return
        if event.type == "started":
            prompt = self.prompts.get(data.run_id)
            if prompt is not None:
                self.running[data.run_id] = Running(prompt)
                self._tell(self.running[data.run_id], "execution_start",
                           ExecutionStartData(prompt_id=data.run_id, timestamp=millis(None)))
            return
        run = self.running.get(data.run_id)
        if run is None:
            self._status_due = self._status_due or event.type == "finished"
            return
        prompt_id = run.prompt.prompt_id
        match event.type:
            case "node_cached":
                run.cached.append(data.node)
                images = list(getattr(data, "images", None) or [])
                if images:
                    self._announce_cached(run)
                    self._tell(run, "executed", ExecutedData(node=data.node, display_node=data.node,
                                                             output=node_output(images), prompt_id=prompt_id))
            case "node_started":
                self._announce_cached(run)
                run.node = data.node
                self._tell(run, "executing", ExecutingData(node=data.node, display_node=data.node, prompt_id=prompt_id))
            case "progress":
                self._tell(run, "progress", ProgressData(value=data.value, max=data.max, prompt_id=prompt_id,
                                                         node=data.node))
            case "preview":
                self._send(run.prompt.client_id, preview_frame(data.jpeg))
            case "node_finished":
                run.executed.append(data.node)
                run.node = None
                if data.images:
                    self._tell(run, "executed", ExecutedData(node=data.node, display_node=data.node,
                                                             output=node_output(list(data.images)), prompt_id=prompt_id))
            case "node_error":
                run.ended = True
                self._tell(run, "execution_error", error_data(run.prompt, data.model_dump(), run.executed, millis(None)))
            case "interrupted":
                run.ended = True
                self._tell(run, "execution_interrupted", interrupted_data(run.prompt, data.node, run.executed,
                                                                          millis(None)))
            case "finished":
                self._finish(run, data.status)

    def _announce_cached(self, run: Running) -> None:
        if run.cached:
            self._tell(run, "execution_cached", ExecutionCachedData(nodes=run.cached, prompt_id=run.prompt.prompt_id,
                                                                    timestamp=millis(None)))
            run.cached = []

    def _finish(self, run: Running, status: str) -> None:
        prompt_id = run.prompt.prompt_id
        self._announce_cached(run)
        if status == "succeeded":
            self._tell(run, "execution_success", ExecutionSuccessData(prompt_id=prompt_id, timestamp=millis(None)))
        elif not run.ended and status == "interrupted":
            self._tell(run, "execution_interrupted", interrupted_data(run.prompt, None, run.executed, millis(None)))
        elif not run.ended:  # failed outside any node (the workflow no longer validates, an internal error)
            error = self.run_error(prompt_id) or {"message": f"the run {status}", "code": status}
            self._tell(run, "execution_error", error_data(run.prompt, error, run.executed, millis(None)))
        self._tell(run, "executing", ExecutingData(node=None, display_node=None, prompt_id=prompt_id))
        del self.running[prompt_id]
        self._status_due = True

    def _tell(self, run: Running, kind: str, data: Strict) -> None:
        self._send(run.prompt.client_id, self._text(kind, data))
