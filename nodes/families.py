"""One description per model family: everything gouache knows about SD 1.x, SD 2.x, SDXL, ...

Every module that behaves differently per family reads it from here (loading, detection, text
encoding, sampling, previews, the model folders, the editor's defaults) instead of branching on a
family's name. Adding a family is one new :class:`Family` plus the code for what is truly new in
it (a new denoiser call, a new way to join text encoders); ``docs/models.md`` walks through it.

This module is plain data: it imports no torch, so ``gouache nodes`` and ``gouache models`` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PredictionType = Literal["epsilon", "v_prediction", "flow"]

UNET_PREFIX = "model.diffusion_model."
"""Where the denoiser sits in an original-layout (CompVis LDM / Stability SGM) single file."""
VAE_PREFIX = "first_stage_model."
"""Where the autoencoder sits in an original-layout single file."""


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family and how its output is used.

    ``slot`` is its diffusers subfolder (``text_encoder``, ``text_encoder_2``, ...) and ``tokenizer``
    the tokenizer's. ``layout`` is how an original single file stores it: ``clip`` (transformers'
    CLIP keys), ``open_clip`` (OpenCLIP's ``TextTransformer`` keys) or ``t5``. ``hidden`` picks the
    output the denoiser reads: ``last`` is the final layer norm's output, ``penultimate`` the hidden
    state before the last block. ``pooled`` says whether its projected pooled output is used.
    """

    slot: str
    tokenizer: str
    model_class: str
    layout: Literal["clip", "open_clip", "t5"]
    original_prefix: str
    hidden: Literal["last", "penultimate"] = "last"
    pooled: bool = False


@dataclass(frozen=True)
class LatentFormat:
    """The latent space: channels, pixels per latent cell, and a linear map to RGB for previews.

    ``rgb_factors`` has one (r, g, b) row per latent channel; previews compute
    ``latent . rgb_factors + rgb_bias`` in -1..1. The factors are the widely used approximations
    (as in ComfyUI's ``latent_formats.py`` and A1111's "approx NN" fallback).
    """

    channels: int
    downscale: int
    rgb_factors: tuple[tuple[float, float, float], ...]
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Defaults:
    """Settings that suit the family's models, offered by the editor and the docs."""

    width: int
    height: int
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "euler"
    scheduler: str = "normal"


@dataclass(frozen=True)
class Family:
    """Everything gouache knows about one model family."""

    name: str
    """Short stable id (``sd1``); also the name of the shipped config folder ``nodes/configs/<name>``."""
    label: str
    """What people call it (``Stable Diffusion 1.x``)."""
    pipelines: tuple[str, ...]
    """diffusers pipeline classes (``model_index.json``'s ``_class_name``) of this family's folders."""
    denoiser_class: str
    """The diffusers class of the denoiser."""
    denoiser_slot: str
    """Its diffusers subfolder (``unet`` or ``transformer``)."""
    encoders: tuple[TextEncoder, ...]
    latent: LatentFormat
    prediction_types: tuple[PredictionType, ...]
    """What its models predict; the first is the default when nothing says otherwise."""
    defaults: Defaults
    join_encoders: Literal["single", "concat"] = "single"
    """How the encoders' hidden states combine: the one encoder's, or concatenated feature-wise."""
    size_conditioning: bool = False
    """The denoiser also reads the image size and crop (SDXL's ``time_ids``) and a pooled embedding."""
    context_width: int | None = None
    """The cross-attention width its denoiser reads: tells families apart when a file has no encoders."""
    linear_projection: bool = False
    """Its UNet's transformers project with linear layers (``use_linear_projection``), not 1x1 convolutions."""
    prediction_by_name: tuple[tuple[str, PredictionType], ...] = ()
    """``(regex, prediction)`` pairs tried on a single file's name when nothing in the file says."""
    sizes_by_prediction: tuple[tuple[PredictionType, str, tuple[tuple[str, int], ...]], ...] = ()
    """Config sizes that differ from the shipped config for a prediction type: ``(prediction, slot, ((key, value), ...))``."""

    @property
    def pooled(self) -> bool:
        """Whether conditioning carries a pooled text embedding."""
        return any(encoder.pooled for encoder in self.encoders)

    @property
    def encoder_prefixes(self) -> tuple[str, ...]:
        """Where each text encoder sits in an original single file, in ``encoders`` order."""
        return tuple(encoder.original_prefix for encoder in self.encoders)


_SD_LATENT = LatentFormat(
    channels=4,
    downscale=8,
    rgb_factors=((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                 (-0.2120, -0.2616, -0.7177)),
)
_CLIP_L = TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", "clip", "cond_stage_model.transformer.")

SD1 = Family(
    name="sd1",
    label="Stable Diffusion 1.x",
    pipelines=("StableDiffusionPipeline",),
    denoiser_class="UNet2DConditionModel",
    denoiser_slot="unet",
    encoders=(_CLIP_L,),
    latent=_SD_LATENT,
    prediction_types=("epsilon", "v_prediction"),
    defaults=Defaults(512, 512),
    context_width=768,
)

SD2 = Family(
    name="sd2",
    label="Stable Diffusion 2.x",
    pipelines=("StableDiffusionPipeline",),
    denoiser_class="UNet2DConditionModel",
    denoiser_slot="unet",
    encoders=(TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", "open_clip", "cond_stage_model.model."),),
    latent=_SD_LATENT,
    # The 768 px flagship of 2.0 and 2.1 predicts velocity; the 512 px base models predict noise.
    prediction_types=("v_prediction", "epsilon"),
    defaults=Defaults(768, 768),
    context_width=1024,
    linear_projection=True,
    # v2-1_512-ema-pruned, sd2-base: the 512 px epsilon models, which differ from the shipped
    # 768-v config only in their sizes.
    prediction_by_name=((r"^(?!.*768).*(512|base)", "epsilon"),),
    sizes_by_prediction=(("epsilon", "unet", (("sample_size", 64),)), ("epsilon", "vae", (("sample_size", 512),))),
)

SDXL = Family(
    name="sdxl",
    label="Stable Diffusion XL",
    pipelines=("StableDiffusionXLPipeline",),
    denoiser_class="UNet2DConditionModel",
    denoiser_slot="unet",
    encoders=(
        TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", "clip", "conditioner.embedders.0.transformer.",
                    hidden="penultimate"),
        TextEncoder("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection", "open_clip",
                    "conditioner.embedders.1.model.", hidden="penultimate", pooled=True),
    ),
    latent=LatentFormat(
        channels=4,
        downscale=8,
        rgb_factors=((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                     (-0.3165, -0.2492, -0.2188)),
        rgb_bias=(0.1084, -0.0175, -0.0011),
    ),
    prediction_types=("epsilon", "v_prediction"),
    defaults=Defaults(1024, 1024),
    join_encoders="concat",
    size_conditioning=True,
    context_width=2048,
    linear_projection=True,
)

FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SD2, SDXL)}
"""Every family gouache loads, by name, in the order detection tries them."""


def family(name: str) -> Family:
    """The family called ``name``; raises ``KeyError`` naming the known families."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; gouache knows: {', '.join(FAMILIES)}") from None
