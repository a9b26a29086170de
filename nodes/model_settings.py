"""What a checkpoint carries about itself beyond its weights: settings that suit it, preview factors.

A diffusers folder may hold a ``gouache.json``; a single file ``NAME.safetensors`` may have a
``NAME.gouache.json`` beside it (or take the one of the config folder it is read with)::

    {"modules": "native",
     "defaults": {"width": 128, "height": 128, "steps": 20, "cfg": 3.0, "sampler": "euler", "scheduler": "normal"},
     "preview": {"rgb_factors": [[r, g, b], ...], "rgb_bias": [r, g, b],
                 "hidden": [[...], ...], "hidden_bias": [...]}}

``modules`` picks what the model loads into: ``"diffusers"`` (the default: diffusers' and transformers'
classes) or ``"native"`` (gouache's own compact modules, ``gouache.nodes.native``, for SD 1.x-family
models: the same numbers without importing diffusers or transformers, which costs seconds on a small
machine). ``defaults`` has the fields of :class:`~gouache.nodes.families.Defaults` (any left out come from the
family's); ``preview`` replaces the family's latent-to-RGB factors (``LatentFormat``), with an
optional hidden layer. The embedded ``gouache-tiny`` ships one (its preview factors fitted by
``training/gouache_training/preview_factors.py``). Reading it imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gouache.nodes.families import Defaults, Family, LatentFormat

SETTINGS_FILE = "gouache.json"
SUFFIX = ".gouache.json"
SETTINGS_KEYS = ("defaults", "preview", "modules")
MODULE_CHOICES = ("diffusers", "native")
DEFAULT_INPUTS = {"width": "width", "height": "height", "steps": "steps", "cfg": "cfg",
                  "sampler": "sampler_name", "scheduler": "scheduler", "guidance": "guidance"}
"""Each ``Defaults`` field and the input name the editor sets it on."""


class ModelSettingsError(ValueError):
    """A settings file that cannot be read or holds what it should not; the message names the file."""


def settings_file(path: Path, config_dir: Path | None = None) -> Path | None:
    """The settings file of the checkpoint at ``path`` (read with ``config_dir``), if there is one."""
    candidates = [path / SETTINGS_FILE] if path.is_dir() else [path.with_name(path.stem + SUFFIX)]
    if config_dir is not None:
        candidates.append(Path(config_dir) / SETTINGS_FILE)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def read_settings(path: Path, config_dir: Path | None = None) -> dict[str, Any]:
    """The checkpoint's settings (``{}`` without a file); :class:`ModelSettingsError` when unreadable."""
    found = settings_file(path, config_dir)
    if found is None:
        return {}
    try:
        settings = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelSettingsError(f"{found}: not a readable JSON settings file ({error})") from None
    expected = f"{found}: a settings file holds an object with {', '.join(map(repr, SETTINGS_KEYS))} only"
    if not isinstance(settings, dict):
        raise ModelSettingsError(expected)
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise ModelSettingsError(f"{expected}; unknown: {', '.join(map(repr, unknown))}")
    if settings.get("modules", MODULE_CHOICES[0]) not in MODULE_CHOICES:
        raise ModelSettingsError(f"{found}: 'modules' is one of {', '.join(map(repr, MODULE_CHOICES))}, "
                                 f"not {settings['modules']!r}")
    return settings


def module_choice(settings: dict[str, Any]) -> str:
    """What the model loads into: ``diffusers`` (the default) or ``native``."""
    return str(settings.get("modules", MODULE_CHOICES[0]))


def defaults(family: Family, settings: dict[str, Any]) -> Defaults:
    """The family's defaults with what the settings file states in their place."""
    stated = settings.get("defaults") or {}
    known = {field.name for field in dataclasses.fields(Defaults)}
    unknown = sorted(set(stated) - known)
    if unknown:
        raise ModelSettingsError(f"unknown defaults {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(family.defaults, **stated)


def input_defaults(recommended: Defaults) -> dict[str, Any]:
    """The defaults by the input names the editor sets (``sampler`` is ``sampler_name``); unset ones left out."""
    values = dataclasses.asdict(recommended)
    return {DEFAULT_INPUTS[name]: value for name, value in values.items() if value is not None}


def preview_format(family: Family, settings: dict[str, Any]) -> LatentFormat:
    """The latent format previews use: the family's, with the settings file's factors in place."""
    preview = settings.get("preview")
    if not preview:
        return family.latent
    try:
        factors = tuple(tuple(float(v) for v in row) for row in preview["rgb_factors"])
        bias = tuple(float(v) for v in preview.get("rgb_bias", (0.0, 0.0, 0.0)))
        hidden = preview.get("hidden")
        hidden_rows = tuple(tuple(float(v) for v in row) for row in hidden) if hidden else None
        hidden_bias = tuple(float(v) for v in preview["hidden_bias"]) if hidden else None
    except (KeyError, TypeError, ValueError) as error:
        raise ModelSettingsError(f"preview factors: {error!r}; give rgb_factors, rgb_bias (and hidden, hidden_bias)") from None
    width = len(hidden_rows[0]) if hidden_rows else family.latent.channels
    rows = len(hidden_rows) if hidden_rows else len(factors)
    if rows != family.latent.channels or len(factors) != width or any(len(row) != 3 for row in factors) or len(bias) != 3:
        raise ModelSettingsError(f"preview factors do not fit {family.label}'s {family.latent.channels} latent channels")
    return dataclasses.replace(family.latent, rgb_factors=factors, rgb_bias=bias, hidden=hidden_rows,
                               hidden_bias=hidden_bias)
