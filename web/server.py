"""The aiohttp server: the editor's static files, the REST API, the websocket, and ``gouache serve``.

Node types come only from ``engine.registry``: a pack's nodes appear here with no code of ours.
Runs are queued in SQLite (:mod:`gouache.web.store`) and run one at a time by a worker thread
(:mod:`gouache.web.worker`), so the event loop answers requests while a model samples.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import ipaddress
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError
from yarl import URL

from gouache.engine import Engine, Event, Problem, jsonio, sweep
from gouache.engine.workflow import apply_overrides, parse

from gouache.web.bodies import Refused, check_announced, json_body, read_body, too_large, unreadable
from gouache.web.comfy import COMFY, ComfyRoutes
from gouache.web.files import UploadRejected, check_image, clean_name, file_response, safe_path, store_upload
from gouache.web.hub import Hub
from gouache.web.store import RunStore, StoredRunError
from gouache.web.worker import Worker
from gouache.web.workflows import (
    StoredWorkflowError, WorkflowLibrary, WorkflowNameError, check_name, shipped_folder,
)

if TYPE_CHECKING:  # imported where used: a server's start needs none of the schemas (issue 18)
    from gouache.web.schemas import RunRequest

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FILE_KINDS = ("output", "input", "temp")
TOKEN_COOKIE = "gouache_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Limits:
    """Size limits on what clients send."""

    json_bytes: int = 8 * 1024 * 1024
    upload_bytes: int = 32 * 1024 * 1024
    ws_message_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Security:
    """Who may talk to the server: the bound host, extra allowed origins, an optional token."""

    host: str = "127.0.0.1"
    allow_origins: tuple[str, ...] = ()
    token: str | None = None

    @functools.cached_property
    def loopback(self) -> bool:
        """Whether the server listens on the loopback interface only."""
        return is_loopback(self.host)


@dataclass
class State:
    """Everything the handlers share, created when the app starts."""

    engine: Engine
    security: Security
    limits: Limits
    library: WorkflowLibrary
    store: RunStore | None = None
    hub: Hub | None = None
    worker: Worker | None = None
    extras: dict[str, Any] = field(default_factory=dict)


STATE = web.AppKey("gouache", State)
WorkerFactory = Callable[[Engine, RunStore, Callable[[Event], None]], Any]
"""Makes the object that runs queued runs: :class:`Worker`'s interface (start, stop, check, choices, submit,
cancel, emit)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON response written strictly (NaN or Infinity is an error, never sent as such)."""
    return web.json_response(data, status=status, dumps=jsonio.dumps)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status=status)


def _problems(problems: list[Problem]) -> web.Response:
    return _json({"problems": [problem.to_json() for problem in problems]}, status=400)


# ---- middlewares ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _hostname(host_header: str | None) -> str:
    try:
        return (URL(f"http://{host_header or ''}").host or "").lower()
    except ValueError:
        return ""


def _origin_allowed(request: web.Request, security: Security, origin: str) -> bool:
    if origin in security.allow_origins:
        return True
    own = f"{request.scheme}://{request.host}"
    return origin.lower() == own.lower()


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Host, token and Origin checks, then security headers on every response."""
    state = request.app[STATE]
    security = state.security
    # A page on another site can make a browser send requests here (DNS rebinding included):
    # when bound to loopback, only loopback host names are answered.
    if security.loopback and _hostname(request.host) not in LOOPBACK_NAMES:
        return _error(403, f"unexpected Host header {request.host!r}; open the editor at http://127.0.0.1")
    origin = request.headers.get("Origin")
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if origin is not None and (request.method not in SAFE_METHODS or upgrade):
        if not _origin_allowed(request, security, origin):
            return _error(403, f"requests from origin {origin!r} are refused; start the server with "
                               f"--allow-origin {origin} to allow them")
    preflight = request.method == "OPTIONS" and origin is not None and origin in security.allow_origins
    if security.token is not None and not preflight:  # a CORS preflight never carries credentials
        if request.method == "GET" and request.path == "/" and "token" in request.query:
            return _login(request, security.token)
        if not _authorised(request, security.token):
            return _error(401, "this server needs a token: send 'Authorization: Bearer TOKEN', "
                               "or open /?token=TOKEN once in the browser")
    if preflight:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    else:
        try:
            response = await handler(request)
        except Refused as refused:
            response = _error(refused.status, refused.message, **refused.extra)
        except web.HTTPException as error:
            if error.status < 400 or not request.path.startswith("/api/"):
                raise
            response = _error(error.status, _http_message(request, error))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as failure:  # a bug: still answer JSON that says what broke, and log it
            if not request.path.startswith("/api/"):
                raise
            log.exception("%s %s failed", request.method, request.path)
            response = _error(500, f"internal error: {type(failure).__name__}: {failure}")
    if not response.prepared:  # a websocket has sent its headers already
        if origin is not None and origin in security.allow_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", CSP)
    return response


def _http_message(request: web.Request, error: web.HTTPException) -> str:
    """What aiohttp's own refusals (no such route, wrong method) mean, in a sentence."""
    if error.status == 404:
        return f"no API route {request.path!r}; docs/api.md lists them"
    if error.status == 405:
        allowed = ", ".join(sorted(getattr(error, "allowed_methods", ()) or ()))
        return f"{request.method} is not allowed on {request.path!r}" + (f"; use {allowed}" if allowed else "")
    return error.reason or f"HTTP {error.status}"


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _login(request: web.Request, token: str) -> web.StreamResponse:
    if not hmac.compare_digest(request.query["token"].encode(), token.encode()):
        return _error(401, "wrong token")
    response = web.Response(status=302, headers={"Location": "/"})
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure)
    return response


# ---- handlers -------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(STATIC / "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


async def static_file(request: web.Request) -> web.StreamResponse:
    path = safe_path(STATIC, request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    response = file_response(path, scripts=True)
    response.headers["Cache-Control"] = "no-cache"
    return response


def nodes_payload(engine: Engine, choices_for: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """The registry as GET /api/nodes publishes it, with model choices resolved now.

    ``choices_for(kind)``: the models a run here may choose (the worker's :meth:`Worker.choices`);
    default the engine's own.
    """
    nodes = []
    for info in engine.registry.infos():
        data = info.model_dump(mode="json")
        for spec in data["inputs"]:
            if spec.get("choices_from"):
                spec["choices"] = (choices_for or engine.models.names)(spec["choices_from"])
        nodes.append(data)
    types = [{"name": t.name, "color": t.color, "converts_to": list(t.converts_to), "description": t.description}
             for t in engine.registry.types.all()]
    categories = sorted({node["category"] for node in nodes})
    packs = [report.to_json() for report in engine.packs]
    return {"nodes": nodes, "categories": categories, "types": types, "packs": packs}


async def get_nodes(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json(await asyncio.to_thread(nodes_payload, state.engine, state.worker.choices))


async def get_models(request: web.Request) -> web.Response:
    engine = request.app[STATE].engine
    listing = await asyncio.to_thread(engine.models.as_json)
    return web.json_response(listing, dumps=lambda value: jsonio.dumps(value, default=str))


async def _json_body(request: web.Request) -> Any:
    return await json_body(request, request.app[STATE].limits.json_bytes)


async def post_run(request: web.Request) -> web.Response:
    from gouache.web.schemas import RunRequest

    state = request.app[STATE]
    try:
        body = RunRequest.model_validate(await _json_body(request))
    except ValidationError as error:
        problems = [Problem(None, None, "invalid_request",
                            f"{'.'.join(map(str, detail['loc'])) or 'body'}: {detail['msg']}")
                    for detail in error.errors()]
        return _problems(problems)
    # One hop to a thread for both validation and queueing (a hop costs about 60 us here): a large
    # workflow, or listing a big model folder for a choice, must not hold the event loop.
    queued = await asyncio.to_thread(_queue_run, state, body)
    if isinstance(queued, list):
        return _problems(queued)
    return _json(queued, status=202)


def _queue_run(state: State, body: RunRequest) -> dict[str, Any] | list[Problem]:
    if body.sweep is not None:
        return _queue_sweep(state, body)
    valid, problems = state.worker.check(body.workflow, None, body.outputs)
    if valid is None:
        return problems
    run_id = uuid.uuid4().hex
    position = state.worker.submit(run_id, body.workflow, body.outputs, valid)
    return {"run_id": run_id, "position": position}


def _queue_sweep(state: State, body: RunRequest) -> dict[str, Any] | list[Problem]:
    """Every run of a sweep validated first; all of them queued, or none (the first invalid one's problems)."""
    registry = state.engine.registry
    try:
        axes = [sweep.axis(target, spec) for target, spec in (body.sweep or {}).items()]
        found = sweep.points(axes, body.workflow, registry, zipped=body.zip)
    except sweep.SweepError as error:
        return [Problem(None, None, "invalid_sweep", str(error))]
    if not found:
        return [Problem(None, None, "invalid_sweep", "the sweep names no input; send {\"NODE.INPUT\": [values]}")]
    prepared = []
    for point in found:
        overrides = sweep.run_overrides(body.workflow, registry, point)
        valid, problems = state.worker.check(body.workflow, overrides, body.outputs)
        if valid is None:
            shown = ", ".join(f"{target}={jsonio.shorten(value)}" for target, value in point.items())
            return [Problem(p.node, p.input, p.code, f"with {shown}: {p.message}") for p in problems]
        prepared.append((point, apply_overrides(body.workflow, overrides)[0], valid))
    runs = []
    for point, workflow, valid in prepared:
        run_id = uuid.uuid4().hex
        position = state.worker.submit(run_id, workflow, body.outputs, valid)
        runs.append({"run_id": run_id, "position": position, "values": point})
    return {"runs": runs}


def _int_query(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(400, f"?{name}= must be an integer, not {jsonio.shorten(raw)}") from None
    return max(low, min(high, value))


async def list_runs(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    limit = _int_query(request, "limit", 20, 1, 200)
    before = _int_query(request, "before", None, 0, 2**62)
    try:
        history, next_before = store.history(limit, before)
        queue = store.queue()
    except StoredRunError as error:
        return _error(409, str(error))
    return _json({"queue": queue, "history": history, "next_before": next_before})


async def get_run(request: web.Request) -> web.Response:
    store = request.app[STATE].store
    try:
        record = store.get(request.match_info["run_id"], with_workflow=request.query.get("workflow") == "1")
    except StoredRunError as error:
        return _error(409, str(error))
    if record is None:
        return _error(404, f"no run {jsonio.shorten(request.match_info['run_id'])}")
    return _json(record)


async def delete_run(request: web.Request) -> web.Response:
    state = request.app[STATE]
    run_id = request.match_info["run_id"]
    outcome = await asyncio.to_thread(state.worker.cancel, run_id)
    if outcome is None:
        record = state.store.get(run_id)
        if record is None:
            return _error(404, f"no run {jsonio.shorten(run_id)}")
        return _error(409, f"run {run_id!r} has already {record['status']}", run_status=record["status"])
    return _json({"run_id": run_id, "status": outcome}, status=202 if outcome == "interrupting" else 200)


async def get_file(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    if kind not in FILE_KINDS:
        return _error(404, f"unknown file kind {jsonio.shorten(kind)}; use output, input or temp")
    folder = request.app[STATE].engine.settings.folder(kind)
    path = safe_path(folder, request.match_info["path"])
    if path is None:
        return _error(404, "no such file")
    return file_response(path)


MULTIPART_OVERHEAD = 64 * 1024
"""Room for boundaries and part headers around an image of the largest size accepted."""


async def upload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    limit = state.limits.upload_bytes
    # Refused on its headers alone: a client announcing 200 MiB is told before it sends them.
    check_announced(request, limit, "the upload", MULTIPART_OVERHEAD)
    if not request.content_type.startswith("multipart/"):
        return _error(415, "send the image as multipart/form-data in a field named 'image'")
    try:
        return await _receive_upload(state, await request.multipart(), limit)
    except (ValueError, LookupError, HttpProcessingError, RequestPayloadError) as error:  # a malformed multipart body
        return _error(400, f"cannot read the multipart body: {unreadable(error)}")


async def _receive_upload(state: State, reader: Any, limit: int) -> web.Response:
    while (part := await reader.next()) is not None:
        if getattr(part, "name", None) != "image" or not getattr(part, "filename", None):
            continue
        announced = part.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > limit:
            raise too_large("the image", int(announced), limit)
        data = bytearray()
        while chunk := await part.read_chunk(256 * 1024):
            data += chunk
            if len(data) > limit:
                raise too_large("the image", None, limit)
        try:
            extension = await asyncio.to_thread(check_image, bytes(data))
        except UploadRejected as rejected:
            return _error(415, str(rejected))
        folder = state.engine.settings.folder("input")
        name = await asyncio.to_thread(store_upload, folder, clean_name(part.filename, extension), bytes(data))
        return _json({"name": name, "kind": "input", "path": name}, status=201)
    return _error(400, "no file in a multipart field named 'image'")


async def post_import(request: web.Request) -> web.Response:
    """A ComfyUI or A1111 file's bytes (JSON, or a PNG carrying one) converted to ``gouache/1`` for the editor."""
    state = request.app[STATE]
    data = await read_body(request, state.limits.upload_bytes)
    workflow, problems = await asyncio.to_thread(_import, state, data)
    if workflow is None:
        return _problems(problems)
    return _json({"workflow": workflow, "problems": [problem.to_json() for problem in problems]})


def _import(state: State, data: bytes) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The converted workflow (``None`` if nothing converted), the conversion's problems, then validation's."""
    workflow, problems, _ = state.engine.convert(data, validate=False)
    if workflow is None:
        return None, problems
    _, warnings = state.worker.check(workflow)  # against the models the runs will have
    return workflow, problems + warnings


def save_prefixes(engine: Engine, workflow: dict[str, Any]) -> list[str]:
    """The file-name prefixes a workflow's output nodes write under: each output node's STRING inputs
    named ``...prefix`` (SaveImage's ``filename_prefix``), as set or by default."""
    found = []
    nodes = workflow.get("nodes")
    for entry in nodes.values() if isinstance(nodes, dict) else ():
        node_class = engine.registry.get(entry.get("type")) if isinstance(entry, dict) else None
        if node_class is None or not node_class.output_node:
            continue
        given = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
        for spec in node_class.inputs:
            if spec.type == "STRING" and spec.name.endswith("prefix"):
                value = given.get(spec.name, spec.default)
                if isinstance(value, str):
                    found.append(value)
    return found


async def list_workflows(request: web.Request) -> web.Response:
    state = request.app[STATE]
    listed = await asyncio.to_thread(state.library.list, state.engine.settings.folder("output"),
                                     functools.partial(save_prefixes, state.engine))
    return _json({"workflows": listed})


async def get_workflow_thumbnail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    name = _workflow_name(request)
    picture = await asyncio.to_thread(state.library.thumbnail, name, state.engine.settings.folder("output"),
                                      functools.partial(save_prefixes, state.engine))
    if picture is None:
        return _error(404, f"the workflow {name!r} has no picture yet: run it (its output becomes its picture)")
    response = file_response(picture)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _workflow_name(request: web.Request) -> str:
    try:
        return check_name(request.match_info["name"])
    except WorkflowNameError as error:
        raise Refused(400, str(error)) from None


async def get_workflow(request: web.Request) -> web.Response:
    name = _workflow_name(request)
    try:
        workflow = request.app[STATE].library.read(name)
    except StoredWorkflowError as error:
        return _error(409, str(error))
    if workflow is None:
        return _error(404, f"no workflow named {name!r}")
    return _json(workflow)


async def put_workflow(request: web.Request) -> web.Response:
    library = request.app[STATE].library
    name = _workflow_name(request)
    if library.is_shipped(name):
        return _error(409, f"{name!r} ships with gouache and is read-only; save under another name")
    raw = await _json_body(request)
    workflow, problems = parse(raw)
    if problems:
        return _problems(problems)
    # Stored as parsed, with only the fields sent (an explicit ``"mode": null`` is no mode and is not kept), so
    # what GET serves back is always a valid gouache/1 file.
    created = await asyncio.to_thread(library.save, name, workflow.model_dump(mode="json", exclude_unset=True))
    return _json({"name": name}, status=201 if created else 200)


async def delete_workflow(request: web.Request) -> web.Response:
    library = request.app[STATE].library
    name = _workflow_name(request)
    if library.is_shipped(name):
        return _error(409, f"{name!r} ships with gouache and is read-only")
    if not library.delete(name):
        return _error(404, f"no workflow named {name!r}")
    return _json({"name": name, "deleted": True})


async def list_extensions(request: web.Request) -> web.Response:
    extensions = []
    for name, extension in sorted(request.app[STATE].engine.web_extensions.items()):
        extensions.append({"name": name,
                           "scripts": [f"/extensions/{name}/{script}" for script in extension.scripts],
                           "styles": [f"/extensions/{name}/{style}" for style in extension.styles]})
    return _json({"extensions": extensions})


async def extension_file(request: web.Request) -> web.StreamResponse:
    extension = request.app[STATE].engine.web_extensions.get(request.match_info["name"])
    path = safe_path(Path(extension.directory), request.match_info["path"]) if extension else None
    if path is None:
        raise web.HTTPNotFound()
    return file_response(path, scripts=True)


async def websocket(request: web.Request) -> web.StreamResponse:
    if "clientId" in request.query:  # ComfyUI's clients name themselves; gouache's editor never does
        return await request.app[COMFY].websocket(request)
    state = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=state.limits.ws_message_bytes)
    await ws.prepare(request)
    client = state.hub.attach(ws)
    pump = asyncio.create_task(client.pump())
    try:
        async for _message in ws:
            pass  # the protocol is server -> client; what clients send is ignored
    finally:
        state.hub.detach(client)
        pump.cancel()
    return ws


# ---- application ------------------------------------------------------------------------------


def create_app(engine: Engine, *, security: Security | None = None, limits: Limits | None = None,
               progress_interval: float = 0.1, worker_factory: WorkerFactory | None = None) -> web.Application:
    """The server for ``engine``; the queue database lives in the engine's home folder.

    ``worker_factory(engine, store, listener)`` makes what runs the queue (default: the in-process
    :class:`Worker`; ``gouache serve --ray``: :class:`gouache.cluster.dispatch.ClusterWorker`).
    """
    limits = limits or Limits()
    app = web.Application(middlewares=[guard], client_max_size=limits.upload_bytes + 1024 * 1024)
    library = WorkflowLibrary(engine.settings.home / "workflows", shipped_folder())
    app[STATE] = State(engine, security or Security(), limits, library)

    async def start(app: web.Application) -> None:
        state = app[STATE]
        removed = library.clean()
        if removed:
            log.warning("removed %d temporary file(s) an interrupted save left: %s", len(removed), ", ".join(removed))
        state.store = RunStore(engine.settings.home / "gouache-server.sqlite3")
        recovered = state.store.recover()
        if recovered:
            log.warning("marked %d run(s) interrupted by the last shutdown: %s", len(recovered), ", ".join(recovered))
        state.hub = Hub(asyncio.get_running_loop(), state.store.queue, progress_interval)
        comfy.start(state, asyncio.get_running_loop())
        state.worker = (worker_factory or Worker)(engine, state.store, _fan_out(state.hub.publish, comfy.publish))
        await asyncio.to_thread(state.worker.start)  # a cluster's workers take a while to report

    async def stop(app: web.Application) -> None:
        state = app[STATE]
        await asyncio.to_thread(state.worker.stop)
        await comfy.stop()
        for client in list(state.hub.clients):
            await client.ws.close(code=1001, message=b"server shutting down")
        state.store.close()

    comfy = ComfyRoutes(app)  # ComfyUI's routes beside ours (web/comfy, docs/api.md), imported on first use
    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.*}", static_file)
    app.router.add_get("/api/nodes", get_nodes)
    app.router.add_get("/api/models", get_models)
    app.router.add_get("/api/runs", list_runs)
    app.router.add_post("/api/runs", post_run)
    app.router.add_get("/api/runs/{run_id}", get_run)
    app.router.add_delete("/api/runs/{run_id}", delete_run)
    app.router.add_get("/api/files/{kind}/{path:.*}", get_file)
    app.router.add_post("/api/uploads", upload)
    app.router.add_post("/api/import", post_import)
    app.router.add_get("/api/workflows", list_workflows)
    app.router.add_get("/api/workflows/{name}", get_workflow)
    app.router.add_get("/api/workflows/{name}/thumbnail", get_workflow_thumbnail)
    app.router.add_put("/api/workflows/{name}", put_workflow)
    app.router.add_delete("/api/workflows/{name}", delete_workflow)
    app.router.add_get("/api/extensions", list_extensions)
    app.router.add_get("/extensions/{name}/{path:.*}", extension_file)
    app.router.add_get("/ws", websocket)
    return app


def _fan_out(*listeners: Any) -> Any:
    """One listener that hands each event to every one of ``listeners``, in order."""
    def publish(event: Any) -> None:
        for listener in listeners:
            listener(event)
    return publish


SWITCH_INTERVAL = 0.001


def favour_responsiveness() -> None:
    """Let the event loop thread take the GIL within 1 ms (Python's default is 5 ms).

    A node that computes in pure Python holds the GIL; every request then waits for a switch.
    Torch releases the GIL while it computes, so sampling loses nothing measurable.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


async def _resume_collector(app: web.Application) -> None:
    """Freeze what the start made (it lives as long as the server) and let the cyclic collector run again."""
    gc.freeze()
    gc.enable()


def serve(args: Any, worker_factory: WorkerFactory | None = None) -> int:
    """``gouache serve``: refuse unsafe settings, then serve until interrupted; returns an exit code.

    This process is the server: ``gouache serve`` pauses the cyclic collector before importing this module
    (``cli/main.py``; a collection in the middle of the start walks what it made for nothing: about 10 ms of
    issue 18's start); once the app has started, what the start made is frozen out of its reach and
    collection resumes.
    """
    host = args.host or "127.0.0.1"
    token = getattr(args, "token", None) or None
    if not is_loopback(host) and not token:
        print(f"gouache serve: refusing to listen on {host} without --token: anyone who can reach this "
              "machine could run workflows and read your images. Pass --token SECRET, or bind 127.0.0.1.",
              file=sys.stderr)
        return 2
    engine = Engine(home=args.home, device=getattr(args, "device", None),
                    safe_mode=bool(getattr(args, "safe_mode", False)),
                    disk_cache=True)  # outputs survive a restart of the server (home/cache, disk_cache_bytes)
    security = Security(host, tuple(origin.rstrip("/") for origin in (args.allow_origin or [])), token)
    app = create_app(engine, security=security, worker_factory=worker_factory)
    app.on_startup.append(_resume_collector)
    favour_responsiveness()
    shown = f"[{host}]" if ":" in host else host
    print(f"gouache: editor at http://{shown}:{args.port}/" + (f"?token={token}" if token else ""), file=sys.stderr)
    web.run_app(app, host=host, port=args.port, print=None, handle_signals=True)
    return 0
