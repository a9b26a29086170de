"""One per engine: loads checkpoints, LoRAs and upscalers once, and keeps the GPU within budget.

Reach it with ``manager(ctx)``; it lives in ``ctx.resources`` so every run of one engine shares it
and nothing is module-level state. Models are keyed by the file's fingerprint (path, size,
modification time), so loading the same file again costs nothing and a rewritten file reloads.

Devices: parts load onto the CPU, in the dtype the device plan gives them, and move to the compute
device when a node uses them (``on_device``). When the parts on the device would exceed the memory
budget (``settings.memory_budget_bytes``, else what the driver says is free), the least recently
used parts not needed now go back to the CPU first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
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
    """The engine's model manager, created on first use."""
    return ctx.resources.get(RESOURCE_KEY, lambda: ModelManager(ctx.settings))


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelManager:
    """Loaded models by fingerprint, and which of them sit on the compute device."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._plan: DevicePlan | None = None
        self._checkpoints: dict[str, CheckpointRef] = {}
        self._loras: dict[str, Any] = {}
        self._upscalers: dict[str, UpscaleModelHandle] = {}
        self._resident: OrderedDict[int, Any] = OrderedDict()  # modules on the device, LRU first
        self._lock = threading.RLock()
        self.loads = 0
        """How many files were actually read (tests check that the cache works)."""

    @property
    def plan(self) -> DevicePlan:
        """The device and dtypes, decided on first use (this imports torch)."""
        if self._plan is None:
            self._plan = plan_for(self.settings.device)
        return self._plan

    # -- loading -------------------------------------------------------------------------------

    def checkpoint(self, path: Path, name: str, config_dir: Path | None = None) -> CheckpointRef:
        """The checkpoint at ``path`` (file or diffusers folder), loaded once per fingerprint."""
        from gouache.nodes.models import fingerprint, load_checkpoint

        key = f"{fingerprint(path)}|{config_dir or ''}"
        with self._lock:
            ref = self._checkpoints.get(key)
            if ref is None:
                import torch

                loaded = load_checkpoint(path, config_dir=config_dir, dtype=torch.float32, device="cpu")
                plan = self.plan
                dtypes = {loaded.family.denoiser_slot: plan.unet_dtype, "vae": plan.vae_dtype}
                for slot, module in loaded.modules():
                    dtype = dtypes.get(slot, plan.text_dtype)
                    module.requires_grad_(False)
                    if next(module.parameters()).dtype != dtype:  # diffusers warns on no-op casts
                        module.to(dtype)
                ref = CheckpointRef(key, name, loaded)
                self._checkpoints[key] = ref
                self.loads += 1
            return ref

    def checkpoints(self) -> list[CheckpointRef]:
        """The checkpoints loaded so far, oldest first."""
        return list(self._checkpoints.values())

    def lora(self, path: Path) -> tuple[str, Any]:
        """The LoRA file at ``path`` parsed into per-layer factors, once per fingerprint."""
        from gouache.nodes.lora import read_lora
        from gouache.nodes.models import fingerprint

        key = fingerprint(path)
        with self._lock:
            if key not in self._loras:
                self._loras[key] = read_lora(path)
                self.loads += 1
            return key, self._loras[key]

    def lora_by_key(self, key: str) -> Any:
        """A LoRA parsed earlier by :meth:`lora`."""
        return self._loras[key]

    def upscaler(self, path: Path, name: str) -> UpscaleModelHandle:
        """The spandrel model at ``path``, loaded once per fingerprint."""
        from gouache.nodes.models import fingerprint
        from gouache.nodes.upscale import load_upscaler

        key = fingerprint(path)
        with self._lock:
            if key not in self._upscalers:
                self._upscalers[key] = UpscaleModelHandle(key, name, load_upscaler(path))
                self.loads += 1
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
