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
    max_tokens: int = 77
    """How many tokens one prompt window holds, padding included (T5 reads one long window)."""


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
    scaling_factor: float | None = None
    """Model-space latents are ``(vae latents - shift_factor) * scaling_factor``; ``None``: the VAE config's."""
    shift_factor: float = 0.0
    packing: int = 1
    """The denoiser reads ``packing`` x ``packing`` latent cells as one token (Flux packs 2 x 2)."""
    hidden: tuple[tuple[float, ...], ...] | None = None
    """An optional hidden layer of the preview map, one row per latent channel: previews then compute
    ``silu(latent . hidden + hidden_bias) . rgb_factors + rgb_bias`` (a model's own fitted factors,
    ``gouache.nodes.model_settings``)."""
    hidden_bias: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Defaults:
    """Settings that suit the family's models, offered by the editor and the docs."""

    width: int
    height: int
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "euler"
    scheduler: str = "normal"
    guidance: float | None = None
    """The distilled guidance strength, for families whose denoiser reads one (Flux.1 dev)."""


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
    join_encoders: Literal["single", "concat", "clip_then_t5", "t5_with_pooled"] = "single"
    """How the encoders' hidden states combine: the one encoder's; concatenated feature-wise (SDXL);
    ``clip_then_t5``: the CLIPs' concatenated feature-wise, zero-padded to T5's width and followed along
    the sequence by T5's (SD 3); ``t5_with_pooled``: T5's alone, the CLIP only pools (Flux.1)."""
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

    sampling: Literal["discrete", "flow"] = "discrete"
    """``discrete``: a noise schedule over 1000 timesteps (SD 1.x-XL); ``flow``: rectified flow
    (``FlowMatchEulerDiscreteScheduler``, the sigma schedule shifted by the scheduler config's ``shift``)."""
    flow_sigmas: Literal["scheduler", "linear"] = "scheduler"
    """How a flow family's pipeline spaces its sigmas: the scheduler's own spacing (SD 3), or evenly from
    1 to 1/steps and then shifted for the image's token count (Flux.1)."""
    guidance_embed: bool = False
    """Its denoisers may read a distilled guidance strength (Flux.1 dev; schnell has no guidance layer)."""
    original_marker: str | None = None
    """A tensor only this family's denoiser has in the original layout (bare or under ``UNET_PREFIX``)."""
    diffusers_marker: str | None = None
    """A tensor only this family's denoiser has in diffusers' layout (a ``transformer`` file of a folder)."""

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

_SD3_RGB = ((-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
            (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
            (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
            (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189))
_FLUX_RGB = ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
             (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
             (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
             (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778))
_T5_PREFIX = "text_encoders.t5xxl.transformer."

SD3 = Family(
    name="sd3",
    label="Stable Diffusion 3.x",
    pipelines=("StableDiffusion3Pipeline",),
    denoiser_class="SD3Transformer2DModel",
    denoiser_slot="transformer",
    encoders=(
        # SD 3 reads CLIP-L's pooled output unprojected: its files carry an identity projection.
        TextEncoder("text_encoder", "tokenizer", "CLIPTextModelWithProjection", "clip",
                    "text_encoders.clip_l.transformer.", hidden="penultimate", pooled=True),
        TextEncoder("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection", "clip",
                    "text_encoders.clip_g.transformer.", hidden="penultimate", pooled=True),
        TextEncoder("text_encoder_3", "tokenizer_3", "T5EncoderModel", "t5", _T5_PREFIX, max_tokens=256),
    ),
    latent=LatentFormat(channels=16, downscale=8, rgb_factors=_SD3_RGB, rgb_bias=(0.2394, 0.2135, 0.1925),
                        scaling_factor=1.5305, shift_factor=0.0609),
    prediction_types=("flow",),
    defaults=Defaults(1024, 1024, steps=28, cfg=4.5),
    join_encoders="clip_then_t5",
    context_width=4096,
    sampling="flow",
    original_marker="joint_blocks.0.x_block.attn.qkv.weight",
    diffusers_marker="pos_embed.pos_embed",
)

FLUX = Family(
    name="flux",
    label="Flux.1",
    pipelines=("FluxPipeline",),
    denoiser_class="FluxTransformer2DModel",
    denoiser_slot="transformer",
    encoders=(
        TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", "clip", "text_encoders.clip_l.transformer.",
                    pooled=True),
        TextEncoder("text_encoder_2", "tokenizer_2", "T5EncoderModel", "t5", _T5_PREFIX, max_tokens=512),
    ),
    latent=LatentFormat(channels=16, downscale=8, rgb_factors=_FLUX_RGB, rgb_bias=(-0.0329, -0.0718, -0.0851),
                        scaling_factor=0.3611, shift_factor=0.1159, packing=2),
    prediction_types=("flow",),
    # Flux.1 dev is guidance-distilled: cfg 1 (one model call per step) and a guidance strength of 3.5.
    defaults=Defaults(1024, 1024, steps=20, cfg=1.0, guidance=3.5),
    join_encoders="t5_with_pooled",
    context_width=4096,
    sampling="flow",
    flow_sigmas="linear",
    guidance_embed=True,
    original_marker="double_blocks.0.img_attn.qkv.weight",
    diffusers_marker="single_transformer_blocks.0.proj_mlp.weight",
)


FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SD2, SDXL, SD3, FLUX)}
"""Every family gouache loads, by name, in the order detection tries them."""


def family(name: str) -> Family:
    """The family called ``name``; raises ``KeyError`` naming the known families."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; gouache knows: {', '.join(FAMILIES)}") from None
