"""Saved workflows: the user's, in ``home/workflows`` (read-write), and the shipped ones (read-only).

A save writes a temporary file beside the target and renames it over the target, so a crash or a
refused write never leaves a cut workflow; temporaries a crash left are removed at start-up
(:meth:`WorkflowLibrary.clean`). Files are strict JSON (:mod:`gouache.engine.jsonio`) both ways.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gouache.engine import jsonio

log = logging.getLogger(__name__)

Prefixes = Callable[[dict[str, Any]], list[str]]
"""The file-name prefixes a workflow's output nodes save under (the server reads them off the registry)."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")
"""A whole name (matched with ``fullmatch``: ``$`` would also accept a trailing newline)."""
TEMPORARY_SUFFIX = ".json.tmp"
THUMBNAILS = "thumbnails"
"""The shipped folder's pictures of what its workflows make (``thumbnails/NAME.png``)."""


def shipped_folder() -> Path | None:
    """The ``workflows/`` folder that ships with gouache (the package ``gouache.workflows``)."""
    try:
        packaged = Path(str(resources.files("gouache.workflows")))
    except (ModuleNotFoundError, TypeError):
        return None
    return packaged if packaged.is_dir() else None


class WorkflowNameError(ValueError):
    """A workflow name that is not a plain file name."""


class StoredWorkflowError(ValueError):
    """A saved file that is not strict JSON (edited by hand, or written by an older version)."""


def check_name(name: str) -> str:
    """The name without a ``.json`` suffix, if it is a plain name (letters, digits, ``_ .-``)."""
    if name.endswith(".json"):
        name = name[:-5]
    if not NAME.fullmatch(name) or ".." in name:
        raise WorkflowNameError(
            f"{jsonio.shorten(name)} is not a usable workflow name: use up to 100 letters, digits, spaces, "
            "'_', '.' or '-', starting with a letter or digit (no line breaks or control characters)")
    return name


@dataclass
class WorkflowLibrary:
    """Lists, reads, saves and deletes workflows by name."""

    user: Path
    shipped: Path | None

    def list(self, outputs: Path | None = None, prefixes: Prefixes | None = None) -> list[dict[str, Any]]:
        """Every workflow: shipped ones (read-only) and the user's, sorted by name, each with its title,
        description and, when it has one, the URL of its thumbnail (:meth:`thumbnail`)."""
        found: dict[str, dict[str, Any]] = {}
        for folder, source in ((self.user, "user"), (self.shipped, "shipped")):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                name = path.stem
                if NAME.fullmatch(name) and name not in found:
                    meta, workflow = _meta(path)
                    picture = self._thumbnail(name, workflow, outputs, prefixes)
                    found[name] = {"name": name, "source": source, "read_only": source == "shipped",
                                   "title": meta.get("title"), "description": meta.get("description"),
                                   "thumbnail": f"/api/workflows/{name}/thumbnail" if picture else None,
                                   "modified": path.stat().st_mtime}
        return sorted(found.values(), key=lambda item: item["name"].lower())

    def _path(self, name: str) -> tuple[Path | None, bool]:
        user = self.user / f"{name}.json"
        if user.is_file():
            return user, False
        if self.shipped is not None and (self.shipped / f"{name}.json").is_file():
            return self.shipped / f"{name}.json", True
        return None, False

    def read(self, name: str) -> dict[str, Any] | None:
        """The workflow called ``name`` (the user's wins over a shipped one), or None.

        Raises :class:`StoredWorkflowError` when the file is not strict JSON.
        """
        path, _ = self._path(check_name(name))
        if path is None:
            return None
        try:
            return jsonio.loads(path.read_bytes())
        except jsonio.JsonError as error:
            raise StoredWorkflowError(f"the saved workflow {name!r} ({path}) cannot be served: {error}; "
                                      "fix the file or delete it") from None

    def thumbnail(self, name: str, outputs: Path | None, prefixes: Prefixes | None = None) -> Path | None:
        """The picture that stands for a workflow: the newest image in ``outputs`` written under one of
        the file-name prefixes ``prefixes(workflow)`` finds (its last output), else a shipped picture of what it makes
        (``thumbnails/NAME.png``) or the one it starts from (``NAME.png`` beside it)."""
        path, _ = self._path(check_name(name))
        if path is None:
            return None
        return self._thumbnail(name, _meta(path)[1], outputs, prefixes)

    def _thumbnail(self, name: str, workflow: dict[str, Any], outputs: Path | None,
                   prefixes: Prefixes | None) -> Path | None:
        newest: tuple[float, Path] | None = None
        for prefix in prefixes(workflow) if outputs is not None and prefixes is not None else ():
            if not prefix:
                continue
            folder = (outputs / prefix).parent.resolve()
            if not folder.is_relative_to(outputs.resolve()) or not folder.is_dir():
                continue
            for candidate in folder.glob(f"{glob_escape(Path(prefix).name)}_*.png"):
                modified = candidate.stat().st_mtime
                if newest is None or modified > newest[0]:
                    newest = (modified, candidate)
        if newest is not None:
            return newest[1]
        if self.shipped is None:
            return None
        shipped = (self.shipped / THUMBNAILS / f"{name}.png", self.shipped / f"{name}.png")
        return next((path for path in shipped if path.is_file()), None)

    def is_shipped(self, name: str) -> bool:
        """Whether ``name`` is a shipped workflow (which cannot be replaced or deleted)."""
        return self.shipped is not None and (self.shipped / f"{check_name(name)}.json").is_file()

    def save(self, name: str, workflow: dict[str, Any]) -> bool:
        """Write the user's workflow atomically; returns whether it is new.

        Raises ``ValueError`` (before touching the disk) when ``workflow`` holds NaN or Infinity,
        or text that is not valid Unicode.
        """
        name = check_name(name)
        data = (jsonio.dumps(workflow, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        self.user.mkdir(parents=True, exist_ok=True)
        path = self.user / f"{name}.json"
        created = not path.exists()
        # A unique temporary per save: two saves of one name at once never write the same file.
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMPORARY_SUFFIX, dir=self.user)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return created

    def clean(self) -> list[str]:
        """Remove temporaries a crashed save left behind; returns their names."""
        if not self.user.is_dir():
            return []
        removed = []
        for path in self.user.glob(f"*{TEMPORARY_SUFFIX}"):
            try:
                path.unlink()
                removed.append(path.name)
            except OSError as error:
                log.warning("cannot remove the leftover temporary %s: %s", path, error)
        return removed

    def delete(self, name: str) -> bool:
        """Delete the user's workflow; returns whether there was one."""
        path = self.user / f"{check_name(name)}.json"
        if not path.is_file():
            return False
        path.unlink()
        return True


def _meta(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """A workflow file's title and description (the strings its ``meta`` holds), and the workflow."""
    try:
        workflow = jsonio.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}, {}
    if not isinstance(workflow, dict):
        return {}, {}
    meta = workflow.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    return {key: meta[key] for key in ("title", "description") if isinstance(meta.get(key), str)}, workflow


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)
