"""Workflows written for other tools, turned into ``gouache/1`` by importers that packs offer.

The engine knows nothing of any other tool: a pack returns :class:`WorkflowImporter` objects from
``gouache_register_workflow_importers`` and :func:`import_workflow` asks each, in turn, whether it
recognises a raw workflow that has no ``format`` field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gouache.engine.problems import Problem


@dataclass(frozen=True)
class PngChunks:
    """The text chunks of a PNG that carries no gouache workflow, offered to importers as they are."""

    chunks: dict[str, str]


@dataclass(frozen=True)
class WorkflowImporter:
    """Reads one foreign format: ``recognise(raw)`` says whether it is one, ``convert(raw)`` turns it
    into a ``gouache/1`` dict (or ``None``) and the problems found (every unmapped node at once).

    ``raw`` is parsed JSON, or :class:`PngChunks` for a PNG without a gouache workflow.
    """

    name: str
    recognise: Callable[[Any], bool]
    convert: Callable[[Any], tuple[dict[str, Any] | None, list[Problem]]]
    description: str = ""


def import_workflow(raw: Any, importers: Sequence[WorkflowImporter]) -> tuple[Any, list[Problem]]:
    """``raw`` converted by the first importer that recognises it, or unchanged when none does.

    A ``gouache/1`` workflow (one with a ``format`` field) is never offered to importers.
    """
    if isinstance(raw, dict) and "format" in raw:
        return raw, []
    for importer in importers:
        try:
            if not importer.recognise(raw):
                continue
            converted, problems = importer.convert(raw)
        except Exception as error:  # a damaged file of that format: a problem to show, not a crash of the server
            return None, [Problem(None, None, "unreadable_workflow",
                                  f"cannot read the workflow: it looks like {importer.name} but is damaged "
                                  f"({type(error).__name__}: {error})")]
        return converted, list(problems)
    if isinstance(raw, PngChunks):
        return None, [Problem(None, None, "unreadable_workflow",
                              "cannot read the workflow: a PNG without an embedded gouache workflow, and no installed importer "
                              f"recognises its text chunks {sorted(raw.chunks)}")]
    return raw, []
