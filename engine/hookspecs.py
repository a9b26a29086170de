"""The hooks a node pack implements. Every pack, the built-in one included, uses only these.

A pack is a module (or object) with functions decorated by ``gouache.engine.hookimpl``, found
through the ``gouache`` entry-point group. Each hook returns a list; the engine attributes what it
returns to the pack and checks it.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "gouache"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def gouache_register_types() -> list[Any]:
    """Return the ``SocketType``s this pack adds; called once per engine, before node types."""


@hookspec
def gouache_register_nodes() -> list[Any]:
    """Return the ``Node`` subclasses this pack provides; called once per engine."""


@hookspec
def gouache_register_model_folders() -> list[Any]:
    """Return the ``ModelFolder`` kinds this pack reads models from (e.g. ``controlnet``)."""


@hookspec
def gouache_register_web_extensions() -> list[Any]:
    """Return the ``WebExtension``s (static JS/CSS folders) the editor loads for this pack."""


@hookspec
def gouache_register_workflow_importers() -> list[Any]:
    """Return ``WorkflowImporter``s that turn other tools' workflows (files, PNG chunks) into ``gouache/1``."""
