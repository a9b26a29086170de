"""Random LoRA-family files for the tiny fixture models, in every layout and layer kind gouache reads.

``write_lora`` names keys as the tools that make real files do: kohya/A1111 (``lora_unet_``,
``lora_te_`` / ``lora_te1_`` / ``lora_te2_``), peft/diffusers (``unet.``, ``text_encoder.``) and ComfyUI
(``diffusion_model.`` + LDM paths, ``text_encoders.clip_l|clip_g.transformer.``), with CLIP paths under
``text_model.`` whatever transformers version built the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pack_support import LORA_TARGETS, file_module_name
from safetensors.torch import save_file

from gouache.nodes.loading import load_checkpoint
from gouache.nodes.loading.convert import unet_to_original

TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
"""What kohya trains in a CLIP (its attention and MLP); diffusers reads kohya CLIP layers only with ``out_proj``."""
SUFFIXES = {
    "kohya": ("lora_up.weight", "lora_down.weight", "dora_scale"),
    "comfyui": ("lora_up.weight", "lora_down.weight", "dora_scale"),
    "peft": ("lora_B.weight", "lora_A.weight", "lora_magnitude_vector"),
}


def ldm_names(unet: torch.nn.Module) -> dict[str, str]:
    """diffusers module path -> original (LDM) module path, for modules whose weight moves unchanged."""
    by_pointer = {tensor.data_ptr(): key for key, tensor in unet.state_dict().items()}
    names = {}
    for key, tensor in unet_to_original(unet).items():
        source = by_pointer.get(tensor.data_ptr())
        if source and key.endswith(".weight") and source.endswith(".weight"):
            names[source[: -len(".weight")]] = key[: -len(".weight")]
    return names


def _prefix(layout: str, component: str, sdxl: bool) -> str:
    if layout == "kohya":
        return {"unet": "lora_unet_", "text_encoder": "lora_te1_" if sdxl else "lora_te_",
                "text_encoder_2": "lora_te2_"}[component]
    if layout == "comfyui":
        return {"unet": "diffusion_model.", "text_encoder": "text_encoders.clip_l.transformer.",
                "text_encoder_2": "text_encoders.clip_g.transformer."}[component]
    return f"{component}."


def _factor_pair(out: int) -> tuple[int, int]:
    """``out = a * c`` with ``a`` the smallest factor above 1 (LoKr's split of a dimension)."""
    a = next((d for d in range(2, out) if out % d == 0), 1)
    return a, out // a


def layer_tensors(kind: str, weight: torch.Tensor, generator: torch.Generator, *, rank: int, scale: float,
                  suffixes: tuple[str, str, str], dora: bool = False) -> dict[str, torch.Tensor]:
    """One layer's tensors (key suffix -> tensor) of ``kind`` for a parameter like ``weight``."""

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    out, inp, *kernel = weight.shape
    up_key, down_key, magnitude_key = suffixes
    if kind == "lora":
        tensors = {down_key: randn(rank, inp, *kernel), up_key: randn(out, rank, *[1] * len(kernel))}
        flat = tensors[up_key].flatten(1) @ tensors[down_key].flatten(1)
    elif kind == "loha":
        tensors = {"hada_w1_a": randn(out, rank), "hada_w1_b": randn(rank, inp * weight[0, 0].numel()),
                   "hada_w2_a": randn(out, rank), "hada_w2_b": randn(rank, inp * weight[0, 0].numel())}
        flat = None
    elif kind == "lokr":
        (a, c), (b, d) = _factor_pair(out), _factor_pair(inp)
        tensors = {"lokr_w1": randn(a, b), "lokr_w2_a": randn(c, rank), "lokr_w2_b": randn(rank, d, *kernel)}
        flat = None
    elif kind == "diff":
        return {"diff": randn(*weight.shape)}
    else:
        raise ValueError(kind)
    if not suffixes[0].startswith("lora_B"):
        tensors["alpha"] = torch.tensor(rank / 2)
    if dora:
        assert flat is not None, "the fixtures put DoRA on LoRA factors"
        patched = weight.float().flatten(1) + flat * (0.5 if "alpha" in tensors else 1.0)
        magnitude = patched.norm(dim=1) * (1 + 0.2 * torch.rand(out, generator=generator))
        tensors[magnitude_key] = magnitude if magnitude_key == "lora_magnitude_vector" else magnitude.reshape(
            out, *[1] * (weight.dim() - 1))
    return tensors


def write_lora(folder: Path, target: Path, *, layout: str = "kohya", kind: str = "lora", seed: int,
               rank: int = 2, scale: float = 0.3, parts: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2"),
               convs: bool = False, dora: bool = False, kinds_by_module: dict[str, str] | None = None) -> Path:
    """A random LoRA-family file for the model in ``folder``.

    ``kind`` is ``lora``, ``loha``, ``lokr`` or ``diff`` for every layer; ``kinds_by_module`` overrides it
    per module path suffix (a file mixing kinds). ``convs`` adds the UNet's 3x3 convolutions (LoCon).
    """
    loaded = load_checkpoint(folder)
    modules = loaded.components()
    sdxl = modules.get("text_encoder_2") is not None
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for component in parts:
        module = modules.get(component)
        if module is None:
            continue
        ldm = ldm_names(module) if component == "unet" and layout == "comfyui" else {}
        for name, sub in module.named_modules():
            targets = LORA_TARGETS if component == "unet" else TEXT_TARGETS
            linear = isinstance(sub, torch.nn.Linear) and name.endswith(targets)
            conv = convs and isinstance(sub, torch.nn.Conv2d) and sub.kernel_size == (3, 3) and "resnets" in name
            if not (linear or conv):
                continue
            layer_kind = next((k for suffix, k in (kinds_by_module or {}).items() if name.endswith(suffix)), kind)
            path = ldm.get(name, name) if layout == "comfyui" and component == "unet" else file_module_name(
                component, name)
            path = path.replace(".", "_") if layout == "kohya" else path
            for suffix, tensor in layer_tensors(layer_kind, sub.weight, generator, rank=rank, scale=scale,
                                                suffixes=SUFFIXES[layout], dora=dora).items():
                tensors[f"{_prefix(layout, component, sdxl)}{path}.{suffix}"] = tensor.contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target))
    return target
