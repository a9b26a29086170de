"""Image nodes: preprocessors that need no model file, outpaint padding and masked pasting, batches, crops.

Each node names its ComfyUI counterpart in ``docs/builtin-nodes.md``.
"""

from __future__ import annotations

from gouache.engine import Input, InputError, Node, Output
from gouache.nodes.images import RESIZE_METHODS
from gouache.nodes.support import MAX_SIDE

MAX_BATCH = 4096


class CannyEdges(Node):
    """Canny edge map of an image, white edges on black: a ControlNet's control image.

    Thresholds apply to the gradient of the 0..1 image (a sharp black-to-white step is about 0.5):
    above ``high`` a pixel is an edge, above ``low`` it is one when it touches an edge.
    Written with torch ops after kornia's canny, so ComfyUI's thresholds carry over.
    """

    type_name = "CannyEdges"
    category = "image/preprocessors"
    inputs = [Input("image", "IMAGE"),
              Input("low_threshold", "FLOAT", default=0.4, min=0.01, max=0.99, step=0.01),
              Input("high_threshold", "FLOAT", default=0.8, min=0.01, max=0.99, step=0.01)]
    outputs = [Output("image", "IMAGE")]

    def check(self, values):
        low, high = values.get("low_threshold", 0.4), values.get("high_threshold", 0.8)
        if low > high:
            return [InputError("high_threshold", f"{high:g} is below low_threshold {low:g}; raise it or lower that",
                               "low_above_high")]
        return []

    def run(self, ctx, image, low_threshold, high_threshold):
        from gouache.nodes.masks import as_image, mask_to_image
        from gouache.nodes.preprocess import canny

        if low_threshold > high_threshold:  # linked values are not seen by check()
            raise InputError("high_threshold", f"{high_threshold:g} is below low_threshold {low_threshold:g}",
                             "low_above_high")
        edges = canny(as_image(image, "image"), low_threshold, high_threshold, ctx.check_interrupt)
        return {"image": mask_to_image(edges)}


class InvertImage(Node):
    """1 - image: black lines on white (scribbles, line art) become white on black, as ControlNets expect."""

    type_name = "InvertImage"
    category = "image/preprocessors"
    inputs = [Input("image", "IMAGE")]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image):
        from gouache.nodes.masks import as_image

        return {"image": 1.0 - as_image(image, "image")}


class ThresholdImage(Node):
    """Each channel 1 above ``value`` and 0 elsewhere: clean scribbles and hand-drawn masks."""

    type_name = "ThresholdImage"
    category = "image/preprocessors"
    inputs = [Input("image", "IMAGE"), Input("value", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, value):
        from gouache.nodes.masks import as_image, threshold

        return {"image": threshold(as_image(image, "image"), value)}


class BlurImage(Node):
    """Gaussian blur: ``radius`` pixels each side, ``sigma`` its spread; borders are reflected."""

    type_name = "BlurImage"
    category = "image/preprocessors"
    inputs = [Input("image", "IMAGE"),
              Input("radius", "INT", default=1, min=0, max=256),
              Input("sigma", "FLOAT", default=1.0, min=0.1, max=64.0, step=0.1)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, radius, sigma):
        from gouache.nodes.masks import as_image, gaussian_blur

        planes = as_image(image, "image").movedim(-1, 1)
        return {"image": gaussian_blur(planes, radius, sigma).movedim(1, -1).clamp(0, 1).contiguous()}


class PadForOutpaint(Node):
    """Extend an image with a grey border to outpaint, and the mask of that border (1 = paint here).

    ``feathering`` pixels of the picture next to a padded side are masked partly, so the new part
    blends into the old.
    """

    type_name = "PadForOutpaint"
    category = "image/inpaint"
    inputs = [Input("image", "IMAGE")] + [Input(side, "INT", default=0, min=0, max=MAX_SIDE, step=8)
                                          for side in ("left", "top", "right", "bottom")] + [
              Input("feathering", "INT", default=40, min=0, max=MAX_SIDE)]
    outputs = [Output("image", "IMAGE"), Output("mask", "MASK")]

    def run(self, ctx, image, left, top, right, bottom, feathering):
        from gouache.nodes.compositing import pad_for_outpaint

        canvas, mask = pad_for_outpaint(image, left, top, right, bottom, feathering)
        return {"image": canvas, "mask": mask}


class CompositeImages(Node):
    """Paste ``source`` onto ``destination`` at x/y through ``mask`` (1 = source, 0 = destination).

    Without a mask the whole source is pasted. The mask must have the source's size; the source must
    start inside the destination and is cut where it reaches past its edge. ``resize_source`` first
    scales the source to the destination's size.
    """

    type_name = "CompositeImages"
    category = "image/inpaint"
    inputs = [Input("destination", "IMAGE"), Input("source", "IMAGE"),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE),
              Input("resize_source", "BOOLEAN", default=False),
              Input("mask", "MASK", optional=True)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, destination, source, x, y, resize_source, mask):
        from gouache.nodes.compositing import composite_masked
        from gouache.nodes.images import resize
        from gouache.nodes.masks import as_image

        if resize_source:
            source = resize(as_image(source, "source"), destination.shape[2], destination.shape[1], "bilinear")
        return {"image": composite_masked(destination, source, x, y, mask)}


class JoinImages(Node):
    """One batch of ``image1``'s images followed by ``image2``'s; both must have the same size."""

    type_name = "JoinImages"
    category = "image/batch"
    inputs = [Input("image1", "IMAGE"), Input("image2", "IMAGE")]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image1, image2):
        from gouache.nodes.batches import join_images
        from gouache.nodes.masks import as_image

        return {"image": join_images(as_image(image1, "image1"), as_image(image2, "image2"))}


class RepeatImageBatch(Node):
    """The batch of images repeated ``amount`` times."""

    type_name = "RepeatImageBatch"
    category = "image/batch"
    inputs = [Input("image", "IMAGE"), Input("amount", "INT", default=1, min=1, max=64)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, amount):
        from gouache.nodes.batches import repeat
        from gouache.nodes.masks import as_image

        return {"image": repeat(as_image(image, "image"), amount)}


class ImageFromBatch(Node):
    """``length`` images of a batch from ``batch_index`` (0 = the first) on."""

    type_name = "ImageFromBatch"
    category = "image/batch"
    inputs = [Input("image", "IMAGE"),
              Input("batch_index", "INT", default=0, min=0, max=MAX_BATCH - 1),
              Input("length", "INT", default=1, min=1, max=MAX_BATCH)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, batch_index, length):
        from gouache.nodes.batches import take
        from gouache.nodes.masks import as_image

        return {"image": take(as_image(image, "image"), batch_index, length)}


class ImageScaleToPixels(Node):
    """Resize images to about ``megapixels`` million pixels (1 = 1024 x 1024), keeping the aspect ratio."""

    type_name = "ImageScaleToPixels"
    category = "image"
    inputs = [Input("image", "IMAGE"),
              Input("method", "COMBO", default="bicubic", choices=RESIZE_METHODS),
              Input("megapixels", "FLOAT", default=1.0, min=0.01, max=16.0, step=0.01)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, method, megapixels):
        import math

        from gouache.nodes.images import resize
        from gouache.nodes.masks import as_image

        height, width = as_image(image, "image").shape[1:3]
        scale = math.sqrt(megapixels * 1024 * 1024 / (width * height))
        return {"image": resize(image, max(1, round(width * scale)), max(1, round(height * scale)), method)}


class CropImage(Node):
    """The part of each image ``width`` x ``height`` pixels from x/y; the box must lie inside the image."""

    type_name = "CropImage"
    category = "image"
    inputs = [Input("image", "IMAGE"),
              Input("width", "INT", default=512, min=1, max=MAX_SIDE),
              Input("height", "INT", default=512, min=1, max=MAX_SIDE),
              Input("x", "INT", default=0, min=0, max=MAX_SIDE),
              Input("y", "INT", default=0, min=0, max=MAX_SIDE)]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, width, height, x, y):
        from gouache.nodes.masks import as_image, crop_box

        image = as_image(image, "image")
        rows, cols = crop_box(image.shape[1], image.shape[2], x, y, width, height)
        return {"image": image[:, rows, cols].clone()}


IMAGE_NODES = [CannyEdges, InvertImage, ThresholdImage, BlurImage, PadForOutpaint, CompositeImages, JoinImages,
               RepeatImageBatch, ImageFromBatch, ImageScaleToPixels, CropImage]
