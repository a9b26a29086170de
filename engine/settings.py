"""Where gouache keeps its files, and the options a user sets in ``config.json`` there."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

DEFAULT_CACHE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Settings:
    """The base directory and options of one engine.

    The base directory holds ``models/``, ``input/``, ``output/``, ``temp/`` and the server's
    database. It is ``GOUACHE_HOME`` if set, else the platform's user data folder. A
    ``config.json`` there may set ``device``, ``cache_bytes``, ``memory_budget_bytes``,
    ``extra_model_roots`` (folders laid out like ``models/``, e.g. another tool's) and
    ``model_dirs`` (``{"checkpoints": ["/data/sd"]}``).
    """

    home: Path
    device: str = "auto"
    cache_bytes: int = DEFAULT_CACHE_BYTES
    memory_budget_bytes: int | None = None
    extra_model_roots: tuple[Path, ...] = ()
    model_dirs: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    output_dir: Path | None = None
    """Where saved images go, if not ``home/output``."""

    @classmethod
    def load(cls, home: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from ``home`` (or the environment), its ``config.json`` and ``overrides``."""
        base = Path(home or os.environ.get("GOUACHE_HOME") or platformdirs.user_data_dir("gouache"))
        base = base.expanduser().resolve()
        config: dict[str, Any] = {}
        config_path = base / "config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{config_path} is not valid JSON: {error}") from None
        settings = cls(
            home=base,
            device=str(config.get("device", "auto")),
            cache_bytes=int(config.get("cache_bytes", DEFAULT_CACHE_BYTES)),
            memory_budget_bytes=config.get("memory_budget_bytes"),
            extra_model_roots=tuple(Path(p).expanduser() for p in config.get("extra_model_roots", [])),
            model_dirs={kind: tuple(Path(p).expanduser() for p in paths)
                        for kind, paths in config.get("model_dirs", {}).items()},
        )
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})

    @property
    def models_dir(self) -> Path:
        """The base ``models/`` folder."""
        return self.home / "models"

    def folder(self, kind: str) -> Path:
        """The folder for ``input``, ``output`` or ``temp`` files, created on first use."""
        if kind not in ("input", "output", "temp"):
            raise ValueError(f"unknown file kind {kind!r}; use input, output or temp")
        path = self.output_dir if kind == "output" and self.output_dir else self.home / kind
        path.mkdir(parents=True, exist_ok=True)
        return path
