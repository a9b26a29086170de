"""The denoising loop, step for step as diffusers' Stable Diffusion (XL) pipelines run it.

Same initial noise (``torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))``),
same classifier-free guidance batch (negative first), same ``scale_model_input`` / ``step`` calls,
the same seeded generator handed to schedulers that draw noise; so with the same weights and
settings the latents equal the pipeline's. ``denoise < 1`` starts part-way exactly as the img2img
pipelines' ``strength`` does: ``int(steps * denoise)`` steps from the end of the schedule, the input
latent noised to the first of them with ``scheduler.add_noise``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gouache.engine import InputError
from gouache.nodes.types import Conditioning, ModelHandle

PREVIEW_EVERY = 4


@dataclass(frozen=True)
class SampleSettings:
    """The sampler node's scalar inputs."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0


def _match_windows(a: Any, b: Any) -> tuple[Any, Any]:
    """Give two embeddings of different window counts the same length by repeating each whole."""
    if a.shape[1] == b.shape[1]:
        return a, b
    length = math.lcm(a.shape[1], b.shape[1])
    return a.repeat(1, length // a.shape[1], 1), b.repeat(1, length // b.shape[1], 1)


def _time_ids(cond: Conditioning, height: int, width: int) -> list[int]:
    if cond.size is not None:
        original, crop, target = cond.size
        return [*original, *crop, *target]
    return [height, width, 0, 0, height, width]


def sample(manager: Any, ctx: Any, model: ModelHandle, positive: Conditioning, negative: Conditioning,
           latent: dict[str, Any], settings: SampleSettings) -> dict[str, Any]:
    """Denoise ``latent`` and return a new LATENT dict; the inputs are left as they were."""
    import torch

    from gouache.nodes.interrupt import interruptible
    from gouache.nodes.latent import vae_scale_factor
    from gouache.nodes.lora import patched
    from gouache.nodes.preview import latent_preview_jpeg
    from gouache.nodes.schedulers import make_scheduler, step_kwargs

    loaded = model.checkpoint.loaded
    family = loaded.family
    if family.sampling == "flow":  # SD 3.x, Flux.1: rectified flow on a transformer
        from gouache.nodes.flow_sampling import sample_flow

        return sample_flow(manager, ctx, model, positive, negative, latent, settings)
    unet = loaded.denoiser
    if unet.config.in_channels != latent["samples"].shape[1]:
        # A 9-channel inpainting UNet also reads the masked image's latent and the mask.
        raise InputError("model", f"this UNet reads {unet.config.in_channels} latent channels and the latent has "
                                  f"{latent['samples'].shape[1]}: an inpainting model needs the masked image and the "
                                  "mask as conditioning, which this sampler is not given; use a model made for "
                                  "text-to-image, or inpaint with SetLatentNoiseMask on one", "needs_inpainting_conditioning")
    device = manager.on_device([unet])
    dtype = unet.dtype
    init = latent["samples"].to(device=device, dtype=torch.float32)
    batch = init.shape[0]
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    noise = torch.randn(tuple(init.shape), generator=generator).to(device)

    scheduler = make_scheduler(loaded.scheduler_config, settings.sampler_name, settings.scheduler, settings.seed)
    scheduler.set_timesteps(settings.steps, device=device)
    timesteps = scheduler.timesteps
    if settings.denoise < 1.0:
        run_steps = min(int(settings.steps * settings.denoise), settings.steps)
        start = max(settings.steps - run_steps, 0) * scheduler.order
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        if len(timesteps) == 0:
            return {**latent, "samples": latent["samples"].clone()}
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
    else:
        latents = noise * scheduler.init_noise_sigma + init

    guided = settings.cfg > 1.0 and unet.config.time_cond_proj_dim is None
    pos_embeds, neg_embeds = positive.embeds, negative.embeds
    if guided:
        neg_embeds, pos_embeds = _match_windows(neg_embeds, pos_embeds)
        embeds = torch.cat([neg_embeds.repeat(batch, 1, 1), pos_embeds.repeat(batch, 1, 1)])
    else:
        embeds = pos_embeds.repeat(batch, 1, 1)
    embeds = embeds.to(device=device, dtype=dtype)
    added = None
    if family.size_conditioning:
        for name, cond in (("positive", positive), ("negative", negative)):
            if cond.pooled is None and (name == "positive" or guided):
                raise InputError(name, f"{family.label} needs conditioning from a {family.label} CLIP "
                                       "(this one has no pooled embedding)", "wrong_family")
        scale = vae_scale_factor(loaded.vae) if loaded.vae is not None else family.latent.downscale
        height, width = init.shape[-2] * scale, init.shape[-1] * scale
        pos_ids = torch.tensor([_time_ids(positive, height, width)], dtype=dtype).repeat(batch, 1)
        pooled = positive.pooled.repeat(batch, 1)
        if guided:
            neg_ids = torch.tensor([_time_ids(negative, height, width)], dtype=dtype).repeat(batch, 1)
            pooled = torch.cat([negative.pooled.repeat(batch, 1), pooled])
            pos_ids = torch.cat([neg_ids, pos_ids])
        added = {"text_embeds": pooled.to(device=device, dtype=dtype), "time_ids": pos_ids.to(device)}

    mask = latent.get("noise_mask")
    if mask is not None:
        mask = torch.nn.functional.interpolate(mask.to(device=device, dtype=torch.float32).reshape(
            -1, 1, *mask.shape[-2:]), size=init.shape[-2:], mode="bilinear").expand_as(init[:, :1])
    extra = step_kwargs(scheduler, generator)
    total = len(timesteps)
    every = max(1, min(PREVIEW_EVERY, total // 5 or 1))
    with torch.no_grad(), patched(manager, family.denoiser_slot, unet, model.patches), \
            interruptible([unet], ctx.check_interrupt):
        for index, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            prediction = unet(model_input.to(dtype), t, encoder_hidden_states=embeds, timestep_cond=None,
                              added_cond_kwargs=added, return_dict=False)[0].float()
            if guided:
                uncond, cond = prediction.chunk(2)
                prediction = uncond + settings.cfg * (cond - uncond)
            latents = scheduler.step(prediction, t, latents, **extra, return_dict=False)[0]
            if mask is not None:
                keep = init
                if index < total - 1:
                    keep = scheduler.add_noise(init, noise, timesteps[index + 1:index + 2])
                latents = (1 - mask) * keep + mask * latents
            ctx.progress(index + 1, total)
            if ctx.wants_previews and ((index + 1) % every == 0 or index + 1 == total):
                ctx.preview(latent_preview_jpeg(latents, family.latent))
    return {**latent, "samples": latents.to("cpu", torch.float32)}
