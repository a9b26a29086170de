"""One per engine: loads checkpoints, LoRAs and upscalers, keeps RAM and the GPU within budget.

Reach it with ``manager(ctx)``; it lives in ``ctx.resources`` so every run of one engine shares it
and nothing is module-level state. Models are keyed by the file's fingerprint (path, size,
modification time), so loading the same file again costs nothing and a rewritten file reloads.

RAM: loaded models are kept least recently used first out past ``settings.model_cache_bytes``,
except those the current run has used. Handles (MODEL, CLIP, VAE, UPSCALE_MODEL, LoRA patches)
name a model by key and resolve it through the manager, so a handle that outlived its model (in
the output cache, say) loads the file again instead of keeping the model alive: the budget holds
for everything loaded.

Devices: parts load onto the CPU, in the dtype the device plan gives them, and move to the compute
device when a node uses them (``on_device``). When the parts on the device would exceed the memory
budget (``settings.memory_budget_bytes``, else what the driver says is free), the least recently
used parts not needed now go back to the CPU first.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gouache.nodes.devices import DevicePlan, free_bytes, plan_for
from gouache.nodes.types import CheckpointRef, UpscaleModelHandle

if TYPE_CHECKING:
    from gouache.engine import RunContext, Settings

RESOURCE_KEY = "gouache.models"
# Room left free on a GPU for activations when no explicit budget is set.
_HEADROOM_BYTES = 1024**3


def manager(ctx: RunContext) -> ModelManager:
    """The engine's model manager, created on first use; what it hands out now is kept for ``ctx``'s run."""
    found = ctx.resources.get(RESOURCE_KEY, lambda: ModelManager(ctx.settings))
    found.begin_run(ctx.run_id)
    return found


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def file_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder: what loading it will roughly take."""
    path = Path(path)
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size if path.exists() else 0


@dataclass
class _Held:
    """One loaded model in RAM: what it is, its bytes, the modules that may sit on the GPU."""

    value: Any
    size: int
    modules: list[Any]


@dataclass(frozen=True)
class _Source:
    """How to load a model (again): a loader, and a size guess to make room before loading."""

    load: Callable[[], _Held]
    estimate: Callable[[], int]


class ModelManager:
    """Loaded models by fingerprint, which of them sit on the compute device, and RAM within budget."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget_bytes: int = settings.model_cache_bytes
        """Bytes of loaded models kept in RAM; what the current run uses stays even past it."""
        self._plan: DevicePlan | None = None
        self._held: OrderedDict[str, _Held] = OrderedDict()  # "kind:key" -> model, least recently used first
        self._sources: dict[str, _Source] = {}  # how to load each model again; small, never dropped
        self._refs: dict[str, CheckpointRef] = {}
        self._upscalers: dict[str, UpscaleModelHandle] = {}
        self._pinned: set[str] = set()
        self._run_id: str | None = None
        self._resident: OrderedDict[int, Any] = OrderedDict()  # modules on the device, LRU first
        self._lock = threading.RLock()
        self.loads = 0
        """How many files were actually read (tests check that the cache works)."""
        self.evictions = 0
        """How many models were let go to stay within the budget."""

    @property
    def plan(self) -> DevicePlan:
        """The device and dtypes, decided on first use (this imports torch)."""
        if self._plan is None:
            self._plan = plan_for(self.settings.device)
        return self._plan

    # -- RAM budget ------------------------------------------------------------------------------

    def begin_run(self, run_id: str) -> None:
        """Models used from now on belong to run ``run_id``; those of earlier runs may be let go."""
        with self._lock:
            if run_id != self._run_id:
                self._run_id = run_id
                self._pinned.clear()

    @property
    def held_bytes(self) -> int:
        """Bytes of the models loaded in RAM now."""
        with self._lock:
            return sum(held.size for held in self._held.values())

    def held(self) -> list[str]:
        """The models loaded now as ``kind:key``, least recently used first."""
        with self._lock:
            return list(self._held)

    def _get(self, name: str) -> Any:
        """The model ``name`` (``kind:key``), loading it (again) if needed; kept for the current run."""
        with self._lock:
            held = self._held.get(name)
            if held is None:
                source = self._sources[name]
                self._make_room(source.estimate())
                held = source.load()
                self.loads += 1
                self._held[name] = held
            self._held.move_to_end(name)
            self._pinned.add(name)
            self._make_room(0)
            return held.value

    def _make_room(self, incoming: int) -> None:
        """Let go of least recently used models the current run has not used until ``incoming`` more bytes fit."""
        used = sum(held.size for held in self._held.values())
        freed = False
        for name in [name for name in self._held if name not in self._pinned]:
            if used + incoming <= self.budget_bytes:
                break
            held = self._held.pop(name)
            for module in held.modules:
                self._resident.pop(id(module), None)
            used -= held.size
            self.evictions += 1
            freed = True
        if freed:
            gc.collect()  # modules can hold reference cycles (hooks); free them now, not at some later collection

    # -- loading -------------------------------------------------------------------------------

    def checkpoint(self, path: Path, name: str, config_dir: Path | None = None,
                   prediction_type: str | None = None) -> CheckpointRef:
        """The checkpoint at ``path`` (file or diffusers folder), loaded once per fingerprint, config folder
        and prediction override (``None``: what the file says)."""
        from gouache.nodes.loading import fingerprint

        key = f"{fingerprint(path)}|{config_dir or ''}" + (f"|{prediction_type}" if prediction_type else "")
        with self._lock:
            if key not in self._refs:
                self._sources[f"checkpoint:{key}"] = _Source(
                    functools.partial(self._load_checkpoint, Path(path), key, config_dir, prediction_type),
                    functools.partial(file_bytes, path))
                self._refs[key] = CheckpointRef(key, name, functools.partial(self._get, f"checkpoint:{key}"))
            ref = self._refs[key]
            self._get(f"checkpoint:{key}")
            return ref

    def _load_checkpoint(self, path: Path, key: str, config_dir: Path | None, prediction_type: str | None) -> _Held:
        import torch

        from gouache.nodes.loading import fingerprint, load_checkpoint

        _same_file(path, key.partition("|")[0], fingerprint)
        return self._prepare(load_checkpoint(path, config_dir=config_dir, dtype=torch.float32, device="cpu",
                                             prediction_type=prediction_type))

    def parts(self, paths: list[Path], name: str, variant: str, load: Callable[[], Any]) -> CheckpointRef:
        """Parts of a model from split files (a diffusion model, text encoders, a VAE), loaded once.

        ``load`` returns a ``LoadedCheckpoint`` holding only those parts; ``variant`` is whatever else
        decides the result (the family the files are read as, a weight dtype), part of the key.
        """
        from gouache.nodes.loading import fingerprint

        key = "+".join(fingerprint(path) for path in paths) + f"|{variant}"
        with self._lock:
            if key not in self._refs:
                def load_again() -> _Held:
                    for path, part_key in zip(paths, key.partition("|")[0].split("+")):
                        _same_file(path, part_key, fingerprint)
                    return self._prepare(load())

                self._sources[f"parts:{key}"] = _Source(load_again, lambda: sum(file_bytes(p) for p in paths))
                self._refs[key] = CheckpointRef(key, name, functools.partial(self._get, f"parts:{key}"))
            ref = self._refs[key]
            self._get(f"parts:{key}")
            return ref

    def _prepare(self, loaded: Any) -> _Held:
        """Put a freshly loaded checkpoint's parts in the dtypes the device plan gives them.

        SD 1.x/2.x/XL parts are cast. The parts of families stored in low precision (SD 3.x, Flux.1:
        bf16 or fp8 files) keep their weights as stored and compute in the plan's dtype layer by layer,
        so no full-precision copy is ever made.
        """
        from gouache.nodes.loading.manual_cast import manual_cast

        plan = self.plan
        dtypes = {loaded.family.denoiser_slot: plan.unet_dtype, "vae": plan.vae_dtype}
        modules = []
        for slot, module in loaded.modules():
            dtype = dtypes.get(slot, plan.text_dtype)
            module.requires_grad_(False)
            if loaded.family.sampling == "flow":
                manual_cast(module, dtype)
            elif next(module.parameters()).dtype != dtype:  # diffusers warns on no-op casts
                module.to(dtype)
            modules.append(module)
        return _Held(loaded, sum(module_bytes(module) for module in modules), modules)

    def checkpoints(self) -> list[CheckpointRef]:
        """The checkpoints loaded now, least recently used first."""
        with self._lock:
            return [self._refs[name.partition(":")[2]] for name in self._held if name.startswith("checkpoint:")]

    def lora(self, path: Path) -> tuple[str, Any]:
        """The LoRA file at ``path`` parsed into per-layer factors, once per fingerprint."""
        from gouache.nodes.loading import fingerprint

        key = fingerprint(path)
        with self._lock:
            if f"lora:{key}" not in self._sources:
                self._sources[f"lora:{key}"] = _Source(functools.partial(_load_lora, Path(path), key),
                                                       functools.partial(file_bytes, path))
            return key, self._get(f"lora:{key}")

    def lora_by_key(self, key: str) -> Any:
        """A LoRA parsed earlier by :meth:`lora` (read again if it was let go)."""
        return self._get(f"lora:{key}")

    def upscaler(self, path: Path, name: str) -> UpscaleModelHandle:
        """The spandrel model at ``path``, loaded once per fingerprint."""
        from gouache.nodes.loading import fingerprint

        key = fingerprint(path)
        with self._lock:
            if key not in self._upscalers:
                self._sources[f"upscaler:{key}"] = _Source(functools.partial(_load_upscaler, Path(path), key),
                                                           functools.partial(file_bytes, path))
                self._upscalers[key] = UpscaleModelHandle(key, name, functools.partial(self._get, f"upscaler:{key}"))
            self._get(f"upscaler:{key}")
            return self._upscalers[key]

    # -- devices -------------------------------------------------------------------------------

    def on_device(self, modules: Iterable[Any]) -> Any:
        """Move ``modules`` to the compute device (making room first) and return the device."""
        plan = self.plan
        wanted = [m for m in modules if m is not None]
        if not plan.is_gpu:
            return plan.device
        with self._lock:
            ids = {id(m) for m in wanted}
            need = sum(module_bytes(m) for m in wanted if id(m) not in self._resident)
            budget = self.settings.memory_budget_bytes
            for module_id in list(self._resident):
                if need == 0:
                    break
                used = sum(module_bytes(m) for m in self._resident.values())
                free = free_bytes(plan.device)
                over_budget = budget is not None and used + need > budget
                short = free is not None and free - _HEADROOM_BYTES < need
                if not (over_budget or short):
                    break
                if module_id not in ids:
                    self._resident.pop(module_id).to("cpu")
                    if plan.device.type == "cuda":
                        import torch

                        torch.cuda.empty_cache()
            for module in wanted:
                module.to(plan.device)
                self._resident.pop(id(module), None)
                self._resident[id(module)] = module
        return plan.device


def _same_file(path: Path, key: str, fingerprint: Callable[[Path], str]) -> None:
    """Refuse to load a file again under a key it no longer matches (it was rewritten since)."""
    if fingerprint(path) != key:
        raise ValueError(f"{path} changed since it was first loaded in this run; run the workflow again")


def _load_lora(path: Path, key: str) -> _Held:
    from gouache.nodes.lora import read_lora
    from gouache.nodes.loading import fingerprint

    _same_file(path, key, fingerprint)
    lora = read_lora(path)
    return _Held(lora, lora.nbytes, [])


def _load_upscaler(path: Path, key: str) -> _Held:
    from gouache.nodes.loading import fingerprint
    from gouache.nodes.upscale import load_upscaler

    _same_file(path, key, fingerprint)
    descriptor = load_upscaler(path)
    return _Held(descriptor, module_bytes(descriptor.model), [descriptor.model])
