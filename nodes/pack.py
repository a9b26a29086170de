"""The built-in node pack: loaders, text encoding, sampling, latents, images, LoRAs and upscaling.

Registered through the same hooks as any third-party pack (entry point ``builtin``). Importing
this module imports no torch or diffusers: node declarations are plain classes and every
``run()`` imports what it needs, so ``gouache nodes`` and validation stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gouache.engine import CachePolicy, Input, InputError, Node, Output, hookimpl
from gouache.nodes import cache_types  # noqa: F401  (the output cache learns to size, place and store our values)
from gouache.nodes.folders import model_folders
from gouache.nodes.images import RESIZE_METHODS
from gouache.nodes.latent import LATENT_RESIZE_METHODS
from gouache.nodes.schedulers import CONVENTION_INPUT, combination_check, sampler_inputs
from gouache.nodes.flow_nodes import FlowShift, FluxGuidance
from gouache.nodes.conditioning_nodes import CONDITIONING_NODES
from gouache.nodes.controlnet import CONTROLNET_NODES
from gouache.nodes.image_nodes import IMAGE_NODES
from gouache.nodes.latent_nodes import LATENT_NODES
from gouache.nodes.mask_nodes import MASK_NODES
from gouache.nodes.part_loaders import DiffusionModelLoader, TextEncoderLoader, VAELoader
from gouache.nodes.primitives import PRIMITIVE_NODES
from gouache.nodes.sampler_nodes import SAMPLER_NODES
from gouache.nodes.support import (
    MAX_SEED,
    MAX_SIDE,
    fingerprint_of,
    input_image,
    input_image_fingerprint,
    manager_of,
    resolve,
)
from gouache.nodes.text_nodes import TEXT_NODES
from gouache.nodes.types import (
    SOCKET_TYPES,
    ClipHandle,
    LoraPatch,
    ModelHandle,
    VaeHandle,
)



PREDICTION_CHOICES = ("auto", "epsilon", "v_prediction")
"""``CheckpointLoader``'s prediction override; ``auto`` decides from the file."""


class CheckpointLoader(Node):
    """Load a checkpoint (single file or diffusers folder) of SD 1.x, 2.x, XL, 3.x or Flux.1, offline.

    The architecture is read from the weights; ``config`` names a config folder (from the configs
    folders) for a model whose sizes the weights cannot show. Loaded models are kept by the file's
    fingerprint: loading the same file again costs nothing.
    """

    type_name = "CheckpointLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("name", "COMBO", default="gouache-tiny", choices_from="checkpoints", link="widget",
                    description="A checkpoint from the checkpoints folders; gouache-tiny ships with gouache."),
              Input("prediction_type", "COMBO", default="auto", choices=PREDICTION_CHOICES,
                    description="What the model predicts; auto reads it from the file (a v_pred key, metadata, "
                                "a sidecar .yaml, the family's rule)."),
              Input("config", "STRING", default="", link="widget",
                    description="A diffusers-style config folder from the configs folders describing the "
                                "checkpoint; empty reads the sizes from the weights.")]
    outputs = [Output("model", "MODEL"), Output("clip", "CLIP"), Output("vae", "VAE")]

    def check(self, values, choices):
        config = values.get("config") or ""
        if config and config not in choices("configs"):
            found = ", ".join(repr(name) for name in choices("configs")[:12]) or "none"
            return [InputError("config", f"no config folder named {config!r}; found: {found}", "not_a_choice")]
        return []

    @staticmethod
    def _config_dir(ctx, entry, config):
        if config:
            return resolve(ctx, "configs", config, "config").path
        shipped = entry.info.get("config_dir")  # the embedded model ships its own
        return Path(shipped) if shipped else None

    def fingerprint(self, ctx, name, prediction_type="auto", config=""):
        entry = resolve(ctx, "checkpoints", name)
        config_dir = self._config_dir(ctx, entry, config)
        return (fingerprint_of(entry.path) + (f"|{fingerprint_of(config_dir)}" if config_dir else "")
                + ("" if prediction_type == "auto" else f"|{prediction_type}"))

    def run(self, ctx, name, prediction_type="auto", config=""):
        entry = resolve(ctx, "checkpoints", name)
        config_dir = self._config_dir(ctx, entry, config)
        try:
            ref = manager_of(ctx).checkpoint(entry.path, name, Path(config_dir) if config_dir else None,
                                             None if prediction_type == "auto" else prediction_type)
        except ValueError as error:  # ModelLoadError: the file does not load, and the message says why
            raise InputError("name", str(error), "unreadable") from None
        return {"model": ModelHandle(ref), "clip": ClipHandle(ref), "vae": VaeHandle(ref)}


def _apply_lora(ctx: Any, name: str, model: ModelHandle, strength_model: float,
                clip: ClipHandle | None = None, strength_clip: float = 0.0) -> dict[str, Any]:
    """The LoRA ``name`` on ``model`` (and ``clip``): checked now, so a misfit fails naming this node."""
    entry = resolve(ctx, "loras", name)
    try:
        key, lora = manager_of(ctx).lora(entry.path)
        parts = model.parts() + (clip.parts() if clip is not None else [])
        if clip is None and not lora.components & {slot for slot, _ in parts}:
            raise ValueError(f"{entry.path.name} patches only {', '.join(sorted(lora.components))}; "
                             "use LoraLoader, which takes the CLIP as well")
        # Without a CLIP the text-encoder layers are left out on purpose, as the node says.
        lora.check(parts, ignore=() if clip is not None else ("text_encoder", "text_encoder_2"))
    except ValueError as error:
        raise InputError("name", str(error), "wrong_lora") from None
    out: dict[str, Any] = {"model": model.with_patch(LoraPatch(key, name, strength_model))}
    if clip is not None:
        out["clip"] = clip.with_patch(LoraPatch(key, name, strength_clip))
    return out


class LoraLoader(Node):
    """Apply a LoRA to a model and its text encoder(s): LoRA, LoCon, LoHa, LoKr, DoRA or full differences,
    in kohya/A1111, peft/diffusers or ComfyUI layout (``docs/models.md``).

    The result is a new handle; the loaded base model is never changed. LoRA loaders can be chained.
    A file with layers that fit nothing in the model fails here, naming them.
    """

    type_name = "LoraLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [
        Input("model", "MODEL"),
        Input("clip", "CLIP"),
        Input("name", "COMBO", choices_from="loras", link="widget"),
        Input("strength_model", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05),
        Input("strength_clip", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05),
    ]
    outputs = [Output("model", "MODEL"), Output("clip", "CLIP")]

    def fingerprint(self, ctx, name, **_):
        return fingerprint_of(resolve(ctx, "loras", name).path)

    def run(self, ctx, model, clip, name, strength_model, strength_clip):
        return _apply_lora(ctx, name, model, strength_model, clip, strength_clip)


class LoraModelLoader(Node):
    """Apply a LoRA to the model alone (ComfyUI's LoraLoaderModelOnly): the file's text-encoder layers are not used.

    Any LoRA file ``LoraLoader`` reads; the result is a new handle and the base model is never changed.
    """

    type_name = "LoraModelLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [
        Input("model", "MODEL"),
        Input("name", "COMBO", choices_from="loras", link="widget"),
        Input("strength", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05),
    ]
    outputs = [Output("model", "MODEL")]

    def fingerprint(self, ctx, name, **_):
        return fingerprint_of(resolve(ctx, "loras", name).path)

    def run(self, ctx, model, name, strength):
        return _apply_lora(ctx, name, model, strength)


class EmptyLatent(Node):
    """A batch of empty latents for an image of ``width`` x ``height`` pixels."""

    type_name = "EmptyLatent"
    category = "latent"
    inputs = [
        Input("width", "INT", default=512, min=8, max=MAX_SIDE, step=8),
        Input("height", "INT", default=512, min=8, max=MAX_SIDE, step=8),
        Input("batch_size", "INT", default=1, min=1, max=64),
    ]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, width, height, batch_size):
        from gouache.nodes.latent import empty_latent

        return {"latent": empty_latent(width, height, batch_size)}


class LatentUpscale(Node):
    """Resize latents by ``scale_by``, or to ``width`` x ``height`` pixels when those are set
    (one of them 0 keeps the aspect ratio)."""

    type_name = "LatentUpscale"
    category = "latent"
    inputs = [
        Input("latent", "LATENT"),
        Input("method", "COMBO", default="nearest-exact", choices=LATENT_RESIZE_METHODS),
        Input("scale_by", "FLOAT", default=1.5, min=0.01, max=8.0, step=0.05),
        Input("width", "INT", default=0, min=0, max=MAX_SIDE, step=8),
        Input("height", "INT", default=0, min=0, max=MAX_SIDE, step=8),
    ]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, latent, method, scale_by, width, height):
        from gouache.nodes.images import target_size
        from gouache.nodes.latent import DOWNSCALE, resize_latent

        samples = latent["samples"]
        size = target_size(samples.shape[-1] * DOWNSCALE, samples.shape[-2] * DOWNSCALE, scale_by, width, height,
                           multiple=DOWNSCALE)
        return {"latent": resize_latent(latent, *size, method)}


class SetLatentNoiseMask(Node):
    """Limit sampling to the masked area (1 = repaint, 0 = keep): inpainting with any model."""

    type_name = "SetLatentNoiseMask"
    category = "latent"
    inputs = [Input("latent", "LATENT"), Input("mask", "MASK")]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, latent, mask):
        from gouache.nodes.latent import with_noise_mask

        return {"latent": with_noise_mask(latent, mask)}


class Sampler(Node):
    """Denoise a latent with a diffusers scheduler, guided by a positive and a negative prompt.

    ``denoise`` below 1 starts part-way from the input latent (image-to-image, hires fix). ``convention``
    ``comfyui`` draws ComfyUI's noise, sigmas and sampler steps instead (its workflows give its images).
    """

    type_name = "Sampler"
    category = "sampling"
    inputs = [
        Input("model", "MODEL"),
        Input("positive", "CONDITIONING"),
        Input("negative", "CONDITIONING"),
        Input("latent", "LATENT"),
        Input("seed", "INT", default=0, min=0, max=MAX_SEED, seed=True),
        *sampler_inputs(),
        Input("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        CONVENTION_INPUT,
    ]
    outputs = [Output("latent", "LATENT")]

    def check(self, values):
        return combination_check(values)

    def run(self, ctx, model, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler, denoise,
            convention):
        from gouache.nodes.sampling import SampleSettings, sample

        settings = SampleSettings(seed, steps, cfg, sampler_name, scheduler, denoise, convention=convention)
        return {"latent": sample(manager_of(ctx), ctx, model, positive, negative, latent, settings).latent}


class VAEDecode(Node):
    """Turn latents into images with the VAE."""

    type_name = "VAEDecode"
    category = "latent"
    inputs = [Input("latent", "LATENT"), Input("vae", "VAE")]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, latent, vae):
        from gouache.nodes.latent import decode

        return {"image": decode(manager_of(ctx), vae.checkpoint.loaded, latent, ctx.check_interrupt)}


class VAEEncode(Node):
    """Turn images into latents with the VAE (the distribution's mean: deterministic)."""

    type_name = "VAEEncode"
    category = "latent"
    inputs = [Input("image", "IMAGE"), Input("vae", "VAE")]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, image, vae):
        from gouache.nodes.latent import encode

        return {"latent": encode(manager_of(ctx), vae.checkpoint.loaded, image, ctx.check_interrupt)}


class LoadImage(Node):
    """Load an image from the input folder; the mask is 1 where the image is transparent."""

    type_name = "LoadImage"
    category = "image"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("image", "COMBO", upload="image", link="widget", choices_from="input_images",
                    description="A file name in the input folder (sub-folders allowed).")]
    outputs = [Output("image", "IMAGE"), Output("mask", "MASK")]

    def fingerprint(self, ctx, image):
        return input_image_fingerprint(ctx, image)

    def run(self, ctx, image):
        from gouache.nodes.images import load_image

        path = input_image(ctx, image)
        try:
            pixels, mask = load_image(path)
        except ValueError as error:
            raise InputError("image", str(error), "unreadable") from None
        return {"image": pixels, "mask": mask}


class ImageScale(Node):
    """Resize images by ``scale_by``, or to ``width`` x ``height`` when those are set
    (one of them 0 keeps the aspect ratio)."""

    type_name = "ImageScale"
    category = "image"
    inputs = [
        Input("image", "IMAGE"),
        Input("method", "COMBO", default="bicubic", choices=RESIZE_METHODS),
        Input("scale_by", "FLOAT", default=1.0, min=0.01, max=16.0, step=0.05),
        Input("width", "INT", default=0, min=0, max=MAX_SIDE),
        Input("height", "INT", default=0, min=0, max=MAX_SIDE),
    ]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, method, scale_by, width, height):
        from gouache.nodes.images import resize, target_size

        size = target_size(image.shape[2], image.shape[1], scale_by, width, height)
        return {"image": resize(image, *size, method)}


class SaveImage(Node):
    """Save images as PNGs in the output folder, with the workflow and the generation settings inside.

    Files are numbered (``prefix_00001.png``) and never overwritten. Like every node it is cached:
    re-running an unchanged workflow writes nothing new and reports the files saved before.
    """

    type_name = "SaveImage"
    category = "image"
    output_node = True
    cache = CachePolicy.DETERMINISTIC
    inputs = [Input("images", "IMAGE"), Input("filename_prefix", "STRING", default="gouache")]
    outputs = []

    def run(self, ctx, images, filename_prefix):
        from gouache.nodes.images import png_text, save_png

        _check_images(images, "images")
        folder = ctx.settings.folder("output")
        text = png_text(ctx)
        for row in images:
            ctx.add_image("output", save_png(row, folder, filename_prefix, text))
        return {}


class PreviewImage(Node):
    """Show images in the editor: written to the temp folder, not kept as outputs."""

    type_name = "PreviewImage"
    category = "image"
    output_node = True
    inputs = [Input("images", "IMAGE")]
    outputs = []

    def run(self, ctx, images):
        from gouache.nodes.images import png_text, save_png

        _check_images(images, "images")
        folder = ctx.settings.folder("temp")
        text = png_text(ctx)
        for row in images:
            ctx.add_image("temp", save_png(row, folder, f"preview_{ctx.run_id[:8]}", text))
        return {}


class UpscaleModelLoader(Node):
    """Load a super-resolution model (ESRGAN, Real-ESRGAN, SwinIR, ... anything spandrel reads)."""

    type_name = "UpscaleModelLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("name", "COMBO", choices_from="upscale_models", link="widget")]
    outputs = [Output("upscale_model", "UPSCALE_MODEL")]

    def fingerprint(self, ctx, name):
        return fingerprint_of(resolve(ctx, "upscale_models", name).path)

    def run(self, ctx, name):
        entry = resolve(ctx, "upscale_models", name)
        try:
            return {"upscale_model": manager_of(ctx).upscaler(entry.path, name)}
        except ValueError as error:
            raise InputError("name", str(error), "unreadable") from None


class UpscaleWithModel(Node):
    """Upscale images with a model, in overlapping tiles so large images fit in memory."""

    type_name = "UpscaleWithModel"
    category = "image"
    inputs = [
        Input("image", "IMAGE"),
        Input("upscale_model", "UPSCALE_MODEL"),
        Input("tile_size", "INT", default=512, min=0, max=8192, step=8,
              description="Tile side in input pixels; 0 upscales the whole image at once."),
        Input("overlap", "INT", default=32, min=0, max=512),
    ]
    outputs = [Output("image", "IMAGE")]

    def run(self, ctx, image, upscale_model, tile_size, overlap):
        from gouache.nodes.upscale import upscale

        _check_images(image, "image")
        manager = manager_of(ctx)
        device = manager.on_device([upscale_model.descriptor.model])
        return {"image": upscale(upscale_model.descriptor, image, device, tile_size, overlap, ctx.progress,
                                 ctx.check_interrupt)}


def _check_images(images: Any, name: str) -> None:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4):
        raise InputError(name, f"expected an IMAGE tensor [B,H,W,C], got {shape or type(images).__name__}", "wrong_shape")


NODES = [CheckpointLoader, LoraLoader, LoraModelLoader, *TEXT_NODES, EmptyLatent, LatentUpscale, SetLatentNoiseMask, Sampler, *SAMPLER_NODES,
         VAEDecode, VAEEncode,
         LoadImage, ImageScale, SaveImage, PreviewImage, UpscaleModelLoader, UpscaleWithModel,
         DiffusionModelLoader, TextEncoderLoader, VAELoader, FluxGuidance, FlowShift, *CONDITIONING_NODES,
         *CONTROLNET_NODES,
         *MASK_NODES, *IMAGE_NODES, *LATENT_NODES, *PRIMITIVE_NODES]


@hookimpl
def gouache_register_types() -> list[Any]:
    """The diffusion socket types."""
    return list(SOCKET_TYPES)


@hookimpl
def gouache_register_nodes() -> list[Any]:
    """The built-in node types."""
    return list(NODES)


@hookimpl
def gouache_register_model_folders() -> list[Any]:
    """checkpoints, loras, vae, upscale_models, embeddings."""
    return model_folders()


@hookimpl
def gouache_register_workflow_importers() -> list[Any]:
    """ComfyUI's UI and API formats and A1111's PNG parameters (``gouache.nodes.interop``)."""
    from gouache.nodes.interop import importers

    return importers()
