"""How the output cache sizes, places and stores the pack's values: tensors, CONDITIONING, LATENT.

IMAGE and MASK are tensors and LATENT a dict of tensors, so a tensor codec and one for
``Conditioning`` cover every value the built-in nodes make except the handles to loaded models
(MODEL, CLIP, VAE, UPSCALE_MODEL), which have no codec: they stay in memory and their loader runs
again in a new process. Tensors are written with safetensors and read back without unpickling.
Importing this module imports no torch: tensors are recognised by class name through an ABC.
"""

from __future__ import annotations

import abc
from dataclasses import fields
from typing import Any

from gouache.engine import CacheDevice, cache_device, cache_size, register_codec
from gouache.nodes.types import Conditioning


class TorchTensor(abc.ABC):
    """``torch.Tensor`` and its subclasses, for ``singledispatch``, without importing torch."""

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        if any(base.__name__ == "Tensor" and base.__module__ == "torch" for base in other.__mro__):
            return True
        return NotImplemented


def device_memory(device: Any) -> int | None:
    """The total memory of a torch ``device``, or ``None`` where torch cannot tell."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return int(torch.mps.recommended_max_memory())
    return None


@cache_device.register(TorchTensor)
def _tensor_device(value: Any) -> CacheDevice | None:
    if value.device.type == "cpu":
        return None
    return CacheDevice(str(value.device), device_memory(value.device))


@cache_size.register(Conditioning)
def _conditioning_size(value: Conditioning) -> int:
    return sum(cache_size(entry.embeds) + sum(cache_size(part) for part in (entry.pooled, entry.mask, entry.inpaint)
                                                     if part is not None)
               for entry in value.entries())


@cache_device.register(Conditioning)
def _conditioning_device(value: Conditioning) -> CacheDevice | None:
    return cache_device([value.embeds, value.pooled])


def encode_tensor(value: Any) -> dict[str, Any]:
    """A tensor as safetensors bytes and the device it was on."""
    from safetensors.torch import save

    return {"safetensors": save({"tensor": value.detach().to("cpu").contiguous()}), "device": str(value.device)}


def decode_tensor(tree: dict[str, Any]) -> Any:
    """The tensor :func:`encode_tensor` wrote, back on its device where this machine has it (else the CPU)."""
    import torch
    from safetensors.torch import load

    tensor = load(tree["safetensors"])["tensor"]
    device = torch.device(tree["device"])
    available = device.type == "cuda" and torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return tensor.to(device) if available else tensor


def encode_conditioning(value: Conditioning) -> dict[str, Any]:
    """Every field of a ``Conditioning``: tensors through their codec, the rest as plain data."""
    return {spec.name: getattr(value, spec.name) for spec in fields(value)}


def decode_conditioning(tree: dict[str, Any]) -> Conditioning:
    """A ``Conditioning`` from its fields; a field this version does not know fails (the entry is recomputed)."""
    size, area = tree.get("size"), tree.get("area")
    return Conditioning(**{**tree, "size": tuple(tuple(pair) for pair in size) if size is not None else None,
                           "area": tuple(area) if area is not None else None,
                           "timestep_range": tuple(tree.get("timestep_range", (0.0, 1.0))),
                           "more": tuple(tree.get("more", ())), "controls": tuple(tree.get("controls", ()))})


register_codec(TorchTensor, "torch.tensor/1", encode_tensor, decode_tensor)
register_codec(Conditioning, "gouache.conditioning/1", encode_conditioning, decode_conditioning)
