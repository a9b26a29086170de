"""Which worker runs which run: the routing rule with model affinity, as pure functions.

A run needs models, each a ``(kind, name)`` pair such as ``("checkpoints", "gouache-tiny")`` or
``("loras", "outline")``: every typed-in value of an input whose choices are a model folder
(:func:`needs`). Workers report what they hold loaded and what they have on disk. The rule:

1. among the free workers that have every model the run needs (loaded or on disk), take the one
   already holding the most of them loaded (all of them is an *affinity hit*);
2. between equals, the one holding the fewest models the run does not need (it disturbs least what
   other runs would find), then the first in the order given;
3. no free worker has them: the run waits, if a busy worker has them;
4. no worker at all has them: the run cannot run here (:func:`missing` names what is missing).

Nothing here talks to a worker, reads a file or keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from gouache.engine.validate import ValidWorkflow
from gouache.engine.workflow import Workflow
from gouache.engine.registry import Registry

Model = tuple[str, str]
"""A model a run needs: its folder kind and its name as workflows give it."""
Reason = Literal["loaded", "on_disk", "wait", "missing"]


@dataclass(frozen=True)
class WorkerState:
    """What a worker reported: its name, whether it is free, the models it holds and those it can load."""

    name: str
    loaded: frozenset[Model] = frozenset()
    on_disk: frozenset[Model] = frozenset()
    free: bool = True

    def has(self, models: frozenset[Model]) -> bool:
        """Whether this worker can run something needing ``models`` (loaded or from its disk)."""
        return models <= (self.on_disk | self.loaded)


@dataclass(frozen=True)
class Route:
    """Where a run goes: a worker (``loaded``: an affinity hit; ``on_disk``: it loads), or nowhere yet."""

    worker: str | None
    reason: Reason


def route(models: frozenset[Model], workers: Iterable[WorkerState]) -> Route:
    """The worker a run needing ``models`` goes to now, by the rule in this module's docstring."""
    best: WorkerState | None = None
    best_score: tuple[int, int] | None = None
    someone_has = False
    for worker in workers:
        if not worker.has(models):
            continue
        someone_has = True
        if not worker.free:
            continue
        score = (len(models & worker.loaded), -len(worker.loaded - models))
        if best_score is None or score > best_score:
            best, best_score = worker, score
    if best is not None:
        return Route(best.name, "loaded" if models <= best.loaded else "on_disk")
    return Route(None, "wait" if someone_has else "missing")


def schedule(queue: Sequence[tuple[str, frozenset[Model]]], workers: Sequence[WorkerState]) -> list[tuple[str, str]]:
    """``(run, worker)`` pairs for the queued runs that can start now.

    First every run a free worker already holds the models of, in queue order (a hit costs no
    load, so it may pass older runs); then the others in queue order, by :func:`route`. A run that
    must wait does not hold up later runs. A worker given a run counts as busy, and as holding that
    run's models, for the runs after it. The caller bounds ``queue`` (the head of the queue), which
    bounds how far a hit may overtake.
    """
    states = {worker.name: worker for worker in workers}
    assigned: list[tuple[str, str]] = []
    waiting = list(queue)
    for hits_only in (True, False):
        left = []
        for run_id, models in waiting:
            if not any(worker.free for worker in states.values()):
                return assigned
            chosen = route(models, states.values())
            if chosen.worker is None or (hits_only and chosen.reason != "loaded"):
                left.append((run_id, models))
                continue
            worker = states[chosen.worker]
            states[chosen.worker] = WorkerState(worker.name, worker.loaded | models, worker.on_disk, free=False)
            assigned.append((run_id, chosen.worker))
        waiting = left
    return assigned


def needs(valid: ValidWorkflow) -> frozenset[Model]:
    """The models a valid workflow loads: every typed-in value of an input choosing from a model folder."""
    found = set()
    for node in valid.nodes.values():
        for spec in node.node_class.inputs:
            value = node.literals.get(spec.name)
            if spec.choices_from is not None and spec.name not in node.links and isinstance(value, str):
                found.add((spec.choices_from, value))
    return frozenset(found)


def raw_needs(workflow: Workflow, registry: Registry) -> dict[tuple[str, str], Model]:
    """The models a parsed (not yet validated) workflow names, by ``(node, input)``.

    Used before validation, to tell a model no worker has from a model that does not exist.
    """
    found = {}
    for node_id, entry in workflow.nodes.items():
        node_class = registry.get(entry.type)
        if node_class is None:
            continue
        for spec in node_class.inputs:
            value = entry.inputs.get(spec.name)
            if spec.choices_from is not None and isinstance(value, str):
                found[(node_id, spec.name)] = (spec.choices_from, value)
    return found


def missing(models: frozenset[Model], workers: Iterable[WorkerState]) -> list[Model]:
    """The models no worker has, sorted."""
    have: set[Model] = set()
    for worker in workers:
        have |= worker.on_disk | worker.loaded
    return sorted(models - have)


def describe(workers: Iterable[WorkerState], kind: str) -> str:
    """The workers and their models of ``kind``, for an error message: ``w1 (a, b); w2 (none)``."""
    parts = []
    for worker in workers:
        names = sorted({name for k, name in worker.on_disk | worker.loaded if k == kind})
        parts.append(f"{worker.name} ({', '.join(names) if names else f'no {kind}'})")
    return "; ".join(parts) or "no workers"
