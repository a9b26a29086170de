"""Saved workflows: the user's, in ``home/workflows`` (read-write), and the shipped ones (read-only)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


def shipped_folder() -> Path | None:
    """The ``workflows/`` folder that ships with gouache (the package ``gouache.workflows``)."""
    try:
        packaged = Path(str(resources.files("gouache.workflows")))
    except (ModuleNotFoundError, TypeError):
        return None
    return packaged if packaged.is_dir() else None


class WorkflowNameError(ValueError):
    """A workflow name that is not a plain file name."""


def check_name(name: str) -> str:
    """The name without a ``.json`` suffix, if it is a plain name (letters, digits, ``_ .-``)."""
    if name.endswith(".json"):
        name = name[:-5]
    if not NAME.match(name) or ".." in name:
        raise WorkflowNameError(
            f"{name!r} is not a usable workflow name: use up to 100 letters, digits, spaces, '_', '.' or '-'")
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
                if NAME.match(name) and name not in found:
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
        """The workflow called ``name`` (the user's wins over a shipped one), or None."""
        path, _ = self._path(check_name(name))
        return None if path is None else json.loads(path.read_text(encoding="utf-8"))

    def is_shipped(self, name: str) -> bool:
        """Whether ``name`` is a shipped workflow (which cannot be replaced or deleted)."""
        return self.shipped is not None and (self.shipped / f"{check_name(name)}.json").is_file()

    def save(self, name: str, workflow: dict[str, Any]) -> bool:
        """Write the user's workflow atomically; returns whether it is new."""
        name = check_name(name)
        self.user.mkdir(parents=True, exist_ok=True)
        path = self.user / f"{name}.json"
        created = not path.exists()
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(workflow, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return created

    def delete(self, name: str) -> bool:
        """Delete the user's workflow; returns whether there was one."""
        path = self.user / f"{check_name(name)}.json"
        if not path.is_file():
            return False
        path.unlink()
        return True


def _title(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("meta") or {}
        return meta.get("title") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        return None
