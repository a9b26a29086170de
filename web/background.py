"""Run the server on a free port in a background thread: for tests, benchmarks and embedding."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from gouache.engine import Engine

from gouache.web.server import STATE, State, create_app


class BackgroundServer:
    """``with BackgroundServer(engine) as server: server.url`` serves ``engine`` until the block ends."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.app = create_app(engine, **options)
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app, handle_signals=False)
        self._thread = threading.Thread(target=self._serve, name="gouache-server", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> State:
        """The running app's shared state (store, worker, hub)."""
        return self.app[STATE]

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # the port the OS chose for port 0
        except BaseException as error:  # reported to the starting thread
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> BackgroundServer:
        """Start serving; returns once the port is open."""
        self._thread.start()
        self._ready.wait(60)
        if self._failure is not None:
            raise RuntimeError(f"the server did not start: {self._failure}") from self._failure
        return self

    def stop(self) -> None:
        """Stop serving and wait for the worker to finish."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(60)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
