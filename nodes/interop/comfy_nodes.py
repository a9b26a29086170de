"""Which gouache node each ComfyUI core node becomes: type, input names, widget order, outputs.

Widget orders follow ComfyUI's ``INPUT_TYPES`` (``nodes.py``, ``comfy_extras/``): the UI format stores
widget values by position in that order, with one hidden "control after generate" value after each
seed widget (see :data:`SEED_CONTROLS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gouache.nodes.schedulers import SAMPLER_CHOICES as OUR_SAMPLERS, SCHEDULE_CHOICES as OUR_SCHEDULES

SEED_CONTROLS = ("fixed", "increment", "decrement", "randomize")
"""The values of the hidden widget that follows a seed in ``widgets_values``."""


@dataclass(frozen=True)
class ComfyNode:
    """How one ComfyUI class maps onto a gouache node type.

    ``widgets`` are ComfyUI's widget input names in ``widgets_values`` order; ``renames`` maps a
    ComfyUI input name to ours (names not listed are the same, names mapped to ``None`` are dropped);
    ``outputs`` names our output for each ComfyUI output index; ``fixed`` are literals we add;
    ``seeds`` are the widgets followed by a "control after generate" value.
    """

    type: str
    widgets: tuple[str, ...] = ()
    renames: dict[str, str | None] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    fixed: dict[str, object] = field(default_factory=dict)
    seeds: tuple[str, ...] = ()

    @property
    def values(self) -> dict[str, dict[str, str]]:
        """Our input name -> {ComfyUI value: ours}, for this node's inputs whose choices ComfyUI names otherwise."""
        ours = {name for name in (self.renames.get(widget, widget) for widget in self.widgets) if name is not None}
        return {name: VALUE_MAPS_BY_TYPE.get((self.type, name)) or VALUE_MAPS[name]
                for name in sorted(ours) if (self.type, name) in VALUE_MAPS_BY_TYPE or name in VALUE_MAPS}


COMFY = {"convention": "comfyui"}
"""What imported sampler and noise nodes add: ComfyUI's noise, sigmas and samplers, so the image is ComfyUI's."""

_IMAGE = ("image",)
_LATENT = ("latent",)
_MASK = ("mask",)

COMFY_NODES: dict[str, ComfyNode] = {
    "CheckpointLoaderSimple": ComfyNode("CheckpointLoader", ("ckpt_name",), {"ckpt_name": "name"},
                                        ("model", "clip", "vae")),
    "CLIPTextEncode": ComfyNode("TextEncode", ("text",), outputs=("conditioning",)),
    "CLIPSetLastLayer": ComfyNode("ClipSetLastLayer", ("stop_at_clip_layer",), {"stop_at_clip_layer": "stop_at_layer"},
                                  ("clip",)),
    "KSampler": ComfyNode("Sampler", ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
                          {"latent_image": "latent"}, _LATENT, fixed=COMFY, seeds=("seed",)),
    "EmptyLatentImage": ComfyNode("EmptyLatent", ("width", "height", "batch_size"), outputs=_LATENT),
    "EmptySD3LatentImage": ComfyNode("EmptyLatent", ("width", "height", "batch_size"), outputs=_LATENT),
    "VAEDecode": ComfyNode("VAEDecode", (), {"samples": "latent"}, _IMAGE),
    "VAEEncode": ComfyNode("VAEEncode", (), {"pixels": "image"}, _LATENT),
    "VAEDecodeTiled": ComfyNode("VAEDecodeTiled", ("tile_size", "overlap", "temporal_size", "temporal_overlap"),
                                {"samples": "latent", "overlap": None, "temporal_size": None, "temporal_overlap": None},
                                _IMAGE),
    "VAEEncodeTiled": ComfyNode("VAEEncodeTiled", ("tile_size", "overlap", "temporal_size", "temporal_overlap"),
                                {"pixels": "image", "overlap": None, "temporal_size": None, "temporal_overlap": None},
                                _LATENT),
    "VAEEncodeForInpaint": ComfyNode("InpaintEncode", ("grow_mask_by",), outputs=_LATENT),
    "InpaintModelConditioning": ComfyNode("InpaintModelConditioning", ("noise_mask",),
                                          outputs=("positive", "negative", "latent")),
    "VAELoader": ComfyNode("VAELoader", ("vae_name",), {"vae_name": "name"}, ("vae",)),
    "ControlNetLoader": ComfyNode("ControlNetLoader", ("control_net_name",), {"control_net_name": "name"},
                                  ("control_net",)),
    "ControlNetApplyAdvanced": ComfyNode("ControlNetApply", ("strength", "start_percent", "end_percent"),
                                         {"vae": None}, ("positive", "negative")),
    "SaveImage": ComfyNode("SaveImage", ("filename_prefix",)),
    "PreviewImage": ComfyNode("PreviewImage"),
    "LoadImage": ComfyNode("LoadImage", ("image", "upload"), {"upload": None}, ("image", "mask")),
    "LoadImageMask": ComfyNode("LoadImageMask", ("image", "channel", "upload"), {"upload": None}, _MASK),
    "LoraLoader": ComfyNode("LoraLoader", ("lora_name", "strength_model", "strength_clip"), {"lora_name": "name"},
                            ("model", "clip")),
    "LoraLoaderModelOnly": ComfyNode("LoraModelLoader", ("lora_name", "strength_model"),
                                     {"lora_name": "name", "strength_model": "strength"}, ("model",)),
    "UpscaleModelLoader": ComfyNode("UpscaleModelLoader", ("model_name",), {"model_name": "name"}, ("upscale_model",)),
    "ImageUpscaleWithModel": ComfyNode("UpscaleWithModel", outputs=_IMAGE),
    "LatentUpscale": ComfyNode("LatentUpscale", ("upscale_method", "width", "height", "crop"),
                               {"samples": "latent", "upscale_method": "method", "crop": None}, _LATENT,
                               fixed={"scale_by": 1.0}),
    "LatentUpscaleBy": ComfyNode("LatentUpscale", ("upscale_method", "scale_by"),
                                 {"samples": "latent", "upscale_method": "method"}, _LATENT,
                                 fixed={"width": 0, "height": 0}),
    "ImageScale": ComfyNode("ImageScale", ("upscale_method", "width", "height", "crop"),
                            {"upscale_method": "method", "crop": None}, _IMAGE, fixed={"scale_by": 1.0}),
    "ImageScaleBy": ComfyNode("ImageScale", ("upscale_method", "scale_by"), {"upscale_method": "method"}, _IMAGE,
                              fixed={"width": 0, "height": 0}),
    "ImageScaleToTotalPixels": ComfyNode("ImageScaleToPixels", ("upscale_method", "megapixels", "resolution_steps"),
                                         {"upscale_method": "method", "resolution_steps": None}, _IMAGE),
    "SetLatentNoiseMask": ComfyNode("SetLatentNoiseMask", (), {"samples": "latent"}, _LATENT),
    "UNETLoader": ComfyNode("DiffusionModelLoader", ("unet_name", "weight_dtype"), {"unet_name": "name"}, ("model",)),
    "DualCLIPLoader": ComfyNode("TextEncoderLoader", ("clip_name1", "clip_name2", "type", "device"),
                                {"clip_name1": "text_encoder_1", "clip_name2": "text_encoder_2", "type": "family",
                                 "device": None}, ("clip",)),
    "TripleCLIPLoader": ComfyNode("TextEncoderLoader", ("clip_name1", "clip_name2", "clip_name3"),
                                  {"clip_name1": "text_encoder_1", "clip_name2": "text_encoder_2",
                                   "clip_name3": "text_encoder_3"}, ("clip",), fixed={"family": "sd3"}),
    "FluxGuidance": ComfyNode("FluxGuidance", ("guidance",), outputs=("conditioning",)),
    "ModelSamplingSD3": ComfyNode("FlowShift", ("shift",), outputs=("model",)),
    # masks, images, latents (docs/builtin-nodes.md has the ComfyUI column)
    "ImageToMask": ComfyNode("ImageToMask", ("channel",), outputs=_MASK),
    "MaskToImage": ComfyNode("MaskToImage", outputs=_IMAGE),
    "InvertMask": ComfyNode("InvertMask", outputs=_MASK),
    "GrowMask": ComfyNode("GrowMask", ("expand", "tapered_corners"), outputs=_MASK),
    "FeatherMask": ComfyNode("FeatherMask", ("left", "top", "right", "bottom"), outputs=_MASK),
    "ThresholdMask": ComfyNode("ThresholdMask", ("value",), outputs=_MASK),
    "MaskComposite": ComfyNode("CombineMasks", ("x", "y", "operation"), outputs=_MASK),
    "SolidMask": ComfyNode("SolidMask", ("value", "width", "height"), outputs=_MASK),
    "CropMask": ComfyNode("CropMask", ("x", "y", "width", "height"), outputs=_MASK),
    "Canny": ComfyNode("CannyEdges", ("low_threshold", "high_threshold"), outputs=_IMAGE),
    "ImageInvert": ComfyNode("InvertImage", outputs=_IMAGE),
    "ImageBlur": ComfyNode("BlurImage", ("blur_radius", "sigma"), {"blur_radius": "radius"}, _IMAGE),
    "ImagePadForOutpaint": ComfyNode("PadForOutpaint", ("left", "top", "right", "bottom", "feathering"),
                                     outputs=("image", "mask")),
    "ImageCompositeMasked": ComfyNode("CompositeImages", ("x", "y", "resize_source"), outputs=_IMAGE),
    "LatentComposite": ComfyNode("CompositeLatents", ("x", "y", "feather"), outputs=_LATENT),
    "RepeatLatentBatch": ComfyNode("RepeatLatentBatch", ("amount",), {"samples": "latent"}, _LATENT),
    "RepeatImageBatch": ComfyNode("RepeatImageBatch", ("amount",), outputs=_IMAGE),
    "LatentFromBatch": ComfyNode("LatentFromBatch", ("batch_index", "length"), {"samples": "latent"}, _LATENT),
    "ImageFromBatch": ComfyNode("ImageFromBatch", ("batch_index", "length"), outputs=_IMAGE),
    "ImageBatch": ComfyNode("JoinImages", outputs=_IMAGE),
    "ImageCrop": ComfyNode("CropImage", ("width", "height", "x", "y"), outputs=_IMAGE),
    # sampling in parts (nodes/sampler_nodes.py)
    "KSamplerAdvanced": ComfyNode("SamplerAdvanced", ("add_noise", "noise_seed", "steps", "cfg", "sampler_name",
                                                      "scheduler", "start_at_step", "end_at_step",
                                                      "return_with_leftover_noise"),
                                  {"latent_image": "latent"}, _LATENT, fixed=COMFY, seeds=("noise_seed",)),
    "RandomNoise": ComfyNode("RandomNoise", ("noise_seed",), outputs=("noise",), fixed=COMFY, seeds=("noise_seed",)),
    "DisableNoise": ComfyNode("DisableNoise", outputs=("noise",)),
    "BasicScheduler": ComfyNode("ScheduleSigmas", ("scheduler", "steps", "denoise"), outputs=("sigmas",), fixed=COMFY),
    "SplitSigmas": ComfyNode("SplitSigmas", ("step",), outputs=("high_sigmas", "low_sigmas")),
    "KSamplerSelect": ComfyNode("SamplerSelect", ("sampler_name",), outputs=("sampler",)),
    "CFGGuider": ComfyNode("CFGGuider", ("cfg",), outputs=("guider",)),
    "SamplerCustomAdvanced": ComfyNode("SamplerCustom", (), {"latent_image": "latent"}, _LATENT),
    # conditioning operations (nodes/conditioning_nodes.py): the same names and widgets as ComfyUI's
    "ConditioningCombine": ComfyNode("ConditioningCombine", outputs=("conditioning",)),
    "ConditioningConcat": ComfyNode("ConditioningConcat", outputs=("conditioning",)),
    "ConditioningZeroOut": ComfyNode("ConditioningZeroOut", outputs=("conditioning",)),
    "ConditioningSetArea": ComfyNode("ConditioningSetArea", ("width", "height", "x", "y", "strength"),
                                     outputs=("conditioning",)),
    "ConditioningSetAreaPercentage": ComfyNode("ConditioningSetAreaPercentage", ("width", "height", "x", "y", "strength"),
                                               outputs=("conditioning",)),
    "ConditioningSetMask": ComfyNode("ConditioningSetMask", ("strength", "set_cond_area"), outputs=("conditioning",)),
    "ConditioningSetTimestepRange": ComfyNode("ConditioningSetTimestepRange", ("start", "end"),
                                              outputs=("conditioning",)),
    "PrimitiveInt": ComfyNode("PrimitiveInt", ("value",), outputs=("value",), seeds=("value",)),
    "PrimitiveFloat": ComfyNode("PrimitiveFloat", ("value",), outputs=("value",)),
    "PrimitiveString": ComfyNode("PrimitiveString", ("value",), outputs=("value",)),
    "PrimitiveStringMultiline": ComfyNode("PrimitiveText", ("value",), outputs=("value",)),
    "PrimitiveBoolean": ComfyNode("PrimitiveBoolean", ("value",), outputs=("value",)),
}
"""ComfyUI core class name -> its gouache equivalent."""

SAMPLER_ALIASES = {"uni_pc": "unipc", "uni_pc_bh2": "unipc_bh2", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
                   "dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_3m_sde_gpu": "dpmpp_3m_sde"}
"""ComfyUI sampler names that are ours under another name (the ``_gpu`` SDE variants differ only in where
the Brownian tree lives: close, not equal; ``docs/import.md``)."""

SAMPLERS = {**{name: name for name in OUR_SAMPLERS}, **{comfy: ours for comfy, ours in SAMPLER_ALIASES.items()
                                                          if ours in OUR_SAMPLERS}}
"""ComfyUI sampler name -> ours: every sampler the Sampler offers under its own name, plus the aliases."""

SCHEDULERS = {name: name for name in OUR_SCHEDULES}
"""ComfyUI scheduler name -> ours (the names are ComfyUI's)."""

METHODS = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area", "bicubic": "bicubic",
           "lanczos": "lanczos"}
"""ComfyUI upscale_method -> ours (``bislerp`` has no counterpart)."""

WEIGHT_DTYPES = {"default": "default", "fp8_e4m3fn": "fp8_e4m3fn", "fp8_e4m3fn_fast": "fp8_e4m3fn",
                 "fp8_e5m2": "fp8_e5m2"}

TEXT_ENCODER_FAMILIES = {"sd3": "sd3", "flux": "flux"}

VALUE_MAPS: dict[str, dict[str, str]] = {
    "sampler_name": SAMPLERS, "scheduler": SCHEDULERS, "method": METHODS, "weight_dtype": WEIGHT_DTYPES,
}
"""Our input name -> the ComfyUI value -> our value, for inputs whose choices are named differently."""

VALUE_MAPS_BY_TYPE: dict[tuple[str, str], dict[str, str]] = {("TextEncoderLoader", "family"): TEXT_ENCODER_FAMILIES}

PASS_THROUGH = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
"""UI-only ComfyUI nodes: reroutes are followed, primitives become literals, notes are dropped."""
