"""LoRA-family files, read whole and applied without touching the base model.

Design: a MODEL or CLIP handle carries an immutable tuple of ``LoraPatch(key, strength)``. Just
before the UNet or a text encoder runs, ``patched()`` computes each targeted parameter's patched
value as a *new* tensor (every patch in order, ``gouache.nodes.lora_adapters`` has the formulas)
and points the parameter at it; in a ``finally`` it points the parameter back at the very tensor it
held before. The original tensors are never written to, so the cached base model is bit-for-bit
unchanged after any run, even one that failed or was interrupted, and there is no per-forward cost
(unlike forward hooks, which would add two matmuls to every patched layer at every step). The
price is one extra copy of the patched layers while the node runs.

Nothing is skipped silently: every tensor of a file must belong to a complete layer of a kind this
module applies, and every layer must land on a parameter of the model with a matching shape;
otherwise reading or resolving raises ``ValueError`` naming a few of the culprits.

Key schemes (``docs/models.md`` lists them with examples):

* kohya / A1111 / LyCORIS: ``lora_unet_<path with _>.<part>``, text encoders under ``lora_te_``
  (SD 1.x/2.x), ``lora_te1_`` / ``lora_te2_`` (SDXL); UNet paths in diffusers' or the original
  (LDM) naming; SimpleTuner's ``lycoris_<path>`` for the UNet.
* peft / diffusers: ``unet.<path>.<part>``, ``text_encoder.``, ``text_encoder_2.``, ``transformer.``
  (a bare path means the UNet), including the old attention-processor names.
* ComfyUI: ``diffusion_model.<LDM path>.<part>`` and ``text_encoders.clip_l|clip_h|clip_g.transformer.<path>``.

Parts: LoRA (``lora_up/lora_down``, ``lora_A/lora_B``, ``lora.up/lora.down``, ``lora_mid``), LoHa
(``hada_*``), LoKr (``lokr_*``), DoRA magnitudes (``dora_scale``, ``lora_magnitude_vector``),
``alpha``, full differences (``diff``, ``diff_b``). Text-encoder paths match with or without
``text_model.``: transformers 5's ``CLIPTextModel`` dropped that level, files and transformers 4 keep it.

The key parsing here imports no torch: ``gouache models`` describes files from their headers with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

_PREFIXES: tuple[tuple[str, str, str], ...] = (
    # (prefix, component, layout); longer prefixes first where one starts another
    ("lora_unet_", "unet", "kohya"),
    ("lora_te1_", "text_encoder", "kohya"),
    ("lora_te2_", "text_encoder_2", "kohya"),
    ("lora_te_", "text_encoder", "kohya"),
    ("lycoris_", "unet", "kohya"),
    ("diffusion_model.", "unet", "comfyui"),
    # ComfyUI names its CLIPs by model: clip_l (SD 1.x, SDXL's first), clip_h (SD 2.x), clip_g (SDXL's second).
    ("text_encoders.clip_l.transformer.", "text_encoder", "comfyui"),
    ("text_encoders.clip_h.transformer.", "text_encoder", "comfyui"),
    ("text_encoders.clip_g.transformer.", "text_encoder_2", "comfyui"),
    ("unet.", "unet", "peft"),
    ("text_encoder_2.", "text_encoder_2", "peft"),
    ("text_encoder.", "text_encoder", "peft"),
    ("transformer.", "transformer", "peft"),
)
_LORA_PARTS = {
    "lora_up.weight": "up", "lora_down.weight": "down", "lora_mid.weight": "mid",
    "lora_B.weight": "up", "lora_A.weight": "down", "lora_B.default.weight": "up", "lora_A.default.weight": "down",
    "lora.up.weight": "up", "lora.down.weight": "down",
    "lora_linear_layer.up.weight": "up", "lora_linear_layer.down.weight": "down",
}
_PARTS: dict[str, tuple[str, str]] = {
    **{suffix: ("lora", role) for suffix, role in _LORA_PARTS.items()},
    **{f"hada_{role}": ("loha", role.replace("_", "")) for role in ("w1_a", "w1_b", "w2_a", "w2_b", "t1", "t2")},
    **{f"lokr_{role}": ("lokr", role.replace("_", "")) for role in ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b", "t2")},
    "diff": ("diff", "diff"),
    "diff_b": ("diff_b", "diff"),
    "alpha": ("", "alpha"),
    "dora_scale": ("", "magnitude"),
    "lora_magnitude_vector": ("", "magnitude"),
    "lora_magnitude_vector.weight": ("", "magnitude"),
    "lora_magnitude_vector.default.weight": ("", "magnitude"),
}
_SUFFIXES = sorted(_PARTS, key=len, reverse=True)
_UNSUPPORTED = {
    "oft_blocks": "OFT", "oft_diag": "OFT", "boft_blocks": "BOFT", "a1.weight": "GLoRA", "a2.weight": "GLoRA",
    "b1.weight": "GLoRA", "b2.weight": "GLoRA", "w_norm": "LyCORIS norm", "b_norm": "LyCORIS norm",
    "on_input": "(IA)^3", "set_weight": "set-weight", "bias_indices": "sparse bias", "bias_values": "sparse bias",
    "reshape_weight": "reshaped LoRA",
}
_OLD_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)$")
_OLD_CLIP_ATTENTION = re.compile(r"\.self_attn\.to_(q|k|v|out)$")  # diffusers' old text-encoder LoRA names
_FACTORS = ("lora", "loha", "lokr")
_REQUIRED = {"lora": {"up", "down"}, "loha": {"w1a", "w1b", "w2a", "w2b"}}


@dataclass(frozen=True)
class LayerKeys:
    """One layer of a file, from key names alone: where it goes, its kind and its tensors' keys."""

    component: str
    module: str
    """The module's path as the file writes it (dots or underscores, with or without ``text_model.``)."""
    param: str
    kind: str
    """``lora``, ``loha``, ``lokr`` or ``diff``."""
    keys: dict[str, str]
    """Tensor key by role (``up``, ``down``, ``w1a``, ..., ``alpha``, ``magnitude``)."""
    layout: str

    @property
    def dora(self) -> bool:
        """Whether the layer carries a DoRA magnitude."""
        return "magnitude" in self.keys


def _split(key: str) -> tuple[str, str] | None:
    """``(layer name, part suffix)``, or ``None`` when the suffix is not one we know."""
    for suffix in _SUFFIXES:
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], suffix
    for old in ("_lora.up.weight", "_lora.down.weight"):  # diffusers' old attention processors
        if key.endswith(old):
            return key[: -len(old)], old[1:]
    return None


def _target(name: str) -> tuple[str, str, str] | None:
    """``(component, module path, layout)`` for a layer name, ``None`` for a part of no model we patch."""
    for prefix, component, layout in _PREFIXES:
        if name.startswith(prefix):
            module = name[len(prefix):]
            break
    else:
        if name.startswith(("lora_", "text_encoders.")) or "." not in name:
            return None
        component, module, layout = "unet", name, "peft"  # peft saves a bare UNet's keys without a prefix
    module = _OLD_PROCESSOR.sub(lambda m: "." + ("to_out.0" if m.group(1) == "to_out" else m.group(1)), module)
    if component in TEXT_ENCODERS:
        module = _OLD_CLIP_ATTENTION.sub(lambda m: f".self_attn.{m.group(1)}_proj", module)
    return component, module, layout


def _fail(what: str, names: Iterable[str], advice: str) -> str:
    names = sorted(names)
    return f"{len(names)} {what} (first: {', '.join(names[:3])}); {advice}"


def parse_keys(keys: Iterable[str]) -> dict[tuple[str, str, str], LayerKeys]:
    """Group a LoRA file's tensor keys into layers by ``(component, module, param)``.

    Raises ``ValueError`` saying which tensors land nowhere (unknown or unsupported parts,
    incomplete layers, layers for a model part gouache does not patch) and why.
    """
    groups: dict[str, dict[str, tuple[str, str]]] = {}
    unknown: list[str] = []
    unsupported: dict[str, list[str]] = {}
    for key in keys:
        split = _split(key)
        if split is None:
            kind = next((kind for suffix, kind in _UNSUPPORTED.items() if key.endswith("." + suffix)), None)
            (unsupported.setdefault(kind, []) if kind else unknown).append(key)
            continue
        name, suffix = split
        groups.setdefault(name, {})[suffix] = (*_PARTS[suffix], key)  # type: ignore[assignment]
    problems = []
    for kind, found in sorted(unsupported.items()):
        problems.append(_fail(f"{kind} tensors", found, f"gouache does not apply {kind} layers"))
    if unknown:
        problems.append(_fail("tensors of no LoRA layer kind gouache knows", unknown,
                              "expected lora_up/lora_down, lora_A/lora_B, hada_*, lokr_*, alpha, dora_scale or diff"))
    layers: dict[tuple[str, str, str], LayerKeys] = {}
    incomplete: list[str] = []
    mixed: list[str] = []
    elsewhere: list[str] = []
    for name, parts in groups.items():
        where = _target(name)
        if where is None:
            elsewhere.append(name)
            continue
        component, module, layout = where
        kinds = {kind for kind, _, _ in parts.values() if kind}
        extras = {role: key for kind, role, key in parts.values() if not kind}
        factors = kinds & set(_FACTORS)
        if len(factors) > 1 or (factors and "diff" in kinds):  # a bias difference may sit beside factors
            mixed.append(name)
            continue
        for kind in kinds:
            roles = {role: key for k, role, key in parts.values() if k == kind}
            param = "bias" if kind == "diff_b" else "weight"
            if kind in _FACTORS:
                roles.update(extras)
            if not _complete(kind, roles) or (extras and not factors):
                incomplete.append(name)
                continue
            if (component, module, param) in layers:
                mixed.append(name)
                continue
            layers[(component, module, param)] = LayerKeys(component, module, param,
                                                            "diff" if kind == "diff_b" else kind, roles, layout)
        if not kinds:
            incomplete.append(name)
    if incomplete:
        problems.append(_fail("incomplete layers", incomplete,
                              "a layer needs all its factors (up and down; the four hada_w*; lokr_w1 and lokr_w2 "
                              "or their _a/_b pairs); alpha or a DoRA scale alone patch nothing"))
    if mixed:
        problems.append(_fail("layers given twice or in two kinds at once", mixed, "the file is inconsistent"))
    if elsewhere:
        problems.append(_fail("layers for a model part gouache does not patch", elsewhere,
                              "gouache patches the UNet (lora_unet_, unet., diffusion_model.) and CLIP text encoders "
                              "(lora_te_, lora_te1_, lora_te2_, text_encoder., text_encoders.clip_l/clip_h/clip_g.)"))
    if problems:
        raise ValueError("; ".join(problems))
    if not layers:
        raise ValueError("no LoRA layer found in the file")
    return layers


def _complete(kind: str, roles: dict[str, str]) -> bool:
    if kind in _REQUIRED:
        if not _REQUIRED[kind] <= roles.keys():
            return False
        return kind != "loha" or ("t1" in roles) == ("t2" in roles)
    if kind == "lokr":
        whole_or_pair = all(f"w{i}" in roles or {f"w{i}a", f"w{i}b"} <= roles.keys() for i in (1, 2))
        return whole_or_pair and ("t2" not in roles or {"w2a", "w2b"} <= roles.keys())
    return True


# -- what gouache models says about a file (headers only) ---------------------------------------


def input_width(layer: LayerKeys, shapes: dict[str, list[int]]) -> int | None:
    """The input features of the linear layer ``layer`` patches, from its tensors' shapes alone."""
    keys = layer.keys
    if layer.kind == "lokr":
        w1 = shapes[keys["w1"]][1] if "w1" in keys else shapes[keys["w1b"]][1]
        w2 = shapes[keys["w2"]][1] if "w2" in keys else shapes[keys["w2b"]][1]
        return w1 * w2
    role = {"lora": "down", "loha": "w1b", "diff": "diff"}[layer.kind]
    shape = shapes[keys[role]]
    return shape[1] if len(shape) == 2 else None


def describe_keys(header: dict[str, Any]) -> dict[str, Any]:
    """Layout, layer kinds and patched parts of a LoRA from its safetensors header (names and shapes).

    ``format`` is one word for people: ``lycoris-loha`` / ``lycoris-lokr`` when such layers are in
    the file, ``dora`` for DoRA, otherwise the key layout (``kohya``, ``peft``, ``comfyui``).
    Raises ``ValueError`` as :func:`parse_keys` does.
    """
    shapes = {key: value.get("shape", []) for key, value in header.items() if key != "__metadata__"}
    layers = parse_keys(shapes).values()
    kinds = set()
    for layer in layers:
        kind = layer.kind
        if kind == "lora" and ("mid" in layer.keys or any(size > 1 for size in shapes[layer.keys["down"]][2:])):
            kind = "locon"
        kinds.add(kind)
        if layer.dora:
            kinds.add("dora")
    layouts = sorted({layer.layout for layer in layers})
    lycoris = [f"lycoris-{kind}" for kind in ("loha", "lokr") if kind in kinds]
    fmt = "+".join(lycoris) if lycoris else "dora" if "dora" in kinds else "+".join(layouts)
    parts = [c for c in COMPONENTS if any(layer.component == c for layer in layers)]
    return {"format": fmt, "layout": "+".join(layouts), "kinds": sorted(kinds), "parts": parts,
            "layers": len(layers)}


# -- reading -----------------------------------------------------------------------------------


@dataclass
class LoraFile:
    """A parsed LoRA: adapters by ``(component, module path as written, param)``."""

    path: Path
    format: str
    layers: dict[tuple[str, str, str], Any]
    _resolved: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def components(self) -> set[str]:
        """The model parts the file patches (``unet``, ``text_encoder``, ...)."""
        return {component for component, _, _ in self.layers}

    @property
    def nbytes(self) -> int:
        """The bytes its tensors take."""
        return sum(t.numel() * t.element_size() for layer in self.layers.values() for t in layer.tensors())

    def resolve(self, component: str, module: Any) -> dict[str, Any]:
        """The file's adapters for ``component`` keyed by the module's parameter names (``x.weight``).

        Raises ``ValueError`` naming a few layers that match nothing in ``module`` or whose shape
        differs from the parameter's: a LoRA made for another model family.
        """
        cache_key = (component, id(module))
        if cache_key in self._resolved:
            return self._resolved[cache_key]
        wanted = {(name, param): layer for (part, name, param), layer in self.layers.items() if part == component}
        if not wanted:
            self._resolved[cache_key] = {}
            return {}
        names = _module_names(module, component)
        params = dict(module.named_parameters())
        resolved: dict[str, Any] = {}
        missing: list[str] = []
        misfit: list[str] = []
        for (name, param), layer in wanted.items():
            target = names.get(name) or names.get(name.replace(".", "_"))
            parameter = params.get(f"{target}.{param}") if target is not None else None
            if parameter is None:
                missing.append(name if param == "weight" else f"{name} ({param})")
            elif (problem := layer.mismatch(tuple(parameter.shape))) is not None:
                misfit.append(f"{name}: {problem}")
            else:
                resolved[f"{target}.{param}"] = layer
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(wanted)} {component} layers match nothing in this model "
                            f"(first: {', '.join(sorted(missing)[:3])})")
        if misfit:
            problems.append(f"{len(misfit)} of {len(wanted)} {component} layers do not fit it "
                            f"({'; '.join(sorted(misfit)[:3])})")
        if problems:
            raise ValueError(f"{self.path.name}: {'; '.join(problems)}; the LoRA was made for another model family")
        self._resolved[cache_key] = resolved
        return resolved

    def check(self, parts: list[tuple[str, Any]], ignore: Iterable[str] = ()) -> None:
        """Resolve against every ``(slot, module)`` of a handle; ``ValueError`` if a layer would land nowhere.

        Components in ``ignore`` (text encoders for a model-only LoRA node) are left out on purpose.
        """
        for slot, module in parts:
            self.resolve(slot, module)
        absent = self.components - {slot for slot, _ in parts} - set(ignore)
        if absent:
            raise ValueError(f"{self.path.name} patches {', '.join(sorted(absent))}, which this model does not have; "
                             "the LoRA was made for another model family")


def _module_names(module: Any, component: str) -> dict[str, str]:
    """Every way a file may name a weight-bearing submodule of ``module``, mapped to its real path."""
    names: dict[str, str] = {}
    for name, sub in module.named_modules():
        if not name or (getattr(sub, "weight", None) is None and getattr(sub, "bias", None) is None):
            continue
        aliases = [name]
        if component in TEXT_ENCODERS:
            # transformers 5's CLIPTextModel has no text_model level; files (and transformers 4) name it.
            aliases.append(name[len("text_model."):] if name.startswith("text_model.") else f"text_model.{name}")
        for alias in aliases:
            names.setdefault(alias, name)
            names.setdefault(alias.replace(".", "_"), name)
    if component == "unet":
        for alias, name in _ldm_unet_names(module).items():
            names.setdefault(alias, name)
    return names


def _ldm_unet_names(unet: Any) -> dict[str, str]:
    """Original-layout (LDM/SGM) UNet module names, flattened with ``_``, mapped to diffusers paths."""
    try:
        from gouache.nodes.loading.convert import unet_to_original

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
    """Read and parse a LoRA file; ``ValueError`` saying what does not fit when it is not one we apply."""
    from gouache.nodes.loading import read_state_dict

    path = Path(path)
    state = read_state_dict(path)
    try:
        keys = parse_keys(state)
    except ValueError as error:
        raise ValueError(f"{path.name}: {error}") from None
    peft_config = _peft_metadata(path)
    layers = {where: _adapter(layer, state, peft_config) for where, layer in keys.items()}
    layouts = sorted({layer.layout for layer in keys.values()})
    return LoraFile(path, "+".join(layouts), layers)


def _peft_metadata(path: Path) -> dict[str, Any]:
    """diffusers' ``lora_adapter_metadata`` (peft's ``lora_alpha``, patterns) from a safetensors header."""
    from gouache.nodes.folders import SAFETENSORS_SUFFIXES, safetensors_header

    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    raw = (safetensors_header(path).get("__metadata__") or {}).get("lora_adapter_metadata")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _peft_alpha(config: dict[str, Any], layer: LayerKeys, rank: int) -> float | None:
    """The alpha peft would use for a layer without an ``.alpha`` tensor (``None``: alpha = rank)."""
    prefix = f"{layer.component}."
    alpha = config.get(prefix + "lora_alpha")
    for pattern, value in (config.get(prefix + "alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", layer.module):
            alpha = value
            break
    if alpha is None:
        return None
    if config.get(prefix + "use_rslora"):
        return float(alpha) * rank**0.5  # rsLoRA scales by alpha / sqrt(rank)
    return float(alpha)


def _adapter(layer: LayerKeys, state: dict[str, Any], peft_config: dict[str, Any]) -> Any:
    from gouache.nodes import lora_adapters as kinds

    tensors = {role: state[key] for role, key in layer.keys.items()}
    alpha = float(tensors.pop("alpha")) if "alpha" in tensors else None
    magnitude = tensors.pop("magnitude", None)
    if layer.kind == "lora":
        if alpha is None and layer.layout == "peft":
            alpha = _peft_alpha(peft_config, layer, tensors["down"].shape[0])
        adapter: Any = kinds.LoraAdapter(tensors["up"], tensors["down"], alpha, tensors.get("mid"))
    elif layer.kind == "loha":
        adapter = kinds.LohaAdapter(tensors["w1a"], tensors["w1b"], tensors["w2a"], tensors["w2b"], alpha,
                                    tensors.get("t1"), tensors.get("t2"))
    elif layer.kind == "lokr":
        adapter = kinds.LokrAdapter(alpha=alpha, **tensors)
    else:
        adapter = kinds.DiffAdapter(tensors["diff"], layer.param)
    return kinds.DoraAdapter(adapter, magnitude) if magnitude is not None else adapter


# -- applying ----------------------------------------------------------------------------------


@contextmanager
def patched(manager: Any, component: str, module: Any, patches: tuple[Any, ...]) -> Iterator[None]:
    """Run with ``patches`` applied to ``module`` (the ``component`` of a checkpoint), then restore.

    Patches apply in order, each to the result of the ones before (which only matters for DoRA,
    whose update depends on the weight it meets). Restoring points each parameter back at its
    original tensor object, which was never written.
    """
    active = [p for p in patches if p.strength != 0]
    if not active:
        yield
        return
    import torch

    params = dict(module.named_parameters())
    steps: dict[str, list[tuple[Any, float]]] = {}
    for patch in active:
        lora = manager.lora_by_key(patch.key)
        for param_name, adapter in lora.resolve(component, module).items():
            steps.setdefault(param_name, []).append((adapter, patch.strength))
    originals: dict[str, Any] = {}
    try:
        with torch.no_grad():
            for param_name, todo in steps.items():
                param = params[param_name]
                value = param.data.float()
                for adapter, strength in todo:
                    value = adapter.apply(value, strength)
                originals[param_name] = param.data
                param.data = value.to(param.dtype)
        yield
    finally:
        for param_name, data in originals.items():
            params[param_name].data = data
