"""Latents: empty ones, resizing, and the VAE round trip between IMAGE and LATENT.

LATENT samples are in the model's space (the VAE's latents times ``scaling_factor``), as diffusers'
pipelines keep them; decoding divides by it first. Encoding takes the latent distribution's mode
(its mean), so VAEEncode is deterministic and cacheable.
"""

from __future__ import annotations

from typing import Any

from gouache.engine import InputError

LATENT_CHANNELS = 4
DOWNSCALE = 8
LATENT_RESIZE_METHODS = ("nearest-exact", "bilinear", "bicubic", "area")


def empty_latent(width: int, height: int, batch_size: int) -> dict[str, Any]:
    """Zeros [batch, 4, height/8, width/8]."""
    import torch

    if width % DOWNSCALE or height % DOWNSCALE:
        raise InputError("width" if width % DOWNSCALE else "height",
                         f"{width}x{height} is not a multiple of {DOWNSCALE}", "not_a_multiple")
    shape = (batch_size, LATENT_CHANNELS, height // DOWNSCALE, width // DOWNSCALE)
    return {"samples": torch.zeros(shape, dtype=torch.float32)}


def resize_latent(latent: dict[str, Any], width: int, height: int, method: str) -> dict[str, Any]:
    """A new LATENT whose samples (and noise mask) are resized to ``width`` x ``height`` pixels."""
    import torch

    if method not in LATENT_RESIZE_METHODS:
        raise InputError("method", f"unknown method {method!r}; choose one of {', '.join(LATENT_RESIZE_METHODS)}",
                         "not_a_choice")
    size = (height // DOWNSCALE, width // DOWNSCALE)
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    samples = torch.nn.functional.interpolate(latent["samples"], size=size, mode=method, **kwargs)
    out = {**latent, "samples": samples}
    if latent.get("noise_mask") is not None:
        mask = latent["noise_mask"]
        out["noise_mask"] = torch.nn.functional.interpolate(mask.reshape(-1, 1, *mask.shape[-2:]), size=size,
                                                            mode="bilinear")
    return out


def with_noise_mask(latent: dict[str, Any], mask: Any) -> dict[str, Any]:
    """A new LATENT that tells the sampler to repaint only where ``mask`` [B,H,W] is 1.

    The mask may have any resolution; the sampler resizes it to the latent's.
    """
    if not hasattr(mask, "shape") or mask.ndim not in (2, 3):
        raise InputError("mask", f"expected a MASK tensor [B,H,W], got {getattr(mask, 'shape', type(mask))}", "wrong_shape")
    mask = mask if mask.ndim == 3 else mask.unsqueeze(0)
    return {**latent, "noise_mask": mask.reshape(-1, 1, *mask.shape[-2:]).float().clone()}


def vae_scale_factor(vae: Any) -> int:
    """How many pixels one latent cell covers (8 for Stable Diffusion)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def decode(manager: Any, loaded: Any, latent: dict[str, Any], check_interrupt: Any = None) -> Any:
    """IMAGE [B,H,W,3] in 0..1 from a LATENT, as the pipelines' decode and postprocess do.

    ``check_interrupt`` is called before every layer (a large decode stops within one layer).
    """
    import torch

    from gouache.nodes.interrupt import interruptible

    vae = loaded.vae
    device = manager.on_device([vae])
    samples = latent["samples"].to(device=device, dtype=vae.dtype)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.no_grad(), interruptible([vae.decoder, vae.post_quant_conv], check_interrupt):
        images = vae.decode(samples / vae.config.scaling_factor + shift, return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1).movedim(1, -1).to("cpu").contiguous()


def encodable_pixels(image: Any, vae: Any) -> tuple[Any, int]:
    """``image`` as the VAE encodes it: RGB, sides cropped to whole latent cells; and the cell size.

    Raises ``InputError`` on ``image`` for what is not an IMAGE or is smaller than one cell.
    """
    if not hasattr(image, "shape") or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError("image", f"expected an IMAGE tensor [B,H,W,C], got {getattr(image, 'shape', type(image))}",
                         "wrong_shape")
    factor = vae_scale_factor(vae)
    height, width = (image.shape[1] // factor) * factor, (image.shape[2] // factor) * factor
    if height == 0 or width == 0:
        raise InputError("image", f"{image.shape[2]}x{image.shape[1]} is smaller than one latent cell ({factor} px)",
                         "too_small")
    pixels = image[:, :height, :width, :3]
    if pixels.shape[-1] == 1:
        pixels = pixels.expand(-1, -1, -1, 3)
    return pixels, factor


def encode(manager: Any, loaded: Any, image: Any, check_interrupt: Any = None) -> dict[str, Any]:
    """A LATENT from an IMAGE; sides that are not multiples of the VAE's factor are cropped.

    ``check_interrupt`` is called before every layer, as in :func:`decode`.
    """
    import torch

    from gouache.nodes.interrupt import interruptible

    vae = loaded.vae
    pixels, factor = encodable_pixels(image, vae)
    device = manager.on_device([vae])
    batch = (pixels.movedim(-1, 1) * 2 - 1).to(device=device, dtype=vae.dtype)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.no_grad(), interruptible([vae.encoder, vae.quant_conv], check_interrupt):
        latents = vae.encode(batch).latent_dist.mode()
    return {"samples": ((latents.float() - shift) * vae.config.scaling_factor).to("cpu")}
