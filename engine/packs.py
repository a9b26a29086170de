"""Finding, loading and checking node packs through pluggy and the ``gouache`` entry-point group."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from gouache.engine import hookspecs
from gouache.engine.importers import WorkflowImporter
from gouache.engine.model_index import ModelFolder
from gouache.engine.declaration import Node
from gouache.engine.registry import DefinitionError, Registry
from gouache.engine.sockets import SocketType

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gouache"
FIRST_PARTY = "gouache"
"""The distribution whose packs always load, even in safe mode."""


@dataclass(frozen=True)
class WebExtension:
    """Static files of a pack that the editor loads: ES modules (``scripts``) and ``styles``."""

    name: str
    directory: Path
    scripts: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()


@dataclass
class PackReport:
    """What became of one pack: ``loaded``, ``error`` (with the message) or ``blocked``."""

    name: str
    status: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    node_types: list[str] = field(default_factory=list)
    web_extensions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as ``gouache packs list --json`` prints it."""
        return dict(self.__dict__)


@dataclass
class PackSource:
    """A pack to load: its name and either an object with hooks or an entry point to import."""

    name: str
    plugin: Any = None
    entry_point: metadata.EntryPoint | None = None

    @property
    def distribution(self) -> str | None:
        dist = getattr(self.entry_point, "dist", None)
        return dist.name if dist is not None else None

    @property
    def version(self) -> str | None:
        dist = getattr(self.entry_point, "dist", None)
        return dist.version if dist is not None else None

    @property
    def first_party(self) -> bool:
        return self.entry_point is None or self.distribution == FIRST_PARTY


# The variables' names before "pack" became the one word for a node pack; still read, with a warning.
_FORMER_NAMES = {"GOUACHE_PACKS_BLOCK": "GOUACHE_PLUGINS_BLOCK", "GOUACHE_PACKS_ALLOW": "GOUACHE_PLUGINS_ALLOW"}


def _names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    former = _FORMER_NAMES.get(variable)
    if value is None and former is not None and former in os.environ:
        log.warning("%s is now called %s; reading it under its former name", former, variable)
        value = os.environ[former]
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def entry_point_sources() -> list[PackSource]:
    """Every pack advertised in the ``gouache`` entry-point group, first-party packs first."""
    points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    sources = [PackSource(point.name, entry_point=point) for point in points]
    unique = {source.name: source for source in sources}
    return sorted(unique.values(), key=lambda source: (not source.first_party, source.name))


@dataclass
class LoadedPacks:
    """The outcome of loading packs: the registry and everything else the packs contributed."""

    registry: Registry
    model_folders: list[ModelFolder]
    web_extensions: dict[str, WebExtension]
    reports: list[PackReport]
    importers: list[WorkflowImporter] = field(default_factory=list)


def load_packs(sources: list[PackSource], *, safe_mode: bool = False) -> LoadedPacks:
    """Import, register and check every pack; a failing pack is reported, never fatal.

    ``GOUACHE_PACKS_BLOCK`` (names never loaded) and ``GOUACHE_PACKS_ALLOW`` (if set, the only
    third-party names loaded) filter packs by entry-point or distribution name; ``safe_mode``
    loads first-party packs only.
    """
    block, allow = _names("GOUACHE_PACKS_BLOCK") or set(), _names("GOUACHE_PACKS_ALLOW")
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    reports: dict[str, PackReport] = {}
    for source in sources:
        report = reports[source.name] = PackReport(source.name, "loaded", source.distribution, source.version)
        names = {source.name, source.distribution}
        third_party = not source.first_party
        if names & block or (third_party and (safe_mode or (allow is not None and not names & allow))):
            report.status = "blocked"
            continue
        try:
            plugin = source.plugin if source.plugin is not None else source.entry_point.load()
            manager.register(plugin, name=source.name)
        except Exception as error:
            _fail(report, f"failed to import: {type(error).__name__}: {error}")
    registry = Registry()
    loaded = LoadedPacks(registry, [], {}, list(reports.values()))
    for pack, items in _call(manager, "gouache_register_types", reports):
        for item in items:
            try:
                if not isinstance(item, SocketType):
                    raise DefinitionError(pack, repr(item), ["gouache_register_types must return SocketType objects"])
                registry.add_type(item, pack)
            except DefinitionError as error:
                _fail(reports[pack], str(error))
    for pack, items in _call(manager, "gouache_register_nodes", reports):
        _add_nodes(registry, pack, items, reports[pack])
    loaded.model_folders = _instances(manager, "gouache_register_model_folders", reports, ModelFolder)
    for pack, items in _call(manager, "gouache_register_web_extensions", reports):
        for item in items:
            if isinstance(item, WebExtension) and item.name not in loaded.web_extensions:
                loaded.web_extensions[item.name] = item
                reports[pack].web_extensions.append(item.name)
            else:
                _fail(reports[pack], f"web extension {item!r} is not a WebExtension or its name is taken")
    loaded.importers = _instances(manager, "gouache_register_workflow_importers", reports, WorkflowImporter)
    return loaded


def _instances(manager: pluggy.PluginManager, hook_name: str, reports: dict[str, PackReport], kind: type) -> list[Any]:
    """What a hook returned, pack by pack, keeping instances of ``kind`` and failing a pack for anything else."""
    found = []
    for pack, items in _call(manager, hook_name, reports):
        for item in items:
            if isinstance(item, kind):
                found.append(item)
            else:
                _fail(reports[pack], f"{hook_name} returned {item!r}, not a {kind.__name__}")
    return found


def _fail(report: PackReport, message: str) -> None:
    log.error("node pack %r: %s", report.name, message)
    report.status = "error"
    report.error = f"{report.error}; {message}" if report.error else message


def _call(manager: pluggy.PluginManager, hook_name: str, reports: dict[str, PackReport]):
    """Call one hook pack by pack, so each result and each failure is attributed to its pack."""
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        report = reports.get(impl.plugin_name)
        if report is None or report.status != "loaded":
            continue
        try:
            items = impl.function()
        except Exception as error:
            _fail(report, f"{hook_name} raised {type(error).__name__}: {error}")
            continue
        if items is None:
            continue
        if not isinstance(items, (list, tuple)):
            _fail(report, f"{hook_name} must return a list, got {type(items).__name__}")
            continue
        yield impl.plugin_name, list(items)


def _add_nodes(registry: Registry, pack: str, items: list[Any], report: PackReport) -> None:
    """Register all of a pack's node types or none of them."""
    probe = Registry(types=registry.types, _nodes=dict(registry._nodes), _packs=dict(registry._packs))
    errors: list[str] = []
    for item in items:
        try:
            probe.add_node(item, pack)
        except DefinitionError as error:
            errors.append(str(error))
    if errors:
        _fail(report, "; ".join(errors))
        return
    # Every definition passed its checks on the probe: take its entries as they are rather than
    # checking each node type again (reading run() signatures is most of registering a pack).
    registry._nodes.update(probe._nodes)
    registry._packs.update(probe._packs)
    report.node_types.extend(item.type_name for item in items)


def module_pack(name: str, module: ModuleType | Any) -> PackSource:
    """A pack given directly as an object (tests, embedding), not through an entry point."""
    return PackSource(name, plugin=module)


__all__ = ["Node", "PackReport", "PackSource", "WebExtension", "load_packs", "entry_point_sources", "module_pack"]
