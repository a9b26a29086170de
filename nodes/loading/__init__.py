"""Offline model loading: family detection, single-file conversion and checkpoint loading.

What each family is lives in ``gouache.nodes.families``; this package reads those descriptions.

The public API, used by the node pack and the embedded model:

* ``load_checkpoint(path, *, config_dir=None, dtype=torch.float32, device="cpu", prediction_type=None)``
  -> ``LoadedCheckpoint``
* ``fingerprint(path)`` -> ``str``, a cache key for a model file or folder
* ``detect_checkpoint(state_dict, path=None)`` / ``detect_folder(folder)`` -> ``Detection``
* ``diffusers_to_original(unet, vae, text_encoder, text_encoder_2=None, family="sd1")`` -> state dict
* ``read_state_dict(path)``, ``shipped_config_dir(family)``, ``load_clip_tokenizer(folder)``
* ``ModelLoadError``, raised for anything a user can fix

Each name is imported from its module on first use (PEP 562 ``__getattr__``): the loader brings in
torch, diffusers and transformers (seconds), which ``fingerprint`` and ``detect_folder`` (the
server's model listing, cache keys) must not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .convert import diffusers_to_original
    from .detect import Detection, detect_checkpoint, detect_family, detect_folder
    from .errors import ModelLoadError
    from .files import fingerprint, read_state_dict
    from .loader import LoadedCheckpoint, LoadedEncoder, load_checkpoint
    from .shipped import load_clip_tokenizer, load_tokenizer, shipped_config_dir

_HOME = {
    "Detection": "detect",
    "LoadedCheckpoint": "loader",
    "LoadedEncoder": "loader",
    "ModelLoadError": "errors",
    "detect_checkpoint": "detect",
    "detect_family": "detect",
    "detect_folder": "detect",
    "diffusers_to_original": "convert",
    "fingerprint": "files",
    "load_checkpoint": "loader",
    "load_clip_tokenizer": "shipped",
    "load_tokenizer": "shipped",
    "read_state_dict": "files",
    "shipped_config_dir": "shipped",
}
"""Which module of this package defines each public name."""

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
