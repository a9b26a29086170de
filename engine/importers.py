"""Workflows written for other tools, turned into ``gouache/1`` by importers that packs offer.

The engine knows nothing of any other tool: a pack returns :class:`WorkflowImporter` objects from
``gouache_register_workflow_importers`` and :func:`import_workflow` asks each, in turn, whether it
recognises a raw workflow that has no ``format`` field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gouache.engine.problems import Problem


@dataclass(frozen=True)
class PngChunks:
    """The text chunks of a PNG that carries no gouache workflow, offered to importers as they are."""

    chunks: dict[str, str]


class ForeignNode(Protocol):
    """How one node class of another tool maps onto a gouache node type, as an importer reads it.

    A server that speaks that tool's API (``gouache.web.comfy``) describes the class from it and
    from the gouache node's own declaration, so nothing about the class is written twice.
    """

    type: str
    """The gouache node type it becomes."""
    renames: Mapping[str, str | None]
    """Their input name -> ours; a name not listed is the same; ``None``: gouache has no counterpart."""
    widgets: tuple[str, ...]
    """Their typed-in inputs, in their order."""
    outputs: tuple[str, ...]
    """Our output name for each of their output indexes."""
    fixed: Mapping[str, object]
    """Our inputs the mapping itself sets (not theirs to set)."""

    @property
    def values(self) -> Mapping[str, Mapping[str, Any]]:
        """Our input name -> {their value: our value}, for inputs whose choices are named differently."""
        ...


@dataclass(frozen=True)
class WorkflowImporter:
    """Reads one foreign format: ``recognise(raw)`` says whether it is one, ``convert(raw)`` turns it
    into a ``gouache/1`` dict (or ``None``) and the problems found (every unmapped node at once).

    ``raw`` is parsed JSON, or :class:`PngChunks` for a PNG without a gouache workflow. ``nodes``
    names the other tool's node classes the importer maps, each with its :class:`ForeignNode`.
    """

    name: str
    recognise: Callable[[Any], bool]
    convert: Callable[[Any], tuple[dict[str, Any] | None, list[Problem]]]
    description: str = ""
    nodes: Mapping[str, ForeignNode] = field(default_factory=dict)


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
