"""Batches of images and latents: repeating, taking a run of items, joining.

One rule for IMAGE tensors and LATENT dicts alike: a LATENT's ``noise_mask`` follows its samples when
it has one mask per item, and stays as it is when one mask serves the whole batch.
"""

from __future__ import annotations

from typing import Any

from gouache.engine import InputError


def repeat(batch: Any, amount: int) -> Any:
    """The batch repeated ``amount`` times, item order kept (all of it, then all of it again)."""
    return batch.repeat(amount, *([1] * (batch.ndim - 1)))


def take(batch: Any, index: int, length: int) -> Any:
    """``length`` items from ``index`` on; an index past the batch, or a run past its end, is refused."""
    size = batch.shape[0]
    if index >= size:
        raise InputError("batch_index", f"{index} is past the batch's last item ({size - 1}); the batch has {size}",
                         "outside_batch")
    if index + length > size:
        raise InputError("length", f"{length} items from {index} reach past the batch of {size}; "
                                   f"use at most {size - index}", "outside_batch")
    return batch[index:index + length].clone()


def _mask_per_item(latent: dict[str, Any]) -> bool:
    mask = latent.get("noise_mask")
    return mask is not None and mask.shape[0] == latent["samples"].shape[0] and mask.shape[0] > 1


def repeat_latent(latent: dict[str, Any], amount: int) -> dict[str, Any]:
    """The LATENT's samples (and per-item noise masks) repeated ``amount`` times."""
    out = {**latent, "samples": repeat(latent["samples"], amount)}
    if _mask_per_item(latent):
        out["noise_mask"] = repeat(latent["noise_mask"], amount)
    return out


def take_latent(latent: dict[str, Any], index: int, length: int) -> dict[str, Any]:
    """``length`` latents from ``index`` on, with their noise masks when there is one per item."""
    out = {**latent, "samples": take(latent["samples"], index, length)}
    if _mask_per_item(latent):
        out["noise_mask"] = take(latent["noise_mask"], index, length)
    return out


def join_images(first: Any, second: Any) -> Any:
    """One batch of ``first``'s images then ``second``'s; sizes and channels must agree."""
    import torch

    if first.shape[1:] != second.shape[1:]:
        raise InputError("image2", f"is {second.shape[2]}x{second.shape[1]} with {second.shape[3]} channels but image1 "
                                   f"is {first.shape[2]}x{first.shape[1]} with {first.shape[3]}; scale one of them "
                                   "(ImageScale) first", "size_mismatch")
    return torch.cat([first, second])
