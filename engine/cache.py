"""Content-addressed cache keys and the output cache: least recently used entries out, by bytes.

Entries count against the memory they live in: RAM, or a GPU's memory for values a pack says are
held there (:func:`cache_device`), each with its own budget. An optional disk tier
(:mod:`gouache.engine.disk_cache`) keeps storable outputs across processes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import singledispatch
from typing import Any

from gouache.engine.disk_cache import DiskCache
from gouache.engine.packs import PackReport
from gouache.engine.settings import DEFAULT_CACHE_BYTES, DEVICE_CACHE_SHARE, GiB, Settings
from gouache.engine.validate import ValidNode

MAIN_MEMORY = "cpu"
"""The budget key of values held in RAM."""


def node_key(node: ValidNode, upstream: dict[str, str], extra: str = "") -> str:
    """The content key of a node's outputs.

    Built from the node's type, version, typed-in values, the keys of the outputs wired into it and
    ``extra`` (a fingerprint or a nonce). It never walks the ancestry: each upstream key already
    stands for everything above it. Stable across processes (no ``hash()``).
    """
    payload = json.dumps(
        [node.node_class.type_name, node.node_class.version, node.literals, upstream, extra],
        sort_keys=True, separators=(",", ":"), default=repr,
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


@singledispatch
def cache_size(value: Any) -> int:
    """An estimate of the bytes ``value`` holds; extend with ``cache_size.register``."""
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, and torch tensors through element_size
    if isinstance(nbytes, int):
        return nbytes
    element_size = getattr(value, "element_size", None)
    nelement = getattr(value, "nelement", None)
    if callable(element_size) and callable(nelement):
        return int(element_size()) * int(nelement())
    return sys.getsizeof(value)


@cache_size.register(dict)
def _(value: dict) -> int:
    return sys.getsizeof(value) + sum(cache_size(item) for item in value.values())


@cache_size.register(list)
@cache_size.register(tuple)
def _(value: list | tuple) -> int:
    return sys.getsizeof(value) + sum(cache_size(item) for item in value)


@dataclass(frozen=True)
class CacheDevice:
    """Where a cached value lives when not in RAM: ``name`` (``cuda:0``) is its budget's key."""

    name: str
    total_bytes: int | None = None
    """The device's memory, if known: the default budget is a share of it."""


@singledispatch
def cache_device(value: Any) -> CacheDevice | None:
    """The device memory ``value`` occupies, ``None`` for RAM; extend with ``cache_device.register``.

    By default a value with a ``device`` whose ``type`` is not ``cpu`` (a torch tensor on a GPU) is
    counted against that device, with its memory unknown; a pack registers its types to say more.
    """
    device = getattr(value, "device", None)
    kind = getattr(device, "type", None)
    return CacheDevice(str(device)) if isinstance(kind, str) and kind != MAIN_MEMORY else None


@cache_device.register(dict)
@cache_device.register(list)
@cache_device.register(tuple)
def _(value: dict | list | tuple) -> CacheDevice | None:
    for item in value.values() if isinstance(value, dict) else value:
        device = cache_device(item)
        if device is not None:
            return device  # a GPU's memory is the scarcer: an entry touching one counts there
    return None


@dataclass
class CacheEntry:
    """A node's cached outputs, the files it reported, and where the entry was found."""

    outputs: dict[str, Any]
    ui: dict[str, Any]
    size: int
    device: str = MAIN_MEMORY
    source: str = "memory"
    """``memory`` or ``disk``."""


@dataclass
class OutputCache:
    """Node outputs by content key; least recently used entries go first past a memory's budget.

    ``budget_bytes`` bounds RAM; ``device_budget_bytes`` each GPU (``None``: 1/``DEVICE_CACHE_SHARE``
    of the device's memory, 1 GiB if unknown). An entry larger than its whole budget is not kept.
    With ``disk``, stored outputs also go to disk and a miss in memory looks there. Thread-safe.
    """

    budget_bytes: int = DEFAULT_CACHE_BYTES
    device_budget_bytes: int | None = None
    disk: DiskCache | None = None
    _entries: OrderedDict[str, CacheEntry] = field(default_factory=OrderedDict)
    _used: dict[str, int] = field(default_factory=dict)
    _budgets: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` (marked as recently used), from memory or else from disk, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        if self.disk is None:
            return None
        found = self.disk.get(key)
        if found is None:
            return None
        outputs, ui, _ = found
        entry = self._keep(key, outputs, ui)
        return replace(entry, source="disk")

    def put(self, key: str, outputs: dict[str, Any], ui: dict[str, Any]) -> None:
        """Store outputs under ``key`` in memory (and on disk if they are storable), evicting as needed."""
        self._keep(key, outputs, ui)
        if self.disk is not None:
            self.disk.put(key, outputs, ui)

    def _keep(self, key: str, outputs: dict[str, Any], ui: dict[str, Any]) -> CacheEntry:
        device = cache_device(outputs)
        entry = CacheEntry(outputs, ui, cache_size(outputs), device.name if device else MAIN_MEMORY)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used[old.device] -= old.size
            budget = self._budget(device)
            if entry.size > budget:
                return entry
            self._entries[key] = entry
            used = self._used[entry.device] = self._used.get(entry.device, 0) + entry.size
            if used > budget:
                for other in [k for k, e in self._entries.items() if e.device == entry.device]:
                    evicted = self._entries.pop(other)
                    used = self._used[entry.device] = used - evicted.size
                    if used <= budget:
                        break
        return entry

    def _budget(self, device: CacheDevice | None) -> int:
        if device is None:
            return self.budget_bytes
        if device.name not in self._budgets:
            if self.device_budget_bytes is not None:
                budget = self.device_budget_bytes
            else:
                budget = device.total_bytes // DEVICE_CACHE_SHARE if device.total_bytes else GiB
            self._budgets[device.name] = budget
        return self._budgets[device.name]

    def clear(self) -> None:
        """Forget every entry held in memory (the disk tier keeps its files)."""
        with self._lock:
            self._entries.clear()
            self._used.clear()

    @property
    def used_bytes(self) -> int:
        """Bytes held in RAM now, by the estimate."""
        return self._used.get(MAIN_MEMORY, 0)

    def used_by_device(self) -> dict[str, int]:
        """Bytes held now in each memory: ``{"cpu": ..., "cuda:0": ...}``."""
        with self._lock:
            return {name: used for name, used in self._used.items() if used}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


def disk_tier(settings: Settings, packs: list[PackReport]) -> DiskCache | None:
    """The disk tier for an engine with ``settings`` and these loaded ``packs`` (``None`` with a zero budget).

    The packs' names and versions salt the file names: after an upgrade, outputs made by older code
    are not replayed (they age out under the budget).
    """
    if settings.disk_cache_bytes <= 0:
        return None
    loaded = sorted((report.name, str(report.version)) for report in packs if report.status == "loaded")
    return DiskCache(settings.cache_dir / "outputs", settings.disk_cache_bytes, json.dumps(loaded))
