"""Content-addressed cache keys and a least-recently-used output cache bounded in bytes."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

from gouache.engine.validate import ValidNode


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


@dataclass
class CacheEntry:
    """A node's cached outputs and the files it reported."""

    outputs: dict[str, Any]
    ui: dict[str, Any]
    size: int


@dataclass
class OutputCache:
    """Node outputs by content key; least recently used entries go first past ``budget_bytes``.

    An entry larger than the whole budget is not kept. Thread-safe.
    """

    budget_bytes: int = 4 * 1024**3
    _entries: OrderedDict[str, CacheEntry] = field(default_factory=OrderedDict)
    _used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` (marked as recently used), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, outputs: dict[str, Any], ui: dict[str, Any]) -> None:
        """Store outputs under ``key``, evicting the least recently used entries as needed."""
        size = cache_size(outputs)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used -= old.size
            if size > self.budget_bytes:
                return
            self._entries[key] = CacheEntry(outputs, ui, size)
            self._used += size
            while self._used > self.budget_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._used -= evicted.size

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._used = 0

    @property
    def used_bytes(self) -> int:
        """Bytes held now, by the estimate."""
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
