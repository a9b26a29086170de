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
"""

from .convert import diffusers_to_original
from .errors import ModelLoadError
from .detect import Detection, detect_checkpoint, detect_family, detect_folder
from .files import fingerprint, read_state_dict
from .loader import LoadedCheckpoint, LoadedEncoder, load_checkpoint
from .shipped import load_clip_tokenizer, load_tokenizer, shipped_config_dir

__all__ = [
    "Detection",
    "LoadedCheckpoint",
    "LoadedEncoder",
    "ModelLoadError",
    "detect_checkpoint",
    "detect_family",
    "detect_folder",
    "diffusers_to_original",
    "fingerprint",
    "load_checkpoint",
    "load_clip_tokenizer",
    "load_tokenizer",
    "read_state_dict",
    "shipped_config_dir",
]
