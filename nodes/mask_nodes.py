"""Mask nodes: from and to images, invert, grow or shrink, feather, blur, threshold, combine, solid, crop.

The arithmetic lives in ``gouache.nodes.masks``; these are its declarations. Each node names its
ComfyUI counterpart in ``docs/builtin-nodes.md``.
"""

from __future__ import annotations

from gouache.engine import CachePolicy, Input, Node, Output
from gouache.nodes.masks import CHANNELS, OPERATIONS
from gouache.nodes.support import MAX_SIDE


class LoadImageMask(Node):
    """Load a mask from one channel of an image in the input folder.

    ``alpha`` gives 1 where the picture is transparent (0 everywhere for a picture without alpha);
    ``red``, ``green`` and ``blue`` give the channel's values as they are.
    """

    type_name = "LoadImageMask"
    category = "mask"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("image", "COMBO", upload="image", link="widget", choices_from="input_images",
                    description="A file name in the input folder (sub-folders allowed)."),
              Input("channel", "COMBO", default="alpha", choices=CHANNELS)]
    outputs = [Output("mask", "MASK")]

    def fingerprint(self, ctx, image, **_):
        from gouache.nodes.support import input_image_fingerprint

        return input_image_fingerprint(ctx, image)

    def run(self, ctx, image, channel):
        from gouache.engine import InputError
        from gouache.nodes.images import load_image
        from gouache.nodes.masks import image_to_mask
        from gouache.nodes.support import input_image

        try:
            pixels, transparent = load_image(input_image(ctx, image))
        except ValueError as error:
            raise InputError("image", str(error), "unreadable") from None
        return {"mask": transparent if channel == "alpha" else image_to_mask(pixels, channel)}


class ImageToMask(Node):
    """One channel of an image as a mask, values as they are (``alpha`` needs an image with four channels)."""

    type_name = "ImageToMask"
    category = "mask"
    inputs = [Input("image", "IMAGE"), Input("channel", "COMBO", default="red", choices=CHANNELS)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, image, channel):
        from gouache.nodes.masks import as_image, image_to_mask

        return {"mask": image_to_mask(as_image(image, "image"), channel)}


class MaskToImage(Node):
    """A mask as a grey image: white where masked."""

    type_name = "MaskToImage"
    category = "mask"
    inputs = [Input("mask", "MASK")]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, mask):
        from gouache.nodes.masks import as_mask, mask_to_image

        return {"image": mask_to_image(as_mask(mask, "mask"))}


class InvertMask(Node):
    """1 - mask: what was kept is repainted and the other way round."""

    type_name = "InvertMask"
    category = "mask"
    inputs = [Input("mask", "MASK")]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask):
        from gouache.nodes.masks import as_mask

        return {"mask": 1.0 - as_mask(mask, "mask")}


class GrowMask(Node):
    """Grow the mask by ``expand`` pixels, or shrink it when negative; ``tapered_corners`` rounds the corners off."""

    type_name = "GrowMask"
    category = "mask"
    inputs = [Input("mask", "MASK"),
              Input("expand", "INT", default=0, min=-MAX_SIDE, max=MAX_SIDE),
              Input("tapered_corners", "BOOLEAN", default=True)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask, expand, tapered_corners):
        from gouache.nodes.masks import as_mask, grow

        return {"mask": grow(as_mask(mask, "mask"), expand, tapered_corners)}


class FeatherMask(Node):
    """Fade the mask to 0 towards each edge, linearly over as many pixels as that side asks."""

    type_name = "FeatherMask"
    category = "mask"
    inputs = [Input("mask", "MASK")] + [Input(side, "INT", default=0, min=0, max=MAX_SIDE)
                                        for side in ("left", "top", "right", "bottom")]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask, left, top, right, bottom):
        from gouache.nodes.masks import as_mask, feather

        return {"mask": feather(as_mask(mask, "mask"), left, top, right, bottom)}


class BlurMask(Node):
    """Soften a mask with a Gaussian blur (``radius`` pixels each side, ``sigma`` its spread)."""

    type_name = "BlurMask"
    category = "mask"
    inputs = [Input("mask", "MASK"),
              Input("radius", "INT", default=4, min=0, max=256),
              Input("sigma", "FLOAT", default=2.0, min=0.1, max=64.0, step=0.1)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask, radius, sigma):
        from gouache.nodes.masks import as_mask, gaussian_blur

        return {"mask": gaussian_blur(as_mask(mask, "mask")[:, None], radius, sigma)[:, 0].clamp(0, 1)}


class ThresholdMask(Node):
    """1 where the mask is above ``value``, 0 elsewhere: a hard mask from a soft one."""

    type_name = "ThresholdMask"
    category = "mask"
    inputs = [Input("mask", "MASK"), Input("value", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask, value):
        from gouache.nodes.masks import as_mask, threshold

        return {"mask": threshold(as_mask(mask, "mask"), value)}


class CombineMasks(Node):
    """Combine ``source`` into ``destination`` at x/y: multiply, add, subtract (clamped to 0..1), or the
    logical and, or, xor of the rounded masks. Outside the source, the destination stays as it is;
    a source reaching past the destination's edge is cut there."""

    type_name = "CombineMasks"
    category = "mask"
    inputs = [Input("destination", "MASK"), Input("source", "MASK"),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE),
              Input("operation", "COMBO", default="multiply", choices=OPERATIONS)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, destination, source, x, y, operation):
        from gouache.nodes.masks import as_mask, combine

        return {"mask": combine(as_mask(destination, "destination"), as_mask(source, "source"), x, y, operation)}


class SolidMask(Node):
    """A mask of one value everywhere, ``width`` x ``height`` pixels."""

    type_name = "SolidMask"
    category = "mask"
    inputs = [Input("value", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
              Input("width", "INT", default=512, min=1, max=MAX_SIDE),
              Input("height", "INT", default=512, min=1, max=MAX_SIDE)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, value, width, height):
        import torch

        return {"mask": torch.full((1, height, width), float(value))}


class CropMask(Node):
    """The part of the mask ``width`` x ``height`` pixels from x/y; the box must lie inside the mask."""

    type_name = "CropMask"
    category = "mask"
    inputs = [Input("mask", "MASK"),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE),
              Input("width", "INT", default=512, min=1, max=MAX_SIDE),
              Input("height", "INT", default=512, min=1, max=MAX_SIDE)]
    outputs = [Output("mask", "MASK")]

    def run(self, ctx, mask, x, y, width, height):
        from gouache.nodes.masks import as_mask, crop_box

        mask = as_mask(mask, "mask")
        rows, cols = crop_box(mask.shape[1], mask.shape[2], x, y, width, height)
        return {"mask": mask[:, rows, cols].clone()}


MASK_NODES = [LoadImageMask, ImageToMask, MaskToImage, InvertMask, GrowMask, FeatherMask, BlurMask, ThresholdMask,
              CombineMasks, SolidMask, CropMask]
