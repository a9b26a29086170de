"""The object that serves ComfyUI's API: its handlers, named in :data:`gouache.web.comfy.ROUTES`.

Imported on the API's first use (:class:`gouache.web.comfy.ComfyRoutes`), not at the server's start."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import platform
import re
import sys
import uuid
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from gouache.engine import Problem, jsonio

from gouache.web.bodies import Refused, json_body, parse_json, read_body
from gouache.web.comfy import files
from gouache.web.comfy.describe import object_info
from gouache.web.comfy.messages import (
    ErrorDetail, InterruptRequest, PromptQueued, PromptRefused, PromptRequest, QueueListing, QueueRequest, Uploaded,
)
from gouache.web.comfy.prompts import PromptTable
from gouache.web.comfy.relay import Relay
from gouache.web.comfy.translate import comfy_importer, history_entry, output_nodes, refusal, shape_problems

if TYPE_CHECKING:
    from gouache.web.server import State

log = logging.getLogger(__name__)

PROMPT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
HISTORY_SIZE = 10_000
"""The most prompts GET /history lists (ComfyUI keeps as many)."""
FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
"""ComfyUI's older model folder names -> gouache's."""
FINISHED = ("succeeded", "failed", "interrupted")
EXTRA_DATA_WARNINGS = {
    "extra_pnginfo": "extra_data.extra_pnginfo is not written into saved PNGs: gouache's SaveImage embeds "
                     "the gouache/1 workflow the prompt became",
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=jsonio.dumps)


class ComfyApi:
    """The handlers of ComfyUI's routes (:data:`gouache.web.comfy.ROUTES`); :meth:`start` binds them to the
    server's state."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.prompts: PromptTable | None = None
        self.relay: Relay | None = None

    def start(self, state: State, loop: asyncio.AbstractEventLoop) -> None:
        """Open the prompt table in the engine's home and start relaying events on ``loop``."""
        self.state = state
        self.prompts = PromptTable(state.engine.settings.home / "gouache-comfy.sqlite3")
        self.relay = Relay(self.prompts, lambda: len(state.store.queue()), self._run_error,
                           state.limits.ws_message_bytes)
        self.relay.start(loop)

    async def stop(self) -> None:
        """Close ComfyUI websocket connections and the prompt table."""
        if self.relay is not None:
            await self.relay.close()
        if self.prompts is not None:
            self.prompts.close()

    def publish(self, event: Any) -> None:
        """The worker's events (any thread), for ComfyUI's websocket clients."""
        if self.relay is not None:
            self.relay.publish(event)

    def _run_error(self, run_id: str) -> dict[str, Any] | None:
        record = self.state.store.get(run_id)
        return record.get("error") if record else None

    # ---- prompts --------------------------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.Response:
        """POST /prompt: validate and queue an API-format prompt."""
        body = await json_body(request, self.state.limits.json_bytes)
        if not isinstance(body, dict):
            return _refuse("invalid_prompt", "the body must be an object with a 'prompt'")
        try:
            asked = PromptRequest.model_validate(body)
        except ValidationError as error:
            shown = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in error.errors())
            return _refuse("invalid_prompt", f"the request is not ComfyUI's /prompt body: {shown}")
        if asked.prompt is None:
            return _refuse("no_prompt", "No prompt provided: send {\"prompt\": {node_id: {class_type, inputs}}}")
        if asked.front:
            return _refuse("unsupported", "front: gouache's queue runs prompts in the order they come; "
                                          "queue without 'front', or cancel the pending prompts first (POST /queue)")
        if asked.number is not None:
            return _refuse("unsupported", "number: gouache's queue runs prompts in the order they come and "
                                          "numbers them itself; send the prompt without 'number'")
        if asked.prompt_id is not None and not PROMPT_ID.match(asked.prompt_id):
            return _refuse("invalid_prompt", "prompt_id must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
        extra = dict(asked.extra_data or {})
        client_id = asked.client_id or extra.get("client_id")
        if client_id is not None:
            extra["client_id"] = client_id
        warnings = [f"{name}: not a field of ComfyUI's /prompt body gouache knows; not acted on"
                    for name in sorted(asked.model_extra or {})]
        warnings += [EXTRA_DATA_WARNINGS.get(name, f"extra_data.{name}: gouache does not act on it")
                     for name in sorted(extra) if name != "client_id"]
        for warning in warnings:
            log.warning("POST /prompt: %s", warning)
        answer = await asyncio.to_thread(self._queue, asked, client_id, extra, warnings)
        status = 200 if isinstance(answer, PromptQueued) else 400
        return _json(answer.model_dump(mode="json"), status)

    def _queue(self, asked: PromptRequest, client_id: str | None, extra: dict[str, Any],
               warnings: list[str]) -> PromptQueued | PromptRefused:
        state = self.state
        prompt, registry = asked.prompt, state.engine.registry
        importer = comfy_importer(state.engine.importers)
        if importer is None:
            problem = Problem(None, None, "invalid_prompt", "this server has no importer for ComfyUI's API format "
                              "(the built-in pack registers it: is it blocked or in safe mode?)")
            return _refusal([problem], prompt, None, registry, [])
        problems = shape_problems(prompt)
        if problems:
            return _refusal(problems, prompt, importer, registry, [])
        try:
            workflow, problems = importer.convert(prompt)
        except Exception as error:  # a damaged prompt is the client's problem, named, not a crash
            problem = Problem(None, None, "invalid_prompt", f"cannot read the prompt: {type(error).__name__}: {error}")
            return _refusal([problem], prompt, importer, registry, [])
        outputs = list(asked.partial_execution_targets or []) or (output_nodes(workflow, registry) if workflow else [])
        if workflow is None or problems:
            return _refusal(problems, prompt, importer, registry, outputs)
        valid, problems = state.worker.check(workflow, None, asked.partial_execution_targets)
        if problems:
            return _refusal(problems, prompt, importer, registry, outputs)
        if not outputs:
            problem = Problem(None, None, "prompt_no_outputs", "Prompt has no outputs: add a SaveImage or "
                              "PreviewImage (or another output node)")
            return _refusal([problem], prompt, importer, registry, [])
        prompt_id = asked.prompt_id or str(uuid.uuid4())  # ComfyUI's form of id
        if asked.prompt_id is not None and state.store.get(prompt_id) is not None:
            number = None
        else:
            number = self.prompts.add(prompt_id, client_id, prompt, extra, outputs)
        if number is None:
            problem = Problem(None, None, "invalid_prompt", f"prompt_id {prompt_id!r} was used before; send a new one")
            return _refusal([problem], prompt, importer, registry, [])
        try:
            state.worker.submit(prompt_id, workflow, asked.partial_execution_targets, valid)
        except BaseException:
            self.prompts.remove(prompt_id)
            raise
        return PromptQueued(prompt_id=prompt_id, number=number, node_errors={}, warnings=warnings)

    async def get_prompt(self, request: web.Request) -> web.Response:
        """GET /prompt: the queue's length, as ComfyUI answers it."""
        remaining = await asyncio.to_thread(lambda: len(self.state.store.queue()))
        return _json({"exec_info": {"queue_remaining": remaining}})

    # ---- history and queue -----------------------------------------------------------------------

    def _entries(self, prompt_ids: list[str]) -> dict[str, Any]:
        found = self.prompts.many(prompt_ids)
        entries = {}
        for prompt_id in prompt_ids:
            record = self.state.store.get(prompt_id) if prompt_id in found else None
            if record is not None and record["status"] in FINISHED:
                entries[prompt_id] = history_entry(found[prompt_id], record).model_dump(mode="json")
        return entries

    async def get_history(self, request: web.Request) -> web.Response:
        """GET /history[?max_items=N]: finished prompts, oldest first."""
        raw = request.query.get("max_items")
        if raw is not None and not raw.isdigit():
            raise Refused(400, f"max_items must be a whole number, not {jsonio.shorten(raw)}")
        limit = min(int(raw), HISTORY_SIZE) if raw is not None else HISTORY_SIZE
        return _json(await asyncio.to_thread(lambda: self._entries(self.prompts.newest(limit))))

    async def get_history_entry(self, request: web.Request) -> web.Response:
        """GET /history/{prompt_id}: ``{prompt_id: entry}`` once it has finished, else ``{}``."""
        return _json(await asyncio.to_thread(self._entries, [request.match_info["prompt_id"]]))

    def _queue_listing(self) -> QueueListing:
        records = self.state.store.queue()
        found = self.prompts.many([record["run_id"] for record in records])
        running, pending = [], []
        for record in records:
            prompt = found.get(record["run_id"])
            # A run queued through gouache's own API has no ComfyUI prompt: listed with an empty one.
            item = prompt.queue_item() if prompt else [record["seq"], record["run_id"], {}, {}, record["targets"] or []]
            (running if record["status"] == "running" else pending).append(tuple(item))
        return QueueListing(queue_running=running, queue_pending=pending)

    async def get_queue(self, request: web.Request) -> web.Response:
        """GET /queue: the running prompt and the pending ones."""
        return _json((await asyncio.to_thread(self._queue_listing)).model_dump(mode="json"))

    async def post_queue(self, request: web.Request) -> web.Response:
        """POST /queue: ``{"clear": true}`` cancels every pending prompt, ``{"delete": [ids]}`` some."""
        asked = _body(QueueRequest, await json_body(request, self.state.limits.json_bytes))
        answer = await asyncio.to_thread(self._cancel_pending, asked)
        return _json(answer)

    def _cancel_pending(self, asked: QueueRequest) -> dict[str, list[str]]:
        pending = [record["run_id"] for record in self.state.store.queue() if record["status"] == "queued"]
        wanted = pending if asked.clear else []
        wanted += [prompt_id for prompt_id in asked.delete or [] if prompt_id not in wanted]
        deleted, not_pending = [], []
        for prompt_id in wanted:
            # As ComfyUI's, deleting never stops the running prompt (POST /interrupt does).
            if prompt_id in pending and self.state.worker.cancel(prompt_id) == "cancelled":
                deleted.append(prompt_id)
            else:
                not_pending.append(prompt_id)
        return {"deleted": deleted, "not_pending": not_pending}

    async def post_interrupt(self, request: web.Request) -> web.Response:
        """POST /interrupt[{"prompt_id": ID}]: stop the running prompt (only ID, when given)."""
        body = await read_body(request, self.state.limits.json_bytes)
        asked = _body(InterruptRequest, parse_json(body)) if body.strip() else InterruptRequest()
        return _json(await asyncio.to_thread(self._interrupt, asked.prompt_id))

    def _interrupt(self, prompt_id: str | None) -> dict[str, Any]:
        running = [record["run_id"] for record in self.state.store.queue() if record["status"] == "running"]
        for run_id in running:
            if prompt_id in (None, run_id) and self.state.worker.cancel(run_id) == "interrupting":
                return {"interrupted": run_id}
        return {"interrupted": None}

    # ---- files ----------------------------------------------------------------------------------

    def _folder(self, kind: str) -> Any:
        return self.state.engine.settings.folder(kind)

    async def get_view(self, request: web.Request) -> web.StreamResponse:
        """GET /view?filename=&subfolder=&type=: a file from the output, input or temp folder."""
        return await asyncio.to_thread(files.view, self._folder, request.query)

    async def upload_image(self, request: web.Request) -> web.Response:
        """POST /upload/image (multipart: image, overwrite, subfolder, type)."""
        stored = await files.upload(request, self._folder, self.state.limits.upload_bytes, mask=False)
        return _json(Uploaded(**stored).model_dump(mode="json"))

    async def upload_mask(self, request: web.Request) -> web.Response:
        """POST /upload/mask (multipart: image, original_ref, overwrite, subfolder, type)."""
        stored = await files.upload(request, self._folder, self.state.limits.upload_bytes, mask=True)
        return _json(Uploaded(**stored).model_dump(mode="json"))

    # ---- what is installed ----------------------------------------------------------------------

    async def get_object_info(self, request: web.Request) -> web.Response:
        """GET /object_info[/{node_class}]: the mapped ComfyUI classes, described from gouache's nodes."""
        engine = self.state.engine
        only = request.match_info.get("node_class")
        described = await asyncio.to_thread(object_info, comfy_importer(engine.importers), engine.registry,
                                            engine.models.names, only)
        return _json(described)

    async def get_system_stats(self, request: web.Request) -> web.Response:
        """GET /system_stats: the machine, in ComfyUI's shape (the web layer never loads torch: no VRAM figures)."""
        from gouache import __version__

        settings = self.state.engine.settings
        try:
            torch_version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            torch_version = None
        return _json({
            "system": {"os": os.name, "ram_total": _memory("SC_PHYS_PAGES"), "ram_free": _memory("SC_AVPHYS_PAGES"),
                       "comfyui_version": f"gouache {__version__}", "gouache_version": __version__,
                       "python_version": sys.version, "pytorch_version": torch_version, "embedded_python": False,
                       "argv": sys.argv, "platform": platform.platform()},
            "devices": [{"name": settings.device, "type": settings.device, "index": None, "vram_total": None,
                         "vram_free": None, "torch_vram_total": None, "torch_vram_free": None}],
        })

    def _kinds(self) -> list[str]:
        return sorted(kind for kind, folder in self.state.engine.models.kinds.items() if folder.home_folder is None)

    async def get_embeddings(self, request: web.Request) -> web.Response:
        """GET /embeddings: the embeddings' names without extensions, as ComfyUI lists them."""
        models = self.state.engine.models
        names = await asyncio.to_thread(models.names, "embeddings") if "embeddings" in models.kinds else []
        return _json([str(PurePosixPath(name).with_suffix("")) if PurePosixPath(name).suffix else name
                      for name in names])

    async def get_model_folders(self, request: web.Request) -> web.Response:
        """GET /models: the model folder kinds."""
        return _json(self._kinds())

    async def get_models(self, request: web.Request) -> web.Response:
        """GET /models/{folder}: the models of one kind (ComfyUI's ``unet`` and ``clip`` names accepted)."""
        folder = request.match_info["folder"]
        kind = FOLDER_ALIASES.get(folder, folder)
        if kind not in self._kinds():
            raise Refused(404, f"no model folder {jsonio.shorten(folder)}; there are {', '.join(self._kinds())}")
        return _json(await asyncio.to_thread(self.state.engine.models.names, kind))


def _memory(pages: str) -> int | None:
    """Bytes of RAM by ``os.sysconf`` (``None`` where the system does not say, e.g. free RAM on macOS)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf(pages)
    except (AttributeError, ValueError, OSError):
        return None


def _body(model: Any, raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        shown = "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in error.errors())
        raise Refused(400, f"not a {model.__name__} body: {shown}") from None


def _refuse(kind: str, message: str) -> web.Response:
    refused = PromptRefused(error=ErrorDetail(type=kind, message=message, details=""), node_errors={})
    return _json(refused.model_dump(mode="json"), 400)


def _refusal(problems: list[Problem], prompt: Any, importer: Any, registry: Any, outputs: list[str]) -> PromptRefused:
    error, nodes = refusal(problems, prompt if isinstance(prompt, dict) else {}, importer, registry, outputs)
    return PromptRefused(error=error, node_errors=nodes)
