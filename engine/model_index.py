"""Model folders: which kinds exist (packs register them), where they are, what they hold."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gouache.engine.settings import Settings


@dataclass(frozen=True)
class ModelEntry:
    """One model a loader node can name: its name, where it is, and what a pack says of it."""

    name: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``gouache models --json`` prints it."""
        return {"name": self.name, "path": str(self.path), **self.info}


@dataclass(frozen=True)
class ModelFolder:
    """A kind of model folder, e.g. ``checkpoints``, and the files that count as models in it."""

    kind: str
    extensions: tuple[str, ...]
    directories: bool = False
    """Folders holding a ``marker`` file count as one model (diffusers folders)."""
    marker: str = "model_index.json"
    describe: Callable[[Path], dict[str, Any]] | None = None
    """Extra facts for ``gouache models`` (format, family); must be cheap (no model load)."""
    builtin: Callable[[], list[ModelEntry]] | None = None
    """Models that ship with a pack and need no folder."""
    home_folder: str | None = None
    """Read the base directory's ``input``/``output``/``temp`` folder instead of ``models/KIND``
    (e.g. the images LoadImage offers); such kinds are not listed by ``gouache models``."""
    description: str = ""


class ModelIndex:
    """Finds the models of every registered kind in the folders ``settings`` names."""

    def __init__(self, settings: Settings, folders: list[ModelFolder]) -> None:
        self.settings = settings
        self.kinds = {folder.kind: folder for folder in folders}

    def directories(self, kind: str) -> list[Path]:
        """Every folder searched for ``kind``, in priority order."""
        folder = self.kinds.get(kind)
        if folder is not None and folder.home_folder is not None:
            return [self.settings.folder(folder.home_folder)]
        roots = [self.settings.models_dir, *self.settings.extra_model_roots]
        paths = [root / kind for root in roots]
        paths.extend(self.settings.model_dirs.get(kind, ()))
        return paths

    def list(self, kind: str) -> list[ModelEntry]:
        """The models of ``kind``: built-in ones first, then files by name."""
        folder = self.kinds.get(kind)
        if folder is None:
            raise KeyError(f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(self.kinds))}")
        entries = list(folder.builtin()) if folder.builtin else []
        seen = {entry.name for entry in entries}
        for directory in self.directories(kind):
            for entry in self._scan(folder, directory):
                if entry.name not in seen:
                    seen.add(entry.name)
                    entries.append(entry)
        return entries

    def names(self, kind: str) -> list[str]:
        """The names of the models of ``kind`` (an input's dynamic choices)."""
        try:
            return [entry.name for entry in self.list(kind)]
        except KeyError:
            return []

    def resolve(self, kind: str, name: str) -> ModelEntry:
        """The model of ``kind`` called ``name``; a KeyError that lists what exists otherwise."""
        for entry in self.list(kind):
            if entry.name == name:
                return entry
        found = ", ".join(self.names(kind)[:20]) or "none"
        searched = ", ".join(str(path) for path in self.directories(kind))
        raise KeyError(f"no {kind} model named {name!r}; found: {found}; searched: {searched}")

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        """Every kind and its models, for ``gouache models --json`` and ``/api/models``."""
        return {kind: [entry.to_json() for entry in self.list(kind)]
                for kind in sorted(self.kinds) if self.kinds[kind].home_folder is None}

    def _scan(self, folder: ModelFolder, directory: Path) -> list[ModelEntry]:
        if not directory.is_dir():
            return []
        entries: list[ModelEntry] = []
        for root, dirs, files in os.walk(directory, followlinks=True):
            root_path = Path(root)
            if folder.directories and folder.marker in files and root_path != directory:
                entries.append(self._entry(folder, directory, root_path))
                dirs.clear()
                continue
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(folder.extensions):
                    entries.append(self._entry(folder, directory, root_path / name))
        return entries

    @staticmethod
    def _entry(folder: ModelFolder, directory: Path, path: Path) -> ModelEntry:
        info: dict[str, Any] = {}
        if folder.describe is not None:
            try:
                info = folder.describe(path)
            except Exception as error:  # a broken file must not hide the others
                info = {"error": f"{type(error).__name__}: {error}"}
        return ModelEntry(path.relative_to(directory).as_posix(), path, info)
