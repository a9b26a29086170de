"""The denoising loop, step for step as diffusers' Stable Diffusion (XL) pipelines run it.

Same initial noise (``torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))``),
same classifier-free guidance batch (negative first), same ``scale_model_input`` / ``step`` calls,
the same seeded generator handed to schedulers that draw noise; so with the same weights and
settings the latents equal the pipeline's. ``denoise < 1`` starts part-way exactly as the img2img
pipelines' ``strength`` does: ``int(steps * denoise)`` steps from the end of the schedule, the input
latent noised to the first of them with ``scheduler.add_noise``.

Sampling in parts (``SamplerAdvanced``, ``SamplerCustom``) runs a window ``[start, end)`` of the
``steps``-step schedule through the same loop: the scheduler is set to the whole schedule and begins
at ``start`` (``set_begin_index``), so a run of ``0..k`` with leftover noise followed by ``k..N``
without adding noise takes exactly the steps one run of ``N`` takes. A leftover latent is handed
over in the k-diffusion scaling (``x0 + sigma * noise``, what the Euler family keeps); samplers that
keep latents variance-preserving (DDIM, DPM++, UniPC, ...) are converted at the boundary, so a base
and a refiner may use different samplers. Multistep samplers restart their history at the split
(their first step after it is first order), as ComfyUI's do.

The ``comfyui`` convention (``SampleSettings.convention``) keeps everything up to the model call (guidance
batch, regions, ControlNets, LoRA patches, masks) and replaces the stepping: ComfyUI's initial noise,
sigma schedules and k-diffusion samplers, ``nodes/comfy_sampling.py``. Both call ``guided_prediction``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gouache.engine import InputError
from gouache.nodes.types import Conditioning, ModelHandle

PREVIEW_EVERY = 4
INPAINT_CHANNELS = 5
"""What an inpainting UNet reads beyond the latent: the mask (1) and the masked picture's latent (4)."""


@dataclass(frozen=True)
class SampleSettings:
    """The sampler node's scalar inputs."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    start_step: int = 0
    end_step: int | None = None
    """Stop before this step of the schedule; ``None``: run to the end."""
    add_noise: bool = True
    """Noise the input latent to the first step's level; off: it already carries that noise."""
    leftover_noise: bool = False
    """Stopping early, return the latent still noisy (for another sampler to go on); off: fully denoised."""
    convention: str = "gouache"
    """``comfyui``: ComfyUI's noise, sigmas and samplers (``nodes/comfy_sampling.py``) around the same model call."""
    sigmas: tuple[float, ...] | None = None
    """In the ``comfyui`` convention, levels to run as they are (``SamplerCustom``); ``None``: from the schedule."""

    def window(self) -> tuple[int, int]:
        """The steps run, ``[start, end)`` of the ``steps``-step schedule (``denoise`` < 1 starts later)."""
        end = self.steps if self.end_step is None else min(self.end_step, self.steps)
        start = self.start_step
        if self.denoise < 1.0:
            start = max(start, self.steps - min(int(self.steps * self.denoise), self.steps))
        return start, end


@dataclass(frozen=True)
class Sampled:
    """What a denoising run gives: the latent, and the last step's estimate of the clean latent
    (``SamplerCustom``'s ``denoised_output``; the latent itself where the run ends at noise 0)."""

    latent: dict[str, Any]
    denoised: dict[str, Any]

    @classmethod
    def of_comfy(cls, latent: dict[str, Any], result: Any) -> Sampled:
        """What ``sample_comfy`` returned for ``latent``: ``(latents, denoised)``, or ``None`` when the
        window held no step (the latent comes back unchanged)."""
        import torch

        if result is None:
            unchanged = {**latent, "samples": latent["samples"].clone()}
            return cls(unchanged, unchanged)
        latents, denoised = result
        return cls({**latent, "samples": latents.to("cpu", torch.float32)},
                   {**latent, "samples": denoised.to("cpu", torch.float32)})


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
           latent: dict[str, Any], settings: SampleSettings) -> Sampled:
    """Denoise ``latent`` into new LATENT dicts; the inputs are left as they were."""
    import torch

    from gouache.nodes.latent import vae_scale_factor
    from gouache.nodes.schedulers import make_scheduler, step_kwargs

    loaded = model.checkpoint.loaded
    family = loaded.family
    if family.sampling == "flow":  # SD 3.x, Flux.1: rectified flow on a transformer
        from gouache.nodes.flow_sampling import sample_flow

        for name, cond in (("positive", positive), ("negative", negative)):
            if not cond.plain or cond.controls or cond.inpaint is not None:
                raise InputError(name, f"{family.label} takes one plain prompt so far: combined conditionings, areas, "
                                       "masks, timestep ranges, ControlNets and inpainting conditioning apply to "
                                       "SD 1.x/2.x/SDXL", "unsupported")
        return sample_flow(manager, ctx, model, positive, negative, latent, settings)
    unet = loaded.denoiser
    reads_inpaint = unet.config.in_channels == latent["samples"].shape[1] + INPAINT_CHANNELS
    if unet.config.in_channels != latent["samples"].shape[1] and not reads_inpaint:
        raise InputError("model", f"this UNet reads {unet.config.in_channels} latent channels and the latent has "
                                  f"{latent['samples'].shape[1]}: use a latent of the model's family", "wrong_family")
    device = manager.on_device([unet])
    dtype = unet.dtype
    init = latent["samples"].to(device=device, dtype=torch.float32)
    batch = init.shape[0]
    comfy = settings.convention == "comfyui"
    mask = latent.get("noise_mask")
    if mask is not None:
        mask = torch.nn.functional.interpolate(mask.to(device=device, dtype=torch.float32).reshape(
            -1, 1, *mask.shape[-2:]), size=init.shape[-2:], mode="bilinear").expand_as(init[:, :1])

    # ComfyUI guides at any cfg but 1 (below 1 too); the pipelines only above 1.
    guided = (not math.isclose(settings.cfg, 1.0) if comfy else settings.cfg > 1.0) \
        and unet.config.time_cond_proj_dim is None
    scale = vae_scale_factor(loaded.vae) if loaded.vae is not None else family.latent.downscale
    height, width = init.shape[-2] * scale, init.shape[-1] * scale
    named = [("negative", negative), ("positive", positive)] if guided else [("positive", positive)]
    # Entries with areas, masks or timestep ranges predict one by one (regions); one plain prompt each
    # side runs in the pipelines' own batch, negative first.
    regional = not all(cond.plain for _, cond in named)
    controlled = any(entry.controls for _, cond in named for entry in cond.entries())
    if controlled:
        _check_controls(named, regional, unet)
    # A 9-channel inpainting UNet reads [latents, mask, masked picture's latent] (diffusers' order).
    inpaint = _inpaint_inputs(named, regional, init, device) if reads_inpaint else None
    train_steps = int(loaded.scheduler_config.get("num_train_timesteps", 1000))
    if regional:
        from gouache.nodes.regions import combine, matching_areas, resolve

        cell = family.latent.downscale  # pixels per latent cell as EmptyLatent counts them
        regions = {name: resolve(cond, name, tuple(init.shape), cell, device) for name, cond in named}
        if guided:
            extra_negative = matching_areas(regions["positive"], regions["negative"])
            regions["positive"] += matching_areas(regions["negative"], regions["positive"])
            regions["negative"] += extra_negative
        entry_inputs: dict[tuple[int, int, int], Any] = {}

        def predict(name: str, entry: Conditioning, crop: Any, cells: tuple[int, int], t: Any) -> Any:
            """The UNet's prediction for one entry on its crop of the (scaled) latents."""
            key = (id(entry), *cells)
            if key not in entry_inputs:
                entry_inputs[key] = _unet_inputs(family, [(name, entry)], batch, cells[0] * scale, cells[1] * scale,
                                                 device, dtype)
            hidden, entry_added = entry_inputs[key]
            return unet(crop.to(dtype), t, encoder_hidden_states=hidden, timestep_cond=None,
                        added_cond_kwargs=entry_added, return_dict=False)[0].float()
    else:
        embeds, added = _unet_inputs(family, named, batch, height, width, device, dtype)
    control_images: dict = {}

    def guided_prediction(model_input: Any, t: Any, step: int, count: int, when: float | None = None) -> Any:
        """The UNet's guided prediction (epsilon or v) at timestep ``t`` for latents already scaled to its
        input; ``step`` of ``count`` decides which ControlNets act, ``when`` (the timestep itself unless given)
        which timestep ranges of the conditioning. Both conventions call the model here."""
        if regional:
            moment = float(t) if when is None else when
            prediction = torch.cat([combine(regions[name], model_input, moment, train_steps,
                                            lambda entry, crop, cells, name=name: predict(name, entry, crop, cells, t))
                                    for name, _ in named])
        else:
            batched = torch.cat([model_input] * 2) if guided else model_input
            control = {}
            if controlled:
                control = _control_kwargs(named, batched.to(dtype), t, embeds, added, step, count, height, width,
                                          control_images)
            if inpaint is not None:
                batched = torch.cat([batched, inpaint], dim=1)
            prediction = unet(batched.to(dtype), t, encoder_hidden_states=embeds, timestep_cond=None,
                              added_cond_kwargs=added, return_dict=False, **control)[0].float()
        if guided:
            uncond, cond = prediction.chunk(2)
            prediction = uncond + settings.cfg * (cond - uncond)
        return prediction

    step_work = init.shape[0] * (2 if guided else 1) * init.shape[-2] * init.shape[-1] * \
        int(unet.config.block_out_channels[0])

    def running() -> Any:
        return _running(manager, family, unet, model, ctx, step_work if device.type == "cpu" else None)

    if comfy:
        from gouache.nodes.comfy_sampling import sample_comfy
        from gouache.nodes.comfy_sigmas import DiscreteSigmas

        with running():
            result = sample_comfy(DiscreteSigmas.from_config(loaded.scheduler_config), guided_prediction, init, mask,
                                  latent.get("batch_index"), settings, _reporter(ctx, loaded.latent_preview))
        return Sampled.of_comfy(latent, result)

    generator = torch.Generator("cpu").manual_seed(settings.seed)
    noise = torch.randn(tuple(init.shape), generator=generator).to(device)
    if not settings.add_noise:
        noise = torch.zeros_like(noise)
    scheduler = make_scheduler(loaded.scheduler_config, settings.sampler_name, settings.scheduler, settings.seed)
    scheduler.set_timesteps(settings.steps, device=device)
    first, last = settings.window()
    start, stop = first * scheduler.order, min(last * scheduler.order, len(scheduler.timesteps))
    timesteps = scheduler.timesteps[start:stop]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    if len(timesteps) == 0:
        unchanged = {**latent, "samples": latent["samples"].clone()}
        return Sampled(unchanged, unchanged)
    if not settings.add_noise:
        latents = init * _vp_scale(scheduler, start)  # handed over in the k-diffusion scaling
    elif start > 0:
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
    else:
        latents = noise * scheduler.init_noise_sigma + init
    leftover = settings.leftover_noise and last < settings.steps
    finish_early = not settings.leftover_noise and last < settings.steps

    extra = step_kwargs(scheduler, generator)
    total = len(timesteps)
    report = _reporter(ctx, loaded.latent_preview)
    with running():
        for index, t in enumerate(timesteps):
            prediction = guided_prediction(scheduler.scale_model_input(latents, t), t, start + index,
                                           len(scheduler.timesteps))
            if index == total - 1:  # the last step's estimate of x0, which force_full_denoise returns
                output = scheduler.step(prediction, t, latents, **extra)
                denoised = _denoised(scheduler, output, prediction, latents, start + index)
                latents = denoised if finish_early else output.prev_sample
            else:
                latents = scheduler.step(prediction, t, latents, **extra, return_dict=False)[0]
            if mask is not None:
                keep = init
                if index < total - 1:
                    keep = scheduler.add_noise(init, noise, timesteps[index + 1:index + 2])
                latents = (1 - mask) * keep + mask * latents
                if index == total - 1:
                    denoised = (1 - mask) * init + mask * denoised
            report(index, total, latents)
    if leftover:
        latents = latents / _vp_scale(scheduler, stop)
    return Sampled({**latent, "samples": latents.to("cpu", torch.float32)},
                   {**latent, "samples": denoised.to("cpu", torch.float32)})


@contextlib.contextmanager
def _running(manager: Any, family: Any, unet: Any, model: ModelHandle, ctx: Any,
             step_work: int | None) -> Iterator[None]:
    """While the loop runs: no autograd, the model's LoRA patches applied, interruption checked at every layer,
    and on the CPU (``step_work`` given) one thread for small steps (``devices.threads_for``)."""
    import torch

    from gouache.nodes.devices import threads_for
    from gouache.nodes.interrupt import interruptible
    from gouache.nodes.lora import patched

    with torch.no_grad(), patched(manager, family.denoiser_slot, unet, model.patches), \
            interruptible([unet], ctx.check_interrupt), threads_for(step_work):
        yield


def _reporter(ctx: Any, latent_format: Any) -> Callable[[int, int, Any], None]:
    """``report(index, total, latents)`` after each step: progress, and a preview about every fourth step
    (``latent_format``: the checkpoint's preview factors, ``LoadedCheckpoint.latent_preview``)."""
    from gouache.nodes.preview import latent_preview_jpeg

    def report(index: int, total: int, latents: Any) -> None:
        ctx.progress(index + 1, total)
        every = max(1, min(PREVIEW_EVERY, total // 5 or 1))
        if ctx.wants_previews and ((index + 1) % every == 0 or index + 1 == total):
            ctx.preview(latent_preview_jpeg(latents, latent_format))

    return report


def _inpaint_inputs(named: list[tuple[str, Conditioning]], regional: bool, init: Any, device: Any) -> Any:
    """What a 9-channel inpainting UNet reads beside the latents, for the CFG batch (each side's own, negative
    first): [B * sides, 5, h, w], the mask then the masked picture's latent. Every side must carry it."""
    import torch

    parts = []
    for name, cond in named:
        if cond.inpaint is None:
            raise InputError("model", f"this is an inpainting model: its UNet reads {INPAINT_CHANNELS + init.shape[1]} "
                                      "latent channels (the latent, the mask and the masked picture's latent), and "
                                      f"the {name} conditioning does not carry the mask and picture; pass both "
                                      "conditionings through InpaintModelConditioning, or use a model made for "
                                      "text-to-image", "needs_inpainting_conditioning")
        if regional:
            raise InputError(name, "inpainting models take one plain prompt per side so far: not with combined "
                                   "conditionings, areas, masks or timestep ranges", "unsupported")
        extra = cond.inpaint
        if tuple(extra.shape[-2:]) != tuple(init.shape[-2:]):
            raise InputError("latent", f"is {init.shape[-1]}x{init.shape[-2]} latent cells and the {name} conditioning's "
                                       f"inpainting picture {extra.shape[-1]}x{extra.shape[-2]}: sample a latent of "
                                       "the picture's size", "size_mismatch")
        if extra.shape[0] not in (1, init.shape[0]):
            raise InputError(name, f"carries {extra.shape[0]} inpainting pictures for a batch of {init.shape[0]}; "
                                   "give one or as many", "batch_mismatch")
        parts.append(extra.expand(init.shape[0], -1, -1, -1))
    return torch.cat(parts).to(device=device, dtype=torch.float32)


def _check_controls(named: list[tuple[str, Conditioning]], regional: bool, unet: Any) -> None:
    """ControlNets apply to one plain prompt per side, of the UNet's family."""
    for name, cond in named:
        if regional and any(entry.controls for entry in cond.entries()):
            raise InputError(name, "ControlNets apply to one plain prompt so far: not with combined conditionings, "
                                   "areas, masks or timestep ranges", "unsupported")
        for control in cond.controls:
            if control.net.cross_attention_dim != unet.config.cross_attention_dim:
                raise InputError(name, f"its ControlNet reads {control.net.cross_attention_dim}-wide text embeddings "
                                       f"and the model {unet.config.cross_attention_dim}-wide: load a ControlNet of "
                                       "the model's family", "wrong_family")


def _control_kwargs(named: list[tuple[str, Conditioning]], sample: Any, t: Any, hidden: Any, added: Any,
                    step: int, count: int, height: int, width: int, images: dict) -> dict[str, Any]:
    """The UNet's ControlNet residual arguments for the CFG batch (each side's own controls); ``{}``: none act."""
    import torch

    from gouache.nodes.controlnet import residuals

    sides = [cond.controls for _, cond in named]
    if all(controls == sides[0] for controls in sides):  # the same nets on every side: one batched run
        found = residuals(sides[0], sample, t, hidden, added, step, count, height, width, images)
    else:
        parts = len(named)
        samples, hiddens = sample.chunk(parts), hidden.chunk(parts)
        addeds = [None] * parts if added is None else [
            {key: value.chunk(parts)[i] for key, value in added.items()} for i in range(parts)]
        each = [residuals(controls, samples[i], t, hiddens[i], addeds[i], step, count, height, width, images)
                for i, controls in enumerate(sides)]
        known = next((r for r in each if r is not None), None)
        if known is None:
            return {}
        each = [r if r is not None else ([torch.zeros_like(d) for d in known[0]], torch.zeros_like(known[1]))
                for r in each]
        found = ([torch.cat(blocks) for blocks in zip(*(r[0] for r in each))], torch.cat([r[1] for r in each]))
    if found is None:
        return {}
    return {"down_block_additional_residuals": found[0], "mid_block_additional_residual": found[1]}


def _unet_inputs(family: Any, named: list[tuple[str, Conditioning]], batch: int, height: int, width: int,
                 device: Any, dtype: Any) -> tuple[Any, Any]:
    """The UNet's text inputs for single entries stacked in order (each repeated ``batch`` times): the
    hidden states and, for SDXL, the pooled embeddings and size ids for an image of ``height`` x ``width`` px."""
    import torch

    embeds = [cond.embeds for _, cond in named]
    if len(embeds) == 2:
        embeds = list(_match_windows(*embeds))
    hidden = torch.cat([tensor.repeat(batch, 1, 1) for tensor in embeds]).to(device=device, dtype=dtype)
    if not family.size_conditioning:
        return hidden, None
    for name, cond in named:
        if cond.pooled is None:
            raise InputError(name, f"{family.label} needs conditioning from a {family.label} CLIP "
                                   "(this one has no pooled embedding)", "wrong_family")
    ids = torch.cat([torch.tensor([_time_ids(cond, height, width)], dtype=dtype).repeat(batch, 1) for _, cond in named])
    pooled = torch.cat([cond.pooled.repeat(batch, 1) for _, cond in named])
    return hidden, {"text_embeds": pooled.to(device=device, dtype=dtype), "time_ids": ids.to(device)}


def _vp_scale(scheduler: Any, index: int) -> float:
    """``sqrt(alpha_bar)`` at position ``index`` of the schedule for samplers that keep latents
    variance-preserving (their ``init_noise_sigma`` is 1), 1 for the k-diffusion ones (Euler family)."""
    if float(scheduler.init_noise_sigma) != 1.0:
        return 1.0
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and index < len(sigmas):
        return 1.0 / math.sqrt(float(sigmas[index]) ** 2 + 1.0)
    timestep = int(scheduler.timesteps[min(index, len(scheduler.timesteps) - 1)])
    return float(scheduler.alphas_cumprod[timestep]) ** 0.5


def _denoised(scheduler: Any, output: Any, prediction: Any, latents: Any, index: int) -> Any:
    """The step's estimate of the clean latent: the scheduler's own where its output carries one, else
    from the prediction for a variance-preserving sampler (DPM++, DEIS, UniPC keep none)."""
    for name in ("pred_original_sample", "denoised"):
        estimate = getattr(output, name, None)
        if estimate is not None:
            return estimate
    alpha = _vp_scale(scheduler, index)
    sigma = math.sqrt(max(1.0 - alpha * alpha, 0.0))
    if scheduler.config.prediction_type == "v_prediction":
        return alpha * latents - sigma * prediction
    if scheduler.config.prediction_type == "sample":
        return prediction
    return (latents - sigma * prediction) / alpha
