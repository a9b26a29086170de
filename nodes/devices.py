"""Which device and dtypes run the models.

``settings.device`` ``auto`` picks CUDA, then Apple's MPS, then the CPU. On GPUs the UNet and the
text encoders run in half precision (bf16 where the GPU supports it, else fp16); the VAE stays in
fp32 unless bf16 is available, because SD's VAEs overflow in fp16 (the well-known black images).
On the CPU everything is fp32, which is also what makes the parity tests with diffusers exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DevicePlan:
    """The compute device and the dtype of each part."""

    device: Any
    """A ``torch.device``."""
    unet_dtype: Any
    text_dtype: Any
    vae_dtype: Any

    @property
    def is_gpu(self) -> bool:
        """Whether models live off the CPU (and so compete for memory)."""
        return self.device.type != "cpu"


def pick_device(setting: str) -> Any:
    """The ``torch.device`` for ``settings.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    if setting in ("", "auto", None):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"settings.device is {setting!r} but this torch build sees no CUDA GPU; use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"settings.device is {setting!r} but MPS is not available here; use 'auto' or 'cpu'")
    return device


def plan_for(setting: str) -> DevicePlan:
    """The device and dtypes for ``settings.device``."""
    import torch

    device = pick_device(setting)
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        vae = torch.bfloat16 if half is torch.bfloat16 else torch.float32
        return DevicePlan(device, half, half, vae)
    if device.type == "mps":
        return DevicePlan(device, torch.float16, torch.float16, torch.float32)
    return DevicePlan(device, torch.float32, torch.float32, torch.float32)


def free_bytes(device: Any) -> int | None:
    """Free memory on ``device`` as the driver reports it, or ``None`` where unknown (CPU)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None
