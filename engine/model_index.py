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
    describe_when_listed: bool = False
    """A built-in model whose folder kind's ``describe`` adds to ``info`` when a listing describes, and only
    then (``/api/nodes`` and validation need names, and describing the shipped LoRA reads its header)."""

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
    """Finds the models of every registered kind in the folders ``settings`` names.

    Folders are walked on every listing (a model added or removed shows at once), but what a pack
    says of a model (``describe``: headers read, the family detected) is kept until the model, or a
    file beside it named after it (``NAME.gouache.json``, ``NAME.yaml``), or for a model folder what is
    directly in it, changes (modification time, size or inode); a pack's built-in models are described
    once. Validation and ``/api/nodes`` only need names: they describe nothing.
    """

    def __init__(self, settings: Settings, folders: list[ModelFolder]) -> None:
        self.settings = settings
        self.kinds = {folder.kind: folder for folder in folders}
        self._described: dict[tuple[str, Path], tuple[tuple[int, ...], dict[str, Any]]] = {}
        self._builtin: dict[str, list[ModelEntry]] = {}

    def directories(self, kind: str) -> list[Path]:
        """Every folder searched for ``kind``, in priority order."""
        folder = self.kinds.get(kind)
        if folder is not None and folder.home_folder is not None:
            return [self.settings.folder(folder.home_folder)]
        roots = [self.settings.models_dir, *self.settings.extra_model_roots]
        paths = [root / kind for root in roots]
        paths.extend(self.settings.model_dirs.get(kind, ()))
        return paths

    def list(self, kind: str, *, describe: bool = True) -> list[ModelEntry]:
        """The models of ``kind``: built-in ones first, then files by name; ``describe=False`` leaves
        out what the pack says of files found in folders (``info`` empty)."""
        folder = self.kinds.get(kind)
        if folder is None:
            raise KeyError(f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(self.kinds))}")
        entries = self._builtin_entries(folder, describe)
        seen = {entry.name for entry in entries}
        for directory in self.directories(kind):
            for entry in self._scan(folder, directory, describe):
                if entry.name not in seen:
                    seen.add(entry.name)
                    entries.append(entry)
        return entries

    def names(self, kind: str) -> list[str]:
        """The names of the models of ``kind`` (an input's dynamic choices); nothing is described."""
        try:
            return [entry.name for entry in self.list(kind, describe=False)]
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

    def _scan(self, folder: ModelFolder, directory: Path, describe: bool = True) -> list[ModelEntry]:
        if not directory.is_dir():
            return []
        entries: list[ModelEntry] = []
        for root, dirs, files in os.walk(directory, followlinks=True):
            root_path = Path(root)
            if folder.directories and folder.marker in files and root_path != directory:
                # A model folder changes with what is directly in it (its settings, its marker, a component
                # folder whose files were replaced).
                around = [root_path, *(root_path / name for name in sorted([*files, *dirs]))] if describe else []
                entries.append(self._entry(folder, directory, root_path, around, describe))
                dirs.clear()
                continue
            dirs.sort()
            by_stem: dict[str, list[str]] = {}
            for name in files:  # a file changes with the files named after it (NAME.gouache.json, NAME.yaml)
                by_stem.setdefault(name.split(".", 1)[0], []).append(name)
            for name in sorted(files):
                if name.lower().endswith(folder.extensions):
                    around = [root_path / other for other in sorted(by_stem[name.split(".", 1)[0]])] if describe else []
                    entries.append(self._entry(folder, directory, root_path / name, around, describe))
        return entries

    def _builtin_entries(self, folder: ModelFolder, describe: bool) -> list[ModelEntry]:
        if folder.builtin is None:
            return []
        entries = self._builtin.get(folder.kind)
        if entries is None:  # shipped with the pack: they do not change while it is loaded
            entries = self._builtin[folder.kind] = list(folder.builtin())
        if describe and any(entry.describe_when_listed for entry in entries):
            entries = self._builtin[folder.kind] = [self._described_builtin(folder, entry) for entry in entries]
        return list(entries)

    @staticmethod
    def _described_builtin(folder: ModelFolder, entry: ModelEntry) -> ModelEntry:
        if not entry.describe_when_listed or folder.describe is None:
            return entry
        return ModelEntry(entry.name, entry.path, {**_describe(folder, entry.path), **entry.info})

    def _entry(self, folder: ModelFolder, directory: Path, path: Path, around: list[Path],
               describe: bool = True) -> ModelEntry:
        """``path``'s entry; ``around``: the files whose change makes it be described again."""
        info: dict[str, Any] = {}
        if describe and folder.describe is not None:
            key = (folder.kind, path)
            version = _version(around)
            cached = self._described.get(key)
            if cached is not None and cached[0] == version:
                info = dict(cached[1])
            else:
                info = _describe(folder, path)
                self._described[key] = (version, dict(info))
        return ModelEntry(path.relative_to(directory).as_posix(), path, info)


def _describe(folder: ModelFolder, path: Path) -> dict[str, Any]:
    """What ``folder``'s pack says of ``path``; a broken file is described by its error, never hides the others."""
    try:
        return folder.describe(path)  # type: ignore[misc]
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


def _version(paths: list[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when one of ``paths`` is replaced, edited, added or removed."""
    version = []
    for path in paths:
        try:
            found = path.stat()
        except OSError:
            continue
        version.append((path.name, found.st_mtime_ns, found.st_size, found.st_ino))
    return tuple(version)
