"""VAE encode and decode a tile at a time on the device, computing what the whole-image pass computes.

Cutting the image into tiles and decoding each alone (ComfyUI's way) changes the result: every GroupNorm
normalises a tile by that tile's statistics and the mid-block attention sees only the tile, so tiles
drift apart in colour (on gouache-tiny's VAE, 256 px in 128 px tiles: up to 18/255 off, on the random
test VAE up to 200/255). Here the network is walked layer by layer instead. Full activations stay on the
CPU in float32; each convolution runs on the device tile by tile, each tile read with the rows and columns
its kernel needs around it (zeros past the border, as the layer's own padding); each GroupNorm takes its
statistics over the whole activation; the mid block, at latent resolution, runs whole. So the result
equals the whole-image pass up to float rounding, seams included, while the device holds the weights,
one tile and the latent-sized mid block. The price is CPU memory: a few full-resolution activations
(about 2 GB for a 1024 px image on an SD VAE).

Handles diffusers' ``AutoencoderKL`` (SD 1.x/2.x/XL, SD 3.x, Flux.1) and gouache's native one (the same layers
under the same names); another VAE is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gouache.engine import InputError


class _Walk:
    """Runs the layers of a diffusers VAE over CPU activations, the device seeing one tile at a time."""

    def __init__(self, device: Any, dtype: Any, tile: int, check_interrupt: Callable[[], None] | None) -> None:
        self.device, self.dtype, self.tile = device, dtype, tile
        self.check_interrupt = check_interrupt or (lambda: None)

    def conv(self, x: Any, conv: Any) -> Any:
        """``conv`` over CPU activations ``x`` [B,C,H,W], output tile by output tile."""
        import torch
        import torch.nn.functional as F

        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        if conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"a convolution with dilation {conv.dilation}, groups {conv.groups} or "
                             f"{conv.padding_mode} padding")
        batch, _, height, width = x.shape
        out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        out = torch.empty(batch, conv.out_channels, out_h, out_w)
        weight, bias = conv.weight, conv.bias
        for top in range(0, out_h, self.tile):
            for left in range(0, out_w, self.tile):
                self.check_interrupt()
                bottom, right = min(top + self.tile, out_h), min(left + self.tile, out_w)
                # the input rows and columns these outputs read, some of them past the border (zeros)
                y0, y1 = top * sh - ph, (bottom - 1) * sh - ph + kh
                x0, x1 = left * sw - pw, (right - 1) * sw - pw + kw
                part = x[:, :, max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
                part = F.pad(part, (max(-x0, 0), max(x1 - width, 0), max(-y0, 0), max(y1 - height, 0)))
                result = F.conv2d(part.to(self.device, self.dtype), weight, bias, stride=(sh, sw))
                out[:, :, top:bottom, left:right] = result.float().cpu()
        return out

    @staticmethod
    def norm(x: Any, norm: Any, activation: Any) -> Any:
        """GroupNorm over the whole activation (statistics of every tile together), then ``activation``."""
        batch, channels = x.shape[:2]
        groups = x.reshape(batch, norm.num_groups, -1)
        variance, mean = (part.float() for part in _var_mean(groups))
        normed = ((groups - mean) / (variance + norm.eps).sqrt()).reshape(x.shape)
        if norm.affine:
            normed = normed * norm.weight.detach().float().cpu().view(1, channels, 1, 1) \
                + norm.bias.detach().float().cpu().view(1, channels, 1, 1)
        return activation(normed) if activation is not None else normed

    def resnet(self, x: Any, block: Any) -> Any:
        """diffusers' ``ResnetBlock2D`` without time embedding, up- or downsampling (a VAE's)."""
        if block.upsample is not None or block.downsample is not None or block.time_emb_proj is not None:
            raise ValueError("a resnet block that resamples or takes a time embedding")
        hidden = self.conv(self.norm(x, block.norm1, block.nonlinearity), block.conv1)
        hidden = self.conv(self.norm(hidden, block.norm2, block.nonlinearity), block.conv2)
        shortcut = self.conv(x, block.conv_shortcut) if block.conv_shortcut is not None else x
        return (shortcut + hidden) / block.output_scale_factor

    def whole(self, x: Any, module: Any) -> Any:
        """``module`` (the mid block, at latent resolution) on the whole activation at once."""
        self.check_interrupt()
        return module(x.to(self.device, self.dtype)).float().cpu()

    def upsample(self, x: Any, upsampler: Any) -> Any:
        """diffusers' ``Upsample2D``: nearest x2, then its convolution."""
        import torch.nn.functional as F

        if upsampler.norm is not None or upsampler.use_conv_transpose or not upsampler.interpolate:
            raise ValueError("an upsampler with a norm or a transposed convolution")
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x, upsampler.conv) if upsampler.use_conv else x

    def downsample(self, x: Any, downsampler: Any) -> Any:
        """diffusers' ``Downsample2D``: padded right and bottom by one, then its strided convolution."""
        import torch.nn.functional as F

        if downsampler.norm is not None or not downsampler.use_conv:
            raise ValueError("a downsampler with a norm or without a convolution")
        if downsampler.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x, downsampler.conv)

    def decoder(self, z: Any, decoder: Any) -> Any:
        """diffusers' ``Decoder`` (no latent embeddings)."""
        x = self.whole(self.conv(z, decoder.conv_in), decoder.mid_block)
        for block in decoder.up_blocks:
            if getattr(block, "attentions", None):
                raise ValueError("an up block with attention")
            for resnet in block.resnets:
                x = self.resnet(x, resnet)
            for upsampler in block.upsamplers or ():
                x = self.upsample(x, upsampler)
        return self.conv(self.norm(x, decoder.conv_norm_out, decoder.conv_act), decoder.conv_out)

    def encoder(self, x: Any, encoder: Any) -> Any:
        """diffusers' ``Encoder``."""
        x = self.conv(x, encoder.conv_in)
        for block in encoder.down_blocks:
            if getattr(block, "attentions", None):
                raise ValueError("a down block with attention")
            for resnet in block.resnets:
                x = self.resnet(x, resnet)
            for downsampler in block.downsamplers or ():
                x = self.downsample(x, downsampler)
        x = self.whole(x, encoder.mid_block)
        return self.conv(self.norm(x, encoder.conv_norm_out, encoder.conv_act), encoder.conv_out)


def _var_mean(groups: Any) -> tuple[Any, Any]:
    """Biased variance and mean per (item, group), accumulated in float64 so large activations stay exact."""
    import torch

    variance, mean = torch.var_mean(groups.double(), dim=-1, keepdim=True, correction=0)
    return variance, mean


def _walk(manager: Any, vae: Any, tile_size: int, factor: int, check_interrupt: Any) -> _Walk:
    if type(vae).__name__ not in ("AutoencoderKL", "NativeAutoencoderKL"):
        raise InputError("vae", f"tiled encoding and decoding handle AutoencoderKL VAEs, not {type(vae).__name__}; "
                                "use VAEDecode / VAEEncode", "not_tileable")
    device = manager.on_device([vae])
    return _Walk(device, vae.dtype, max(1, tile_size), check_interrupt)


def _refused(error: ValueError) -> InputError:
    return InputError("vae", f"this VAE has {error}, which tiling does not handle; use VAEDecode / VAEEncode",
                      "not_tileable")


def decode_tiled(manager: Any, loaded: Any, latent: dict[str, Any], tile_size: int,
                 check_interrupt: Callable[[], None] | None = None) -> Any:
    """IMAGE [B,H,W,3] from a LATENT, as :func:`gouache.nodes.latent.decode` gives it, ``tile_size`` px at a time."""
    import torch

    vae = loaded.vae
    walk = _walk(manager, vae, tile_size, 1, check_interrupt)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z = latent["samples"].float() / vae.config.scaling_factor + shift
    try:
        with torch.no_grad():
            if vae.post_quant_conv is not None:
                z = walk.conv(z, vae.post_quant_conv)
            images = walk.decoder(z, vae.decoder)
    except ValueError as error:
        raise _refused(error) from None
    return (images / 2 + 0.5).clamp(0, 1).movedim(1, -1).contiguous()


def encode_tiled(manager: Any, loaded: Any, image: Any, tile_size: int,
                 check_interrupt: Callable[[], None] | None = None) -> dict[str, Any]:
    """A LATENT from an IMAGE, as :func:`gouache.nodes.latent.encode` gives it, ``tile_size`` px at a time.

    Sides that are not multiples of the VAE's factor are cropped, as there.
    """
    import torch

    from gouache.nodes.latent import encodable_pixels

    vae = loaded.vae
    pixels, factor = encodable_pixels(image, vae)
    walk = _walk(manager, vae, tile_size, factor, check_interrupt)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    try:
        with torch.no_grad():
            moments = walk.encoder(pixels.movedim(-1, 1).float() * 2 - 1, vae.encoder)
            if vae.quant_conv is not None:
                moments = walk.conv(moments, vae.quant_conv)
    except ValueError as error:
        raise _refused(error) from None
    mean = moments.chunk(2, dim=1)[0]  # the latent distribution's mode, as encode() takes
    return {"samples": ((mean - shift) * vae.config.scaling_factor).contiguous()}
