"""gouache's own compact modules for the architectures the embedded model uses.

Importing diffusers and transformers costs more on a small machine than the embedded model's whole render
(``docs/benchmarks.md``, "The first minute"). These modules compute what diffusers' ``UNet2DConditionModel``
and ``AutoencoderKL`` and transformers' ``CLIPTextModel`` and ``CLIPTokenizer`` compute, for the subset of
their configurations Stable Diffusion 1.x-style models use, with the same state-dict keys and the call
interface gouache's nodes use, so a model loads into either and the nodes cannot tell which. A model's
settings file chooses (``"modules": "native"``; ``nodes/model_settings.py``); the embedded model ships with
it. Tests hold each module equal to its diffusers or transformers counterpart.

A configuration outside the subset is refused with ``UnsupportedConfig`` naming the key, never run
approximately.
"""

from __future__ import annotations


class UnsupportedConfig(ValueError):
    """A config value the native modules do not implement; the message names the key and the value."""
