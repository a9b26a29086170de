"""Workflows of other tools (ComfyUI, A1111) read into ``gouache/1``, and ComfyUI's API format written."""

from __future__ import annotations

from gouache.engine import WorkflowImporter


def importers() -> list[WorkflowImporter]:
    """Every importer the built-in pack registers, asked in this order."""
    from gouache.nodes.interop import a1111, comfy

    return [*comfy.importers(), *a1111.importers()]
