"""Where gouache keeps its files, and the options a user sets in ``config.json`` there."""

from __future__ import annotations

import json
import os
import posixpath
import reprlib
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

APP_NAME = "gouache"
GiB = 1024**3


def physical_memory_bytes() -> int | None:
    """This machine's RAM in bytes, or ``None`` where the stdlib cannot tell (``os.sysconf`` is missing on Windows)."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _share_of_ram(divisor: int, unknown: int, cap: int | None = None) -> int:
    ram = physical_memory_bytes()
    if ram is None:
        return unknown
    return ram // divisor if cap is None else min(ram // divisor, cap)


DEFAULT_CACHE_BYTES = _share_of_ram(8, unknown=2 * GiB, cap=8 * GiB)
"""Node outputs kept in RAM: 1/8 of the machine's RAM, at most 8 GiB (2 GiB where RAM is unknown).

Long-lived servers grow toward it (every new seed adds latents and images), so it follows the machine
instead of a fixed figure that suits a workstation and starves a laptop."""
DEFAULT_MODEL_CACHE_BYTES = _share_of_ram(2, unknown=8 * GiB)
"""Loaded checkpoints, LoRAs and upscalers kept in RAM: half the machine's RAM (8 GiB where unknown).
A model the current run uses is kept even past it."""
DEFAULT_DISK_CACHE_BYTES = 4 * GiB
"""Node outputs kept under ``home/cache``: 4 GiB, a few thousand 1024 px images or a hundred thousand 128 px ones."""
DEVICE_CACHE_SHARE = 8
"""Without ``cache_device_bytes``, outputs held on a GPU may take 1/8 of that GPU's memory (as the pack
that made them reports it; 1 GiB where it does not)."""


def user_data_dir(app: str = APP_NAME) -> Path:
    """The platform's per-user data folder for ``app``: the one ``platformdirs.user_data_dir(app)`` names.

    Linux and other POSIX systems: ``$XDG_DATA_HOME/app`` (when it is an absolute path), else
    ``~/.local/share/app``; macOS: ``$XDG_DATA_HOME/app`` likewise, else
    ``~/Library/Application Support/app``; Windows: ``%LOCALAPPDATA%\\app\\app`` (platformdirs puts
    the app under a folder named after its author, which defaults to the app's name). Written here
    with the stdlib so that the engine needs no platformdirs; the tests compare the two.
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
        return Path(local, app, app)
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if posixpath.isabs(xdg):
        return Path(xdg, app)
    if sys.platform == "darwin":
        return Path(os.path.expanduser("~/Library/Application Support"), app)
    return Path(os.path.expanduser("~/.local/share"), app)


class ConfigFile(BaseModel):
    """What ``config.json`` in the base directory may hold; any other key is refused."""

    # Built when a config file is first read: most homes have none, and building the validator
    # at import was a tenth of what `gouache serve` adds to its imports.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    device: str = "auto"
    cache_bytes: int = Field(DEFAULT_CACHE_BYTES, ge=0)
    cache_device_bytes: int | None = Field(None, ge=0)
    disk_cache_bytes: int = Field(DEFAULT_DISK_CACHE_BYTES, ge=0)
    model_cache_bytes: int = Field(DEFAULT_MODEL_CACHE_BYTES, ge=0)
    memory_budget_bytes: int | None = Field(None, ge=0)
    extra_model_roots: list[str] = []
    model_dirs: dict[str, list[str]] = {}

    @field_validator("cache_bytes", "cache_device_bytes", "disk_cache_bytes", "model_cache_bytes",
                     "memory_budget_bytes", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # JSON true would otherwise pass as 1 byte.
        if isinstance(value, bool):
            raise ValueError(f"Input should be a number of bytes, not {str(value).lower()}")
        return value


def read_config(path: Path) -> ConfigFile:
    """``config.json`` at ``path`` (defaults when it does not exist), or a ``ValueError`` saying what to fix.

    Every problem is reported at once, each with its key; an unknown key (a typo such as
    ``cache_byte``) gets the closest known key as a suggestion instead of being silently ignored.
    """
    if not path.is_file():
        return ConfigFile.model_construct()  # the defaults, which need no validation (nor a validator built)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as error:
        problems = [_describe(problem) for problem in error.errors(include_url=False)]
        raise ValueError(f"{path} is not a valid gouache config ({len(problems)} problem"
                         f"{'s' * (len(problems) != 1)}):\n" + "\n".join(f"  {p}" for p in problems)) from None


def _describe(problem: Any) -> str:
    """One pydantic error as ``key 'a.b': what is wrong``, with a suggestion for an unknown key."""
    location = problem["loc"]
    if not location:
        return f"the file must hold a JSON object of settings, not {type(problem['input']).__name__}"
    key = ".".join(str(part) for part in location)
    if problem["type"] == "extra_forbidden" and len(location) == 1:
        known = list(ConfigFile.model_fields)
        import difflib  # only when suggesting a name: it is not needed to start

        close = difflib.get_close_matches(str(location[0]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {key!r}: {hint}known keys are {', '.join(known)}"
    message = problem["msg"].removeprefix("Value error, ")
    found = f"(found {reprlib.repr(problem['input'])})"
    if message.startswith("Input should "):
        return f"key {key!r} must {message.removeprefix('Input should ')} {found}"
    return f"key {key!r}: {message} {found}"


@dataclass(frozen=True)
class Settings:
    """The base directory and options of one engine.

    The base directory holds ``models/``, ``input/``, ``output/``, ``temp/`` and the server's
    database. It is ``GOUACHE_HOME`` if set, else the platform's user data folder. A
    ``config.json`` there may set ``device``, the byte budgets below, ``extra_model_roots``
    (folders laid out like ``models/``, e.g. another tool's) and ``model_dirs``
    (``{"checkpoints": ["/data/sd"]}``).
    """

    home: Path
    device: str = "auto"
    cache_bytes: int = DEFAULT_CACHE_BYTES
    """Node outputs kept in RAM (see ``DEFAULT_CACHE_BYTES``)."""
    cache_device_bytes: int | None = None
    """Node outputs kept on each GPU; ``None``: 1/``DEVICE_CACHE_SHARE`` of its memory."""
    disk_cache_bytes: int = DEFAULT_DISK_CACHE_BYTES
    """Node outputs kept under ``home/cache`` when the engine's disk tier is on; 0 turns it off."""
    model_cache_bytes: int = DEFAULT_MODEL_CACHE_BYTES
    """Loaded models kept in RAM; least recently used ones not needed by the current run go first."""
    memory_budget_bytes: int | None = None
    """Models on the GPU at once; ``None``: what the driver reports free, less a margin."""
    extra_model_roots: tuple[Path, ...] = ()
    model_dirs: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    output_dir: Path | None = None
    """Where saved images go, if not ``home/output``."""

    @classmethod
    def load(cls, home: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from ``home`` (or the environment), its ``config.json`` and ``overrides``."""
        base = Path(home or os.environ.get("GOUACHE_HOME") or user_data_dir())
        base = base.expanduser().resolve()
        config = read_config(base / "config.json")
        settings = cls(
            home=base,
            device=config.device,
            cache_bytes=config.cache_bytes,
            cache_device_bytes=config.cache_device_bytes,
            disk_cache_bytes=config.disk_cache_bytes,
            model_cache_bytes=config.model_cache_bytes,
            memory_budget_bytes=config.memory_budget_bytes,
            extra_model_roots=tuple(Path(p).expanduser() for p in config.extra_model_roots),
            model_dirs={kind: tuple(Path(p).expanduser() for p in paths)
                        for kind, paths in config.model_dirs.items()},
        )
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})

    @property
    def cache_dir(self) -> Path:
        """The disk tier of the output cache."""
        return self.home / "cache"

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
