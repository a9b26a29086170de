"""The Python API: ``Engine`` loads packs, validates and runs workflows, and keeps the cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gouache.engine.cache import OutputCache, disk_tier
from gouache.engine.context import Resources
from gouache.engine.events import EventBus, Subscriber
from gouache.engine.importers import import_workflow
from gouache.engine.executor import Executor, RunResult, default_targets
from gouache.engine.model_index import ModelIndex
from gouache.engine.packs import PackSource, entry_point_sources, load_packs, module_pack
from gouache.engine.problems import Problem, WorkflowInvalid
from gouache.engine.settings import Settings
from gouache.engine.validate import ValidWorkflow, validate
from gouache.engine.workflow import Workflow, apply_overrides, load_source, parse

WorkflowSource = str | Path | dict[str, Any] | Workflow


class Engine:
    """Loads node packs once, then validates and runs workflows, reusing cached outputs.

    ``Engine()`` loads every installed pack (the built-in one included) from the ``gouache``
    entry-point group. ``packs`` adds packs given as objects (``{"name": module}``);
    ``entry_points=False`` loads only those. ``disk_cache=True`` keeps storable node outputs under
    ``home/cache`` within ``settings.disk_cache_bytes``, for later processes (the CLI and the server
    turn it on).
    """

    def __init__(self, *, packs: dict[str, Any] | None = None, entry_points: bool = True,
                 safe_mode: bool = False, settings: Settings | None = None,
                 home: str | Path | None = None, disk_cache: bool = False, **options: Any) -> None:
        self.settings = settings or Settings.load(home, **options)
        sources: list[PackSource] = entry_point_sources() if entry_points else []
        sources += [module_pack(name, plugin) for name, plugin in (packs or {}).items()]
        loaded = load_packs(sources, safe_mode=safe_mode)
        self.registry = loaded.registry
        self.packs = loaded.reports
        self.web_extensions = loaded.web_extensions
        self.importers = loaded.importers
        self.models = ModelIndex(self.settings, loaded.model_folders)
        self.cache = OutputCache(self.settings.cache_bytes, self.settings.cache_device_bytes,
                                 disk_tier(self.settings, self.packs) if disk_cache else None)
        self.events = EventBus()
        self._executor = Executor(self.settings, self.models, self.cache, self.events)

    @property
    def resources(self) -> Resources:
        """Long-lived objects packs share across this engine's runs (e.g. a model manager)."""
        return self._executor.resources

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Receive every event of every run; returns a function that unsubscribes."""
        return self.events.subscribe(subscriber)

    def check(self, workflow: WorkflowSource, overrides: dict[str, Any] | None = None,
              outputs: list[str] | None = None, choices_for: Callable[[str], list[str]] | None = None,
              ) -> tuple[ValidWorkflow | None, list[Problem]]:
        """Parse and validate; return the valid workflow (or ``None``) and every problem found.

        ``choices_for(kind)`` lists the models a model input may choose (default: the models this
        engine finds); a cluster's head passes what its workers have.
        """
        try:
            raw = load_source(workflow)
        except (OSError, ValueError) as error:
            return None, [Problem(None, None, "unreadable_workflow", f"cannot read the workflow: {error}")]
        raw, problems = import_workflow(raw, self.importers)  # ComfyUI, A1111 ... through the packs
        if raw is None:
            return None, problems
        raw, override_problems = apply_overrides(raw, overrides)
        problems += override_problems
        parsed, parse_problems = parse(raw)
        problems += parse_problems
        if parsed is None:
            return None, problems
        valid, validation_problems = validate(parsed, self.registry, choices_for or self.models.names)
        problems += validation_problems
        for node_id in outputs or []:
            if node_id not in parsed.nodes:
                problems.append(Problem(node_id, None, "unknown_output_node",
                                        f"output node {node_id!r} is not in the workflow"))
            elif valid is not None and node_id in valid.silent:
                problems.append(Problem(node_id, None, "silent_output_node",
                                        f"output node {node_id!r} does not run: it is {valid.silent[node_id]} "
                                        "(node modes: docs/workflow-format.md)"))
        return (valid if not problems else None), problems

    def convert(self, source: WorkflowSource | bytes, validate: bool = True,
                ) -> tuple[dict[str, Any] | None, list[Problem], list[Problem]]:
        """A workflow in any format the importers read (ComfyUI, A1111 ...) as a ``gouache/1`` dict.

        Returns the dict (``None`` when nothing could be converted), the problems of the conversion
        (every node without an equivalent, which the dict leaves out) and validation's problems of the
        result (a model not installed here; none with ``validate=False``, for a caller that validates
        against other models, as a cluster's server does). A ``gouache/1`` source comes back as it is.
        """
        try:
            raw = load_source(source)
        except (OSError, ValueError) as error:
            return None, [Problem(None, None, "unreadable_workflow", f"cannot read the workflow: {error}")], []
        workflow, problems = import_workflow(raw, self.importers)
        if not isinstance(workflow, dict) or workflow.get("format") is None:
            if workflow is not None:
                names = ", ".join(importer.name for importer in self.importers) or "none"
                problems = [*problems, Problem(None, None, "unknown_format",
                                               "neither a gouache workflow nor one an installed importer recognises "
                                               f"(importers: {names})")]
            return None, problems, []
        _, warnings = self.check(workflow) if validate else (None, [])
        return workflow, problems, warnings

    def validate(self, workflow: WorkflowSource, overrides: dict[str, Any] | None = None,
                 outputs: list[str] | None = None) -> ValidWorkflow:
        """The valid workflow, or :class:`WorkflowInvalid` listing every problem."""
        valid, problems = self.check(workflow, overrides, outputs)
        if valid is None:
            raise WorkflowInvalid(problems)
        return valid

    def run(self, workflow: WorkflowSource | ValidWorkflow, overrides: dict[str, Any] | None = None,
            outputs: list[str] | None = None, run_id: str | None = None) -> RunResult:
        """Run a workflow (path, dict, parsed or validated) and return what happened.

        ``overrides`` sets inputs: ``{"sampler.seed": 5}``. ``outputs`` names the nodes wanted
        (default: every output node). Raises :class:`WorkflowInvalid` if it cannot run; a node
        failing at run time is reported in ``RunResult.error`` instead.
        """
        if isinstance(workflow, ValidWorkflow) and not overrides:
            valid = workflow
        else:
            source = workflow.workflow if isinstance(workflow, ValidWorkflow) else workflow
            valid = self.validate(source, overrides, outputs)
        return self._executor.run(valid, outputs or default_targets(valid), run_id)

    def interrupt(self) -> None:
        """Stop the current run at its next check."""
        self._executor.interrupt()
