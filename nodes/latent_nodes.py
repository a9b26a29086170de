"""Latent nodes: encoding for inpainting, latent composites and batches, tiled VAE encode and decode.

Each node names its ComfyUI counterpart in ``docs/builtin-nodes.md``.
"""

from __future__ import annotations

from gouache.engine import Input, Node, Output
from gouache.nodes.latent import DOWNSCALE
from gouache.nodes.support import MAX_SIDE

MAX_BATCH = 4096


class InpaintEncode(Node):
    """Encode an image for inpainting: the masked area is filled with neutral grey before encoding, and the
    mask, grown by a ``grow_mask_by``-wide square, becomes the latent's noise mask (1 = repaint).

    Meant for full denoising (``denoise`` 1): what was under the mask is gone. The mask must have the
    image's size; sides that are not multiples of the VAE's factor are cropped.
    """

    type_name = "InpaintEncode"
    category = "latent/inpaint"
    inputs = [Input("pixels", "IMAGE"), Input("vae", "VAE"), Input("mask", "MASK"),
              Input("grow_mask_by", "INT", default=6, min=0, max=64)]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, pixels, vae, mask, grow_mask_by):
        from gouache.nodes.compositing import inpaint_pixels
        from gouache.nodes.latent import encode, vae_scale_factor, with_noise_mask
        from gouache.nodes.support import manager_of

        loaded = vae.checkpoint.loaded
        filled, noise_mask = inpaint_pixels(pixels, mask, grow_mask_by, vae_scale_factor(loaded.vae))
        latent = encode(manager_of(ctx), loaded, filled, ctx.check_interrupt)
        return {"latent": with_noise_mask(latent, noise_mask)}


class InpaintModelConditioning(Node):
    """Conditioning for inpainting models (9-channel UNets): the picture with the masked area filled grey is
    encoded, and that latent with the mask at the latent's size goes with both conditionings, which the UNet
    reads beside the noisy latent at every step.

    ``latent`` is the whole picture encoded, with the mask as its noise mask when ``noise_mask`` is on (only
    the masked area changes). A 4-channel model reads only that latent. The mask must have the picture's
    size; sides that are not multiples of the VAE's factor are cropped.
    """

    type_name = "InpaintModelConditioning"
    category = "conditioning/inpaint"
    inputs = [Input("positive", "CONDITIONING"), Input("negative", "CONDITIONING"), Input("vae", "VAE"),
              Input("pixels", "IMAGE"), Input("mask", "MASK"),
              Input("noise_mask", "BOOLEAN", default=True,
                    description="Also limit sampling to the masked area, as SetLatentNoiseMask does.")]
    outputs = [Output("positive", "CONDITIONING"), Output("negative", "CONDITIONING"), Output("latent", "LATENT")]

    def run(self, ctx, positive, negative, vae, pixels, mask, noise_mask):
        from dataclasses import replace

        import torch

        from gouache.nodes.compositing import inpaint_pixels
        from gouache.nodes.latent import encode, vae_scale_factor, with_noise_mask
        from gouache.nodes.masks import as_mask, fit_batch
        from gouache.nodes.support import manager_of

        loaded = vae.checkpoint.loaded
        manager = manager_of(ctx)
        filled, _ = inpaint_pixels(pixels, mask, 0, vae_scale_factor(loaded.vae))
        height, width = filled.shape[1:3]
        weights = fit_batch(as_mask(mask, "mask"), pixels.shape[0], "mask")[:, :height, :width].float()
        masked = encode(manager, loaded, filled, ctx.check_interrupt)["samples"]
        latent = encode(manager, loaded, pixels[:, :height, :width], ctx.check_interrupt)
        # As ComfyUI: the mask scaled to the latent bilinearly, then rounded to 0 or 1.
        cells = torch.nn.functional.interpolate(weights[:, None], size=masked.shape[-2:], mode="bilinear").round()
        concat = torch.cat([cells, masked], dim=1)
        out = with_noise_mask(latent, weights) if noise_mask else latent
        return {"positive": positive.map_entries(lambda entry: replace(entry, inpaint=concat)),
                "negative": negative.map_entries(lambda entry: replace(entry, inpaint=concat)),
                "latent": out}


class CompositeLatents(Node):
    """Paste ``samples_from`` into ``samples_to`` at x/y pixels, fading in over ``feather`` pixels on the
    sides inside ``samples_to``. Offsets count 8 pixels per latent cell, as EmptyLatent's sizes do."""

    type_name = "CompositeLatents"
    category = "latent"
    inputs = [Input("samples_to", "LATENT"), Input("samples_from", "LATENT"),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE, step=8),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE, step=8),
              Input("feather", "INT", default=0, min=0, max=MAX_SIDE, step=8)]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, samples_to, samples_from, x, y, feather):
        from gouache.nodes.compositing import composite_latent

        return {"latent": composite_latent(samples_to, samples_from, x, y, feather, DOWNSCALE)}


class RepeatLatentBatch(Node):
    """The batch of latents (and their noise masks) repeated ``amount`` times."""

    type_name = "RepeatLatentBatch"
    category = "latent/batch"
    inputs = [Input("latent", "LATENT"), Input("amount", "INT", default=1, min=1, max=64)]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, latent, amount):
        from gouache.nodes.batches import repeat_latent

        return {"latent": repeat_latent(latent, amount)}


class LatentFromBatch(Node):
    """``length`` latents of a batch from ``batch_index`` (0 = the first) on."""

    type_name = "LatentFromBatch"
    category = "latent/batch"
    inputs = [Input("latent", "LATENT"),
              Input("batch_index", "INT", default=0, min=0, max=MAX_BATCH - 1),
              Input("length", "INT", default=1, min=1, max=MAX_BATCH)]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, latent, batch_index, length):
        from gouache.nodes.batches import take_latent

        return {"latent": take_latent(latent, batch_index, length)}


_TILE_SIZE = Input("tile_size", "INT", default=512, min=16, max=MAX_SIDE, step=8,
                   description="Largest tile side the device sees, in each layer's own pixels.")


class VAEDecodeTiled(Node):
    """Turn latents into images with the VAE a tile at a time, so large images fit in device memory.

    The result equals VAEDecode's (up to float rounding, seams included): GroupNorm statistics are taken
    over the whole image, not per tile. Full-size activations are held in RAM instead.
    """

    type_name = "VAEDecodeTiled"
    category = "latent"
    inputs = [Input("latent", "LATENT"), Input("vae", "VAE"), _TILE_SIZE]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, latent, vae, tile_size):
        from gouache.nodes.support import manager_of
        from gouache.nodes.tiled_vae import decode_tiled

        return {"image": decode_tiled(manager_of(ctx), vae.checkpoint.loaded, latent, tile_size, ctx.check_interrupt)}


class VAEEncodeTiled(Node):
    """Turn images into latents with the VAE a tile at a time, so large images fit in device memory.

    The result equals VAEEncode's (up to float rounding); full-size activations are held in RAM instead.
    """

    type_name = "VAEEncodeTiled"
    category = "latent"
    inputs = [Input("image", "IMAGE"), Input("vae", "VAE"), _TILE_SIZE]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, image, vae, tile_size):
        from gouache.nodes.support import manager_of
        from gouache.nodes.tiled_vae import encode_tiled

        return {"latent": encode_tiled(manager_of(ctx), vae.checkpoint.loaded, image, tile_size, ctx.check_interrupt)}


LATENT_NODES = [InpaintEncode, InpaintModelConditioning, CompositeLatents, RepeatLatentBatch, LatentFromBatch,
                VAEDecodeTiled, VAEEncodeTiled]
