"""ComfyUI's HTTP and websocket API on ``gouache serve``, beside gouache's own (``docs/api.md``).

Scripts written for ComfyUI queue API-format prompts (``POST /prompt``), wait on ``/ws?clientId=``,
read ``/history`` and fetch images from ``/view``; here the prompt is read by the pack's ComfyUI
importer into a ``gouache/1`` workflow (ids kept), validated, and queued in gouache's one run queue,
so it runs, is listed and can be cancelled like any other run. The same security middleware guards
these routes as gouache's own (Host, Origin, token), and files are resolved by the same safe paths.

The server registers the routes at its start but imports and starts the API (:mod:`.api`: its
messages, prompt table and relay) on the first ComfyUI request, so that a server no ComfyUI client
talks to does not pay for them (issue 18: `gouache serve`'s start).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gouache.web.comfy.api import ComfyApi
    from gouache.web.server import State

ROUTES: tuple[tuple[str, str, str], ...] = (  # GET or POST
    ("POST", "/prompt", "post_prompt"),
    ("GET", "/prompt", "get_prompt"),
    ("GET", "/history", "get_history"),
    ("GET", "/history/{prompt_id}", "get_history_entry"),
    ("GET", "/queue", "get_queue"),
    ("POST", "/queue", "post_queue"),
    ("POST", "/interrupt", "post_interrupt"),
    ("GET", "/view", "get_view"),
    ("POST", "/upload/image", "upload_image"),
    ("POST", "/upload/mask", "upload_mask"),
    ("GET", "/object_info", "get_object_info"),
    ("GET", "/object_info/{node_class}", "get_object_info"),
    ("GET", "/system_stats", "get_system_stats"),
    ("GET", "/embeddings", "get_embeddings"),
    ("GET", "/models", "get_model_folders"),
    ("GET", "/models/{folder}", "get_models"),
)
"""ComfyUI's routes: method, path and the :class:`~gouache.web.comfy.api.ComfyApi` method that answers."""


class ComfyRoutes:
    """ComfyUI's routes on an app; the :class:`~gouache.web.comfy.api.ComfyApi` behind them is made on
    the first ComfyUI request (or at :meth:`start` when runs are already queued).

    Everything but :meth:`publish` runs on the event loop, so the API is made once without a lock;
    :meth:`publish` (the worker's thread) sees either no API yet or a started one.
    """

    def __init__(self, app: web.Application) -> None:
        self._state: State | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: ComfyApi | None = None
        app[COMFY] = self
        for method, path, name in ROUTES:  # add_get answers HEAD too, as aiohttp's GET routes do
            add = app.router.add_get if method == "GET" else app.router.add_post
            add(path, self._handler(name))

    def _handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await getattr(self.api(), name)(request)
        handle.__name__ = handle.__qualname__ = name
        return handle

    def start(self, state: State, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the server's state when it starts. Runs left queued by the last process may be
        ComfyUI prompts whose clients wait for their messages: then the API starts now, to relay them."""
        self._state, self._loop = state, loop
        if state.store is not None and state.store.queue():
            self.api()

    @property
    def started(self) -> bool:
        """Whether the API has been made (and its prompt table opened)."""
        return self._api is not None

    def api(self) -> ComfyApi:
        """The started API, made on first use (on the event loop, after :meth:`start`)."""
        if self._api is None:
            if self._state is None or self._loop is None:
                raise RuntimeError("ComfyUI's API is used before the server has started")
            from gouache.web.comfy.api import ComfyApi

            api = ComfyApi()
            api.start(self._state, self._loop)
            self._api = api  # published last: the worker's thread sees no API or a started one
        return self._api

    def publish(self, event: Any) -> None:
        """The worker's events (any thread), for ComfyUI's websocket clients once the API has started."""
        api = self._api
        if api is not None:
            api.publish(event)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``/ws?clientId=ID``: ComfyUI's websocket."""
        return await self.api().relay.websocket(request)

    async def stop(self) -> None:
        """Close ComfyUI websocket connections and the prompt table, if the API was started."""
        if self._api is not None:
            await self._api.stop()


COMFY = web.AppKey("gouache-comfy", ComfyRoutes)

__all__ = ["COMFY", "ROUTES", "ComfyRoutes"]
