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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gouache.engine import jsonio

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")
"""A whole name (matched with ``fullmatch``: ``$`` would also accept a trailing newline)."""
TEMPORARY_SUFFIX = ".json.tmp"


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

    def list(self) -> list[dict[str, Any]]:
        """Every workflow: shipped ones (read-only) and the user's, sorted by name."""
        found: dict[str, dict[str, Any]] = {}
        for folder, source in ((self.user, "user"), (self.shipped, "shipped")):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                name = path.stem
                if NAME.fullmatch(name) and name not in found:
                    title = _title(path)
                    found[name] = {"name": name, "source": source, "read_only": source == "shipped",
                                   "title": title, "modified": path.stat().st_mtime}
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


def _title(path: Path) -> str | None:
    try:
        meta = jsonio.loads(path.read_bytes()).get("meta") or {}
        title = meta.get("title") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        return None
    return title if isinstance(title, str) else None
