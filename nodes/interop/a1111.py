"""A1111 (and Forge, and gouache's own) ``parameters`` PNG chunks opened as a ``gouache/1`` workflow."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from gouache.engine import PngChunks, Problem, WorkflowImporter
from gouache.nodes.interop.comfy_nodes import SAMPLERS, SCHEDULERS

SAMPLER_NAMES = {
    "euler": "euler", "euler a": "euler_ancestral", "heun": "heun", "lms": "lms", "dpm2": "dpm_2",
    "dpm2 a": "dpm_2_ancestral", "dpm++ 2m": "dpmpp_2m", "dpm++ sde": "dpmpp_sde", "dpm++ 2m sde": "dpmpp_2m_sde",
    "dpm++ 2m sde gpu": "dpmpp_2m_sde", "ddim": "ddim", "ddpm": "ddpm", "unipc": "unipc", "lcm": "lcm", "deis": "deis",
    **{name: ours for name, ours in SAMPLERS.items()}, **{ours: ours for ours in SAMPLERS.values()},
}
"""A1111's sampler labels (lower case), ComfyUI's and our own names -> ours."""

SCHEDULE_TYPES = {"automatic": "normal", "karras": "karras", "exponential": "exponential",
                  "sgm uniform": "sgm_uniform", "beta": "beta", **SCHEDULERS}
"""A1111's "Schedule type" labels (lower case) and our own names -> ours."""

LORA_TAG = re.compile(r"<lora:([^:>]+):?([-0-9.]*)[^>]*>")
FIELD = re.compile(r'\s*([\w \-/]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Prompt, negative prompt and the settings line's fields of an A1111 ``parameters`` text."""
    lines = text.strip().splitlines()
    settings_at = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Steps:")), len(lines))
    body, settings = lines[:settings_at], " ".join(lines[settings_at:])
    positive, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else positive).append(line)
    fields = {key.strip(): value.strip().strip('"') for key, value in FIELD.findall(settings) if key.strip()}
    return "\n".join(positive).strip(), "\n".join(negative).strip(), fields


def _number(fields: dict[str, str], key: str, kind: type, default: Any, problems: list[Problem]) -> Any:
    if key not in fields:
        return default
    try:
        return kind(float(fields[key])) if kind is int else kind(fields[key])
    except ValueError:
        problems.append(Problem(None, None, "unreadable_value", f"A1111 parameters: {key} {fields[key]!r} is not a number"))
        return default


def _sampler(fields: dict[str, str], problems: list[Problem]) -> tuple[str | None, str | None]:
    label = fields.get("Sampler", "euler").strip()
    schedule = fields.get("Schedule type")
    lowered = label.lower()
    for suffix in (" karras", " exponential", " sgm uniform"):  # A1111 before 1.9 named the schedule in the sampler
        if lowered.endswith(suffix) and lowered not in SAMPLER_NAMES:
            lowered, schedule = lowered[: -len(suffix)], schedule or suffix.strip()
    sampler = SAMPLER_NAMES.get(lowered)
    if sampler is None:
        problems.append(Problem("sampler", "sampler_name", "unmapped_value",
                                f"A1111 sampler {label!r} has no equivalent in gouache; it has {sorted(set(SAMPLERS.values()))}"))
    scheduler = SCHEDULE_TYPES.get((schedule or "automatic").lower())
    if scheduler is None:
        problems.append(Problem("sampler", "scheduler", "unmapped_value",
                                f"A1111 schedule type {schedule!r} has no equivalent in gouache; "
                                f"it has {sorted(set(SCHEDULERS.values()))}"))
    return sampler, scheduler


def _link(node: str, output: str) -> dict[str, str]:
    return {"node": node, "output": output}


def convert_parameters(text: str) -> tuple[dict[str, Any], list[Problem]]:
    """The settings as a workflow: checkpoint, LoRAs, CLIP skip, prompts, sampler, hires pass, save."""
    problems: list[Problem] = []
    positive, negative, fields = parse_parameters(text)
    loras = LORA_TAG.findall(positive)
    positive = re.sub(r"\s+,", ",", LORA_TAG.sub("", positive)).strip()
    model = fields.get("Model") or "gouache-tiny"
    if PurePath(model).stem == "gouache-tiny":
        model = "gouache-tiny"
    elif not PurePath(model).suffix:  # A1111 writes the file's stem; most checkpoints are .safetensors
        model = f"{model}.safetensors"
    width, height = 512, 512
    if "Size" in fields:
        try:
            width, height = (int(part) for part in fields["Size"].lower().split("x"))
        except ValueError:
            problems.append(Problem("latent", "width", "unreadable_value", f"A1111 Size {fields['Size']!r} is not WxH"))
    sampler_name, scheduler = _sampler(fields, problems)
    nodes: dict[str, Any] = {"checkpoint": {"type": "CheckpointLoader", "inputs": {"name": model}}}
    model_out, clip_out = _link("checkpoint", "model"), _link("checkpoint", "clip")
    for index, (name, weight) in enumerate(loras, 1):
        strength = float(weight) if weight else 1.0
        nodes[f"lora{index}"] = {"type": "LoraLoader", "inputs": {
            "model": model_out, "clip": clip_out, "name": name if name.endswith(".safetensors") else f"{name}.safetensors",
            "strength_model": strength, "strength_clip": strength}}
        model_out, clip_out = _link(f"lora{index}", "model"), _link(f"lora{index}", "clip")
    clip_skip = _number(fields, "Clip skip", int, 1, problems)
    if clip_skip > 1:
        nodes["clip_skip"] = {"type": "ClipSetLastLayer", "inputs": {"clip": clip_out, "stop_at_layer": -clip_skip}}
        clip_out = _link("clip_skip", "clip")
    nodes["positive"] = {"type": "TextEncode", "inputs": {"clip": clip_out, "text": positive}}
    nodes["negative"] = {"type": "TextEncode", "inputs": {"clip": clip_out, "text": negative}}
    denoise = _number(fields, "Denoising strength", float, 1.0, problems)
    hires = "Hires upscale" in fields or "Hires resize" in fields
    settings = {"seed": _number(fields, "Seed", int, 0, problems), "steps": _number(fields, "Steps", int, 20, problems),
                "cfg": _number(fields, "CFG scale", float, 7.0, problems)}
    if sampler_name:
        settings["sampler_name"] = sampler_name
    if scheduler:
        settings["scheduler"] = scheduler
    common = {"model": model_out, "positive": _link("positive", "conditioning"),
              "negative": _link("negative", "conditioning")}
    if denoise < 1.0 and not hires:  # img2img: the source picture is not in the PNG, the user chooses it
        nodes["source"] = {"type": "LoadImage", "inputs": {}}
        nodes["encode"] = {"type": "VAEEncode", "inputs": {"image": _link("source", "image"),
                                                           "vae": _link("checkpoint", "vae")}}
        latent = _link("encode", "latent")
    else:
        nodes["latent"] = {"type": "EmptyLatent", "inputs": {"width": width, "height": height, "batch_size": 1}}
        latent = _link("latent", "latent")
    nodes["sampler"] = {"type": "Sampler", "inputs": {**common, "latent": latent, **settings,
                                                      "denoise": 1.0 if hires else denoise}}
    result = _link("sampler", "latent")
    if hires:
        scale = _number(fields, "Hires upscale", float, 2.0, problems)
        upscaler = fields.get("Hires upscaler", "Latent")
        inputs: dict[str, Any] = {"latent": result, "scale_by": scale, "width": 0, "height": 0,
                                  "method": "bicubic" if "bicubic" in upscaler.lower() else "nearest-exact"}
        if "Hires resize" in fields:
            inputs["width"], inputs["height"] = (int(part) for part in fields["Hires resize"].lower().split("x"))
        if not upscaler.lower().startswith("latent"):
            problems.append(Problem("hires_upscale", "method", "unmapped_value",
                                    f"A1111 hires upscaler {upscaler!r} is a model gouache does not name; the workflow "
                                    "upscales the latent instead: put an UpscaleModelLoader/UpscaleWithModel between a "
                                    "VAEDecode and a VAEEncode for the same effect"))
        nodes["hires_upscale"] = {"type": "LatentUpscale", "inputs": inputs}
        nodes["hires_sampler"] = {"type": "Sampler", "inputs": {
            **common, "latent": _link("hires_upscale", "latent"), **settings,
            "steps": _number(fields, "Hires steps", int, 0, problems) or settings["steps"], "denoise": denoise}}
        result = _link("hires_sampler", "latent")
    nodes["decode"] = {"type": "VAEDecode", "inputs": {"latent": result, "vae": _link("checkpoint", "vae")}}
    nodes["save"] = {"type": "SaveImage", "inputs": {"images": _link("decode", "image"), "filename_prefix": "a1111"}}
    meta = {"imported_from": "a1111", "title": "A1111 parameters"}
    if "Model hash" in fields:
        meta["model_hash"] = fields["Model hash"]
    unused = sorted(set(fields) - {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model",
                                   "Model hash", "Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler",
                                   "Hires resize", "Clip skip"})
    if unused:
        meta["not_imported"] = {key: fields[key] for key in unused}
    return {"format": "gouache/1", "nodes": nodes, "layout": {}, "groups": [], "meta": meta}, problems


def _text(raw: Any) -> str | None:
    if isinstance(raw, PngChunks):
        return raw.chunks.get("parameters")
    return None


def importers() -> list[WorkflowImporter]:
    """The A1111 importer: a PNG with a ``parameters`` chunk and no workflow of its own."""
    return [WorkflowImporter("a1111", lambda raw: isinstance(_text(raw), str) and "Steps:" in _text(raw),
                             lambda raw: convert_parameters(_text(raw)),
                             "A1111 / Forge generation parameters (PNG 'parameters' chunks)")]
