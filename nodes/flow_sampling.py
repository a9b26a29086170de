"""The rectified-flow denoising loop of SD 3.x and Flux.1, step for step as diffusers' pipelines run it.

Same initial noise as ``StableDiffusion3Pipeline`` / ``FluxPipeline`` (``randn`` of the unpacked
latent shape from a CPU generator seeded with the seed), the same ``FlowMatchEulerDiscreteScheduler``
timesteps (SD 3: the scheduler's own spacing shifted by ``shift``; Flux.1: sigmas from 1 to 1/steps,
shifted for the image's token count by ``mu`` where the config asks for dynamic shifting), the same
classifier-free guidance batch (negative first). Flux.1 reads latents packed 2 x 2 into tokens with
their (row, column) ids, and dev's distilled guidance strength as an input of the transformer; the
strength travels on the conditioning (``FluxGuidance`` sets it, else the family default).

``denoise < 1`` starts part-way, as the img2img pipelines' ``strength`` does: the last
``int(steps * denoise)`` steps, the input latent noised to the first of them with ``scale_noise``.
A window of steps (``SamplerAdvanced``, ``SamplerCustom``) runs as in ``gouache.nodes.sampling``;
flow latents are ``(1 - sigma) * x0 + sigma * noise`` in every part.

The ``comfyui`` convention keeps the model call (guidance batch, packing, Flux guidance) and samples as ComfyUI
does (``nodes/comfy_sampling.py`` on ``comfy_sigmas.FlowSigmas``): SD 3.x on ``ModelSamplingDiscreteFlow``
(shift 3, timestep ``1000 * sigma``), Flux.1 dev on ``ModelSamplingFlux`` with its fixed shift ``mu = 1.15``
(not the pipeline's size-dependent one), schnell unshifted; ``FlowShift`` sets SD 3's shift, and for Flux.1 dev
``mu = ln(shift)`` (ComfyUI's ``ModelSamplingFlux`` node computes ``mu`` from the size it is given).
"""

from __future__ import annotations

import math
from typing import Any

from gouache.engine import InputError

FLOW_SAMPLERS = {"euler": "FlowMatchEulerDiscreteScheduler", "heun": "FlowMatchHeunDiscreteScheduler"}
FLOW_SCHEDULES = {"normal": {}, "simple": {}, "karras": {"use_karras_sigmas": True},
                  "exponential": {"use_exponential_sigmas": True}, "beta": {"use_beta_sigmas": True}}


def make_flow_scheduler(config: dict[str, Any], sampler: str, schedule: str, overrides: dict[str, Any]) -> Any:
    """A fresh flow-matching scheduler for ``sampler`` / ``schedule`` on the model's scheduler config."""
    import diffusers

    if sampler not in FLOW_SAMPLERS:
        raise InputError("sampler_name", f"flow models sample with {', '.join(FLOW_SAMPLERS)}, not {sampler!r}",
                         "not_a_choice")
    if schedule not in FLOW_SCHEDULES:
        raise InputError("scheduler", f"flow models take the schedules {', '.join(FLOW_SCHEDULES)}, not {schedule!r}",
                         "not_a_choice")
    cls = getattr(diffusers, FLOW_SAMPLERS[sampler])
    flags = FLOW_SCHEDULES[schedule]
    if flags and not all(flag in cls.__init__.__code__.co_varnames for flag in flags):
        raise InputError("scheduler", f"sampler {sampler!r} follows only the normal schedule", "not_a_choice")
    base = {k: v for k, v in config.items() if not k.startswith("_")}
    return cls.from_config({**base, **overrides, **flags})


def pack(latents: Any) -> Any:
    """[B, C, H, W] -> [B, H/2 * W/2, C*4], as FluxPipeline packs them."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Any, height: int, width: int) -> Any:
    """The inverse of :func:`pack`, for a latent of ``height`` x ``width`` cells."""
    b, _, d = tokens.shape
    return tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(
        b, d // 4, height, width)


def image_ids(height: int, width: int, device: Any, dtype: Any) -> Any:
    """Flux's position ids of the packed tokens: (0, row, column)."""
    import torch

    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def calculate_shift(seq_len: int, config: dict[str, Any]) -> float:
    """Flux's resolution-dependent ``mu``: linear in the token count between the config's two points."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    return seq_len * slope + base - slope * base_len


def sample_flow(manager: Any, ctx: Any, model: Any, positive: Any, negative: Any, latent: dict[str, Any],
                settings: Any) -> Any:
    """Denoise ``latent`` with a flow model into a ``gouache.nodes.sampling.Sampled`` (inputs unchanged)."""
    import numpy as np
    import torch

    from gouache.nodes.interrupt import interruptible
    from gouache.nodes.lora import patched
    from gouache.nodes.loading.manual_cast import compute_dtype
    from gouache.nodes.preview import latent_preview_jpeg
    from gouache.nodes.sampling import PREVIEW_EVERY, Sampled

    loaded = model.checkpoint.loaded
    family, transformer = loaded.family, loaded.denoiser
    if transformer is None:
        raise InputError("model", f"this {family.label} MODEL holds no diffusion model", "missing_part")
    for name, cond in (("positive", positive), ("negative", negative)):
        if cond.pooled is None:
            raise InputError(name, f"{family.label} needs conditioning from a {family.label} CLIP (this one has no "
                                   "pooled embedding)", "wrong_family")
    device = manager.on_device([transformer])
    dtype = compute_dtype(transformer)
    init = latent["samples"].to(device=device, dtype=torch.float32)
    batch, channels, height, width = init.shape
    if channels != family.latent.channels:
        if init.any():
            raise InputError("latent", f"{family.label} latents have {family.latent.channels} channels, this one "
                                       f"{channels}: it was made by another family's VAE", "wrong_shape")
        # An empty latent (EmptyLatent makes SD's 4 channels): the same graph serves every family.
        init = torch.zeros(batch, family.latent.channels, height, width, device=device)
        channels = family.latent.channels
    packing = family.latent.packing
    if height % packing or width % packing:
        raise InputError("latent", f"{family.label} latents need sides that are multiples of {packing} cells "
                                   f"({packing * family.latent.downscale} px)", "not_a_multiple")
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    noise = torch.randn(tuple(init.shape), generator=generator, dtype=torch.float32).to(device)

    comfy = settings.convention == "comfyui"
    if comfy and settings.sampler_name not in COMFY_FLOW_SAMPLERS:
        raise InputError("sampler_name", f"in ComfyUI's convention {family.label} samples with "
                                         f"{', '.join(COMFY_FLOW_SAMPLERS)} so far (ComfyUI runs its ancestral, SDE "
                                         f"and UniPC samplers its own way on flow models), not "
                                         f"{settings.sampler_name!r}", "not_a_choice")
    if not comfy:
        config = dict(loaded.scheduler_config)
        scheduler = make_flow_scheduler(config, settings.sampler_name, settings.scheduler, dict(model_overrides(model)))
        kwargs: dict[str, Any] = {}
        tokens = (height // packing) * (width // packing)
        if family.flow_sigmas == "linear":
            kwargs["sigmas"] = np.linspace(1.0, 1 / settings.steps, settings.steps)
            kwargs["mu"] = calculate_shift(tokens, scheduler.config)
        elif scheduler.config.get("use_dynamic_shifting"):
            kwargs["mu"] = calculate_shift(tokens, scheduler.config)
        scheduler.set_timesteps(settings.steps, device=device, **kwargs)
        first, last = settings.window()
        start, stop = first * scheduler.order, min(last * scheduler.order, len(scheduler.timesteps))
        timesteps = scheduler.timesteps[start:stop]
        scheduler.set_begin_index(start)
        if len(timesteps) == 0:
            unchanged = {**latent, "samples": latent["samples"].clone()}
            return Sampled(unchanged, unchanged)
        if not settings.add_noise:  # the latent carries the noise of its first step already
            latents = init
            noise = torch.zeros_like(noise)
        elif start > 0:
            latents = scheduler.scale_noise(init, timesteps[:1].repeat(batch), noise)
        else:
            latents = noise
        finish_early = not settings.leftover_noise and last < settings.steps

    # ComfyUI guides at any cfg but 1 (below 1 too); the pipelines only above 1.
    guided = not math.isclose(settings.cfg, 1.0) if comfy else settings.cfg > 1.0
    conds = [negative, positive] if guided else [positive]
    # One batch when the prompts are equally long (as the pipelines run it), else one call each.
    batched = len({cond.embeds.shape[1] for cond in conds}) == 1
    groups = [conds] if batched else [[cond] for cond in conds]
    inputs = []
    for group in groups:
        embeds = torch.cat([cond.embeds.repeat(batch, 1, 1) for cond in group]).to(device=device, dtype=dtype)
        pooled = torch.cat([cond.pooled.repeat(batch, 1) for cond in group]).to(device=device, dtype=dtype)
        extra: dict[str, Any] = {}
        if packing > 1:
            extra["img_ids"] = image_ids(height, width, device, dtype)
            extra["txt_ids"] = torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype)
            if transformer.config.guidance_embeds:
                strength = positive.guidance if positive.guidance is not None else family.defaults.guidance
                extra["guidance"] = torch.full([embeds.shape[0]], float(strength), device=device, dtype=torch.float32)
        inputs.append((len(group), embeds, pooled, extra))

    def predict(state: Any, t: Any, scaled: bool = True) -> Any:
        """The guided velocity at scheduler timestep ``t`` (0..1000); ``scaled`` off: ``t`` is the transformer's
        own timestep already (ComfyUI's ``sigma * multiplier``)."""
        outputs = []
        for copies, embeds, pooled, extra in inputs:
            rows = embeds.shape[0]
            timestep = t.expand(rows)
            if packing > 1:  # FluxPipeline: t in the latents' dtype, scaled to 0..1
                timestep = timestep.to(dtype) / 1000 if scaled else timestep.to(dtype)
            outputs.append(transformer(hidden_states=torch.cat([state] * copies).to(dtype), timestep=timestep,
                                       encoder_hidden_states=embeds, pooled_projections=pooled, return_dict=False,
                                       **extra)[0].float())
        prediction = torch.cat(outputs)
        if guided:
            uncond, cond = prediction.chunk(2)
            prediction = uncond + settings.cfg * (cond - uncond)
        return prediction

    mask = latent.get("noise_mask")
    if mask is not None:
        mask = torch.nn.functional.interpolate(mask.to(device=device, dtype=torch.float32).reshape(
            -1, 1, *mask.shape[-2:]), size=init.shape[-2:], mode="bilinear").expand_as(init[:, :1])
    if comfy:
        return _sample_comfy(manager, ctx, model, predict, init, mask, latent, settings)
    state = pack(latents) if packing > 1 else latents
    total = len(timesteps)
    every = max(1, min(PREVIEW_EVERY, total // 5 or 1))
    with torch.no_grad(), patched(manager, family.denoiser_slot, transformer, model.patches), \
            interruptible([transformer], ctx.check_interrupt):
        for index, t in enumerate(timesteps):
            velocity = predict(state, t)
            if index == total - 1:  # the last step's estimate of x0, which force_full_denoise returns
                denoised = state - scheduler.sigmas[start + index] * velocity
                denoised = unpack(denoised, height, width) if packing > 1 else denoised
                if mask is not None:
                    denoised = (1 - mask) * init + mask * denoised
            if finish_early and index == total - 1:
                state = pack(denoised) if packing > 1 else denoised
            else:
                state = scheduler.step(velocity, t, state, return_dict=False)[0]
            if mask is not None:
                current = unpack(state, height, width) if packing > 1 else state
                keep = init
                if index < total - 1:
                    keep = scheduler.scale_noise(init, timesteps[index + 1:index + 2], noise)
                current = (1 - mask) * keep + mask * current
                state = pack(current) if packing > 1 else current
            ctx.progress(index + 1, total)
            if ctx.wants_previews and ((index + 1) % every == 0 or index + 1 == total):
                current = unpack(state, height, width) if packing > 1 else state
                ctx.preview(latent_preview_jpeg(current, family.latent))
    result = unpack(state, height, width) if packing > 1 else state
    return Sampled({**latent, "samples": result.to("cpu", torch.float32)},
                   {**latent, "samples": denoised.to("cpu", torch.float32)})


COMFY_FLOW_SAMPLERS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim")
"""The samplers whose steps ComfyUI takes on flow models as on the others (its ancestral, SDE and UniPC samplers
have flow variants of their own that the ``comfyui`` convention does not follow yet)."""


def _sample_comfy(manager: Any, ctx: Any, model: Any, predict: Any, init: Any, mask: Any, latent: dict[str, Any],
                  settings: Any) -> Any:
    """The ``comfyui`` convention on a flow model: ComfyUI's table (``comfy_table``: SD 3.x's discrete flow,
    Flux.1 dev's fixed ``ModelSamplingFlux`` shift, schnell's unshifted flow) and its ``CONST`` denoiser, through
    ``comfy_sampling.sample_comfy`` on the unpacked latent."""
    import torch

    from gouache.nodes.comfy_sampling import sample_comfy
    from gouache.nodes.comfy_sigmas import comfy_table
    from gouache.nodes.interrupt import interruptible
    from gouache.nodes.lora import patched
    from gouache.nodes.sampling import Sampled, _reporter

    loaded = model.checkpoint.loaded
    family, transformer = loaded.family, loaded.denoiser
    table = comfy_table(loaded, dict(model_overrides(model)))
    height, width = init.shape[-2:]
    packing = family.latent.packing

    def call(x: Any, timestep: Any, step: int, count: int, when: float) -> Any:
        velocity = predict(pack(x) if packing > 1 else x, timestep, scaled=False)
        return unpack(velocity, height, width) if packing > 1 else velocity

    with torch.no_grad(), patched(manager, family.denoiser_slot, transformer, model.patches), \
            interruptible([transformer], ctx.check_interrupt):
        result = sample_comfy(table, call, init, mask, latent.get("batch_index"), settings,
                              _reporter(ctx, family.latent))
    return Sampled.of_comfy(latent, result)


def model_overrides(model: Any) -> tuple[tuple[str, Any], ...]:
    """Scheduler settings a MODEL handle carries (``FlowShift``)."""
    return getattr(model, "sampling", ())
