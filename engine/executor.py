"""Runs a valid workflow: prune to the wanted outputs, order, reuse cached outputs, run the rest."""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gouache.engine.cache import OutputCache, node_key
from gouache.engine.context import _RUNNING, Interrupted, Resources, RunContext
from gouache.engine.events import (
    EventBus, FinishedData, InterruptedData, NodeCachedData, NodeErrorData, NodeFinishedData, NodeStartedData,
    StartedData,
)
from gouache.engine.model_index import ModelIndex
from gouache.engine.declaration import CachePolicy
from gouache.engine.problems import InputError, NodeError
from gouache.engine.sockets import LITERAL_TYPES
from gouache.engine.values import check_value
from gouache.engine.settings import Settings
from gouache.engine.validate import ValidWorkflow


@dataclass
class RunResult:
    """What a run did: ``status`` is succeeded, failed or interrupted."""

    run_id: str
    status: str = "succeeded"
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    from_disk: list[str] = field(default_factory=list)
    """The cached nodes whose outputs came from the disk tier (written by an earlier process)."""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    """Files nodes wrote, by node id: ``[{"kind": "output", "path": "x.png"}]``."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per executed node."""
    seconds: float = 0.0
    error: NodeError | None = None

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.status == "succeeded"


def plan(valid: ValidWorkflow, targets: list[str]) -> list[str]:
    """The nodes ``targets`` need, in topological order: one reverse walk, linear in the graph."""
    needed = set(targets)
    queue = deque(targets)
    predecessors = valid.graph.pred
    while queue:
        for source in predecessors[queue.popleft()]:
            if source not in needed:
                needed.add(source)
                queue.append(source)
    if len(needed) == len(valid.order):
        return list(valid.order)
    return [node_id for node_id in valid.order if node_id in needed]


def default_targets(valid: ValidWorkflow) -> list[str]:
    """The output nodes (those saving results); every sink when the workflow has none."""
    outputs = [node_id for node_id in valid.order if valid.nodes[node_id].node_class.output_node]
    if outputs:
        return outputs
    return [node_id for node_id in valid.order if valid.graph.out_degree(node_id) == 0]


@dataclass
class Executor:
    """Runs workflows one at a time with a shared cache, event bus and resources."""

    settings: Settings
    models: ModelIndex
    cache: OutputCache
    bus: EventBus
    resources: Resources = field(default_factory=Resources)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def interrupt(self) -> None:
        """Ask the current run to stop at the next check (between nodes, at sampler steps)."""
        self._stop.set()

    def run(self, valid: ValidWorkflow, targets: list[str], run_id: str | None = None) -> RunResult:
        """Run the nodes ``targets`` need; never raises for a node's failure (see ``error``)."""
        with self._lock:
            self._stop.clear()
            return self._run(valid, plan(valid, targets), run_id or uuid.uuid4().hex)

    def _run(self, valid: ValidWorkflow, order: list[str], run_id: str) -> RunResult:
        result = RunResult(run_id)
        bus = self.bus
        started = time.perf_counter()
        bus.emit(StartedData, run_id=run_id, nodes=order)
        keys: dict[str, str] = {}
        values = result.outputs
        node_id = ""
        try:
            for node_id in order:
                if self._stop.is_set():
                    raise Interrupted(f"interrupted before node {node_id!r}")
                node = valid.nodes[node_id]
                node_class = node.node_class
                upstream = {name: f"{keys[src]}:{out}" for name, (src, out) in node.links.items()}
                inputs = dict(node.literals)
                for name, (src, out) in node.links.items():
                    inputs[name] = values[src][out]
                if node.links:
                    _check_linked_values(node_class, node.links, inputs)
                ctx = RunContext(run_id, node_id, node_class.type_name, self.settings, self.models,
                                 self.resources, valid.workflow, bus, self._stop)
                instance = node_class()
                extra = ""
                if node_class.cache is CachePolicy.FINGERPRINT:
                    extra = instance.fingerprint(ctx, **inputs)
                elif node_class.cache is CachePolicy.NEVER:
                    extra = uuid.uuid4().hex
                key = keys[node_id] = node_key(node, upstream, extra)
                entry = self.cache.get(key) if node_class.cache is not CachePolicy.NEVER else None
                if entry is not None and self._files_exist(entry.ui):
                    values[node_id] = entry.outputs
                    if entry.ui.get("images"):
                        result.images[node_id] = entry.ui["images"]
                    result.cached.append(node_id)
                    if entry.source == "disk":
                        result.from_disk.append(node_id)
                    bus.emit(NodeCachedData, run_id=run_id, node=node_id, images=entry.ui.get("images") or [])
                    continue
                bus.emit(NodeStartedData, run_id=run_id, node=node_id, type=node_class.type_name)
                node_started = time.perf_counter()
                running = _RUNNING.set(ctx)
                try:
                    outputs = instance.run(ctx, **inputs)
                finally:
                    _RUNNING.reset(running)
                _check_outputs(node_class, outputs)
                seconds = time.perf_counter() - node_started
                values[node_id] = outputs
                ui = {"images": ctx.images} if ctx.images else {}
                if ctx.images:
                    result.images[node_id] = ctx.images
                if node_class.cache is not CachePolicy.NEVER:
                    self.cache.put(key, outputs, ui)
                result.executed.append(node_id)
                result.timings[node_id] = seconds
                bus.emit(NodeFinishedData, run_id=run_id, node=node_id, seconds=seconds, images=ctx.images)
        except Interrupted:
            result.status = "interrupted"
            bus.emit(InterruptedData, run_id=run_id, node=node_id)
        except Exception as error:
            node_type = valid.nodes[node_id].node_class.type_name if node_id else ""
            result.status = "failed"
            if isinstance(error, InputError):
                result.error = NodeError(node_id, node_type, error.message, traceback.format_exc(),
                                         error.input, error.code)
            else:
                result.error = NodeError(node_id, node_type, _message(error), traceback.format_exc())
            bus.emit(NodeErrorData, run_id=run_id, **result.error.to_json())
        result.seconds = time.perf_counter() - started
        bus.publish(finished_event(result))
        return result

    def _files_exist(self, ui: dict[str, Any]) -> bool:
        """Whether the files a cached node reported are still there: a node whose files were deleted runs again."""
        images = ui.get("images") or []
        return all((self.settings.folder(image["kind"]) / image["path"]).is_file() for image in images)


def finished_event(result: RunResult) -> FinishedData:
    """The ``finished`` event of a run: built here only, for the executor and for the web worker."""
    return FinishedData(run_id=result.run_id, status=result.status, seconds=result.seconds,
                        executed=len(result.executed), cached=len(result.cached))


def _check_linked_values(node_class: type, links: dict[str, tuple[str, str]], inputs: dict[str, Any]) -> None:
    """Hold a linked value to the rules its input sets for typed-in values (range, step, choices).

    Validation can check only typed-in values; a number that arrives from a primitive node is checked
    here, before the node runs, and fails naming the input.
    """
    specs = {spec.name: spec for spec in node_class.inputs}
    for name in links:
        spec = specs[name]
        if spec.type not in LITERAL_TYPES and spec.choices is None:
            continue
        checked, problem = check_value(spec, inputs[name])
        if problem is not None:
            raise InputError(name, f"the value it was linked to {problem.message}", problem.code)
        inputs[name] = checked


def _message(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_outputs(node_class: type, outputs: Any) -> None:
    declared = {output.name for output in node_class.outputs}
    if not isinstance(outputs, dict) or set(outputs) != declared:
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise TypeError(f"{node_class.__name__}.run() must return a dict with the outputs "
                        f"{sorted(declared)}, got {got}")
