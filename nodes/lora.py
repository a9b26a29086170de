"""LoRA files (kohya/A1111 and diffusers/peft layouts), and applying them without touching the base.

Design: a MODEL or CLIP handle carries an immutable tuple of ``LoraPatch(key, strength)``. Just
before the UNet or a text encoder runs, ``patched()`` computes each targeted weight's
``W + sum(strength * alpha/rank * up @ down)`` as a *new* tensor and points the parameter at it;
in a ``finally`` it points the parameter back at the very tensor it held before. The original
tensors are never written to, so the cached base model is bit-for-bit unchanged after any run,
even one that failed or was interrupted, and there is no per-forward cost (unlike forward hooks,
which would add two matmuls to every patched layer at every step). The price is one extra copy of
the patched layers while the node runs.

Key layouts understood:

* kohya / A1111: ``lora_unet_<module path with _>.lora_down.weight`` / ``.lora_up.weight`` /
  ``.alpha``; text encoders under ``lora_te_`` (SD 1.x/2.x) or ``lora_te1_`` / ``lora_te2_``
  (SDXL). UNet names may use diffusers' module paths or the original LDM ones
  (``input_blocks_4_1_...``, as kohya's SDXL scripts write).
* diffusers / peft: ``unet.<module path>.lora_A.weight`` / ``.lora_B.weight`` (or
  ``.lora.down.weight`` / ``.lora.up.weight``), text encoders under ``text_encoder.`` and
  ``text_encoder_2.``; no alpha means alpha = rank.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                   "lora_te2_": "text_encoder_2"}
_KOHYA_SUFFIX = re.compile(r"^(?P<name>.+)\.(?P<part>lora_down\.weight|lora_up\.weight|alpha)$")
_DIFFUSERS_SUFFIX = re.compile(
    r"^(?P<name>.+?)\.(?P<part>lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight|"
    r"lora_A\.default\.weight|lora_B\.default\.weight|alpha)$")
_OLD_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora$")


@dataclass
class LoraLayer:
    """One layer's factors: ``delta = alpha / rank * up @ down``."""

    up: Any
    down: Any
    alpha: float | None = None

    @property
    def scale(self) -> float:
        """alpha / rank (1 when the file gives no alpha)."""
        rank = self.down.shape[0]
        return 1.0 if self.alpha is None else float(self.alpha) / rank

    def delta(self, shape: Any) -> Any:
        """The weight update in ``shape`` (linear, 1x1 or kxk convolution), in fp32."""
        up = self.up.float().flatten(1)
        down = self.down.float().flatten(1)
        return (up @ down).reshape(shape) * self.scale


@dataclass
class LoraFile:
    """A parsed LoRA: layers by (component, name as written in the file)."""

    path: Path
    format: str
    layers: dict[tuple[str, str], LoraLayer]
    _resolved: dict[tuple[str, int], dict[str, LoraLayer]] = field(default_factory=dict, repr=False)

    def resolve(self, component: str, module: Any) -> dict[str, LoraLayer]:
        """The file's layers for ``component`` keyed by the module's parameter names (``x.weight``).

        Raises ``ValueError`` naming a few layers that match nothing in ``module``: a LoRA made for
        another model family.
        """
        cache_key = (component, id(module))
        if cache_key in self._resolved:
            return self._resolved[cache_key]
        wanted = {name: layer for (part, name), layer in self.layers.items() if part == component}
        if not wanted:
            self._resolved[cache_key] = {}
            return {}
        names = _module_names(module, component)
        resolved: dict[str, LoraLayer] = {}
        missing: list[str] = []
        for name, layer in wanted.items():
            target = names.get(name) or names.get(name.replace(".", "_"))
            if target is None:
                missing.append(name)
            else:
                resolved[f"{target}.weight"] = layer
        if missing:
            raise ValueError(
                f"{self.path.name}: {len(missing)} of {len(wanted)} {component} layers match nothing in this model "
                f"(first: {', '.join(sorted(missing)[:3])}); the LoRA was made for another model family")
        self._resolved[cache_key] = resolved
        return resolved


def _module_names(module: Any, component: str) -> dict[str, str]:
    """Every way a file may name a weight-bearing submodule of ``module``, mapped to its real path."""
    names: dict[str, str] = {}
    for name, sub in module.named_modules():
        if name and getattr(sub, "weight", None) is not None:
            names[name] = name
            names[name.replace(".", "_")] = name
    if component == "unet":
        names.update(_ldm_unet_names(module))
    return names


def _ldm_unet_names(unet: Any) -> dict[str, str]:
    """Original-layout (LDM/SGM) UNet module names, flattened with ``_``, mapped to diffusers paths."""
    try:
        from gouache.nodes.models.convert import unet_to_original

        original = unet_to_original(unet)
    except (ValueError, KeyError, AttributeError):
        return {}
    by_pointer = {tensor.data_ptr(): key for key, tensor in unet.state_dict().items()}
    names: dict[str, str] = {}
    for key, tensor in original.items():
        source = by_pointer.get(tensor.data_ptr())
        if source is not None and key.endswith(".weight") and source.endswith(".weight"):
            names[key[: -len(".weight")].replace(".", "_")] = source[: -len(".weight")]
    return names


def read_lora(path: Path) -> LoraFile:
    """Read and parse a LoRA file; ``ValueError`` saying what was found when it is not one."""
    from gouache.nodes.folders import lora_format
    from gouache.nodes.models import read_state_dict

    state = read_state_dict(Path(path))
    kind = lora_format(list(state))
    if kind == "kohya":
        layers = _parse(state, _KOHYA_SUFFIX, _kohya_target)
    elif kind == "diffusers":
        layers = _parse(state, _DIFFUSERS_SUFFIX, _diffusers_target)
    else:
        sample = ", ".join(sorted(state)[:3])
        raise ValueError(f"{Path(path).name} is not a LoRA this pack reads (keys like {sample}); expected "
                         "kohya (lora_unet_*.lora_down.weight) or diffusers/peft (unet.*.lora_A.weight) keys")
    return LoraFile(Path(path), kind, layers)


def _kohya_target(name: str) -> tuple[str, str] | None:
    for prefix, component in _KOHYA_PREFIXES.items():
        if name.startswith(prefix):
            return component, name[len(prefix):]
    return None


def _diffusers_target(name: str) -> tuple[str, str]:
    name = _OLD_PROCESSOR.sub(lambda m: "." + ("to_out.0" if m.group(1) == "to_out" else m.group(1)), name)
    for component in ("text_encoder_2", "text_encoder", "unet"):
        if name.startswith(component + "."):
            return component, name[len(component) + 1:]
    return "unet", name  # peft saves a bare UNet's keys without a prefix


def _parse(state: dict[str, Any], pattern: re.Pattern[str], target: Any) -> dict[tuple[str, str], LoraLayer]:
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in state.items():
        match = pattern.match(key)
        if match is None:
            continue
        where = target(match.group("name"))
        if where is None:
            continue
        part = match.group("part")
        role = "alpha" if part == "alpha" else ("up" if ("up" in part or "lora_B" in part) else "down")
        parts.setdefault(where, {})[role] = tensor
    layers: dict[tuple[str, str], LoraLayer] = {}
    for where, found in parts.items():
        if "up" not in found or "down" not in found:
            continue
        alpha = found.get("alpha")
        layers[where] = LoraLayer(found["up"], found["down"], None if alpha is None else float(alpha))
    if not layers:
        raise ValueError("no complete LoRA layer (up and down factors) found in the file")
    return layers


@contextmanager
def patched(manager: Any, component: str, module: Any, patches: tuple[Any, ...]) -> Iterator[None]:
    """Run with ``patches`` applied to ``module`` (the ``component`` of a checkpoint), then restore.

    Restoring points each parameter back at its original tensor object, which was never written.
    """
    active = [p for p in patches if p.strength != 0]
    if not active:
        yield
        return
    import torch

    params = dict(module.named_parameters())
    deltas: dict[str, Any] = {}
    for patch in active:
        lora = manager.lora_by_key(patch.key)
        for param_name, layer in lora.resolve(component, module).items():
            param = params[param_name]
            delta = layer.delta(param.shape).to(param.device) * patch.strength
            deltas[param_name] = deltas[param_name] + delta if param_name in deltas else delta
    originals: dict[str, Any] = {}
    try:
        with torch.no_grad():
            for param_name, delta in deltas.items():
                param = params[param_name]
                originals[param_name] = param.data
                param.data = (param.data.float() + delta).to(param.dtype)
        yield
    finally:
        for param_name, data in originals.items():
            params[param_name].data = data
