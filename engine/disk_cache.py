"""The disk tier of the output cache: node outputs kept under ``home/cache`` across processes.

A second ``gouache run`` in a new process finds what the first computed because cache keys are
content keys, stable across processes. The engine knows no value types beyond plain data: packs
say how their values are written with :func:`register_codec` (the built-in pack registers tensors,
CONDITIONING and LATENT). Outputs holding anything without a codec (a loaded model) stay in memory
only; nodes downstream of them are still stored, since their keys need only upstream keys.

Each entry is one file ``<name>.entry``: a magic line, a BLAKE2b digest of the rest, the length
of a JSON header (the key, the outputs as a tree of plain data, the files the node reported, blob
lengths) and the blobs. Nothing is unpickled: a decoder turns bytes into one registered type.
Files are written to a temporary name and renamed, so readers and other processes sharing the
home see whole entries or none. An entry that fails any check is deleted and recomputed. Least
recently used entries (by modification time, touched on every hit) go first past the budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"gouache-cache/1\n"
_DIGEST = 32
_LENGTH = struct.Struct("<Q")
SUFFIX = ".entry"
_STALE_TEMPORARY_SECONDS = 3600
_EVICT_TO = 0.9
"""Eviction frees a little more than needed, so a full tier is not rescanned on every write."""

_PLAIN = (str, int, float, bool, type(None))


class Unstorable(TypeError):
    """A value that no codec can write to disk (a model handle, an open file...)."""


@singledispatch
def _encoder(value: Any) -> tuple[str, Callable[[Any], Any]]:
    raise Unstorable(f"no disk codec for {type(value).__module__}.{type(value).__qualname__}")


_DECODERS: dict[str, Callable[[Any], Any]] = {}


def register_codec(cls: type, tag: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
    """Let the disk tier store values of ``cls``.

    ``encode(value)`` returns a tree of bytes, str, int, float, bool, None, lists, tuples, dicts with
    str keys, and other values that have codecs; ``decode(tree)`` rebuilds the value from that tree
    and must trust nothing in it beyond its shape (it is read back from a file). ``tag`` names the
    format in the file: change it when the format changes. Registering a tag twice with another
    decoder is an error, never a silent overwrite.
    """
    known = _DECODERS.get(tag)
    if known is not None and _origin(known) != _origin(decode):  # the same module imported again is fine
        raise ValueError(f"disk codec tag {tag!r} is already registered by {known.__module__}; choose another tag")
    _DECODERS[tag] = decode
    _encoder.register(cls)(lambda value: (tag, encode))


def _origin(function: Callable[..., Any]) -> tuple[str, str]:
    return getattr(function, "__module__", ""), getattr(function, "__qualname__", repr(function))


def encode_entry(key: str, outputs: dict[str, Any], ui: dict[str, Any]) -> bytes:
    """One cache file's bytes; raises :class:`Unstorable` if any output has no codec."""
    blobs: list[bytes] = []
    header = {"key": key, "outputs": _to_tree(outputs, blobs), "ui": ui, "blobs": [len(blob) for blob in blobs]}
    try:
        text = json.dumps(header, separators=(",", ":"), allow_nan=True).encode()
    except (TypeError, ValueError) as error:
        raise Unstorable(f"the files reported are not plain data: {error}") from None
    body = b"".join([_LENGTH.pack(len(text)), text, *blobs])
    return MAGIC + hashlib.blake2b(body, digest_size=_DIGEST).digest() + body


def decode_entry(key: str, data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(outputs, ui)`` from one cache file's bytes; ``ValueError`` if it is damaged or not ``key``'s."""
    if not data.startswith(MAGIC):
        raise ValueError("not a gouache cache entry (wrong magic)")
    digest, body = data[len(MAGIC):len(MAGIC) + _DIGEST], data[len(MAGIC) + _DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise ValueError("the digest does not match: the file is truncated or damaged")
    (length,) = _LENGTH.unpack_from(body)
    header = json.loads(body[_LENGTH.size:_LENGTH.size + length])
    if not isinstance(header, dict) or header.get("key") != key:
        raise ValueError("the entry belongs to another key")
    blobs, offset = [], _LENGTH.size + length
    for size in header["blobs"]:
        blobs.append(body[offset:offset + size])
        offset += size
    if offset != len(body):
        raise ValueError("the blob lengths do not add up to the file")
    outputs, ui = _from_tree(header["outputs"], blobs), header["ui"]
    if not isinstance(outputs, dict) or not isinstance(ui, dict):
        raise ValueError("outputs and ui must be objects")
    return outputs, ui


def _to_tree(value: Any, blobs: list[bytes]) -> Any:
    """Plain JSON for plain values; every container and codec value as a one-key object, so decoding is unambiguous."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is bytes:
        blobs.append(value)
        return {"b": len(blobs) - 1}
    if kind is list or kind is tuple:
        return {"l" if kind is list else "t": [_to_tree(item, blobs) for item in value]}
    if kind is dict:
        if not all(type(name) is str for name in value):
            raise Unstorable("dict keys must be strings to be stored")
        return {"d": {name: _to_tree(item, blobs) for name, item in value.items()}}
    tag, encode = _encoder(value)
    return {"c": tag, "v": _to_tree(encode(value), blobs)}


def _from_tree(tree: Any, blobs: list[bytes]) -> Any:
    if type(tree) in _PLAIN:
        return tree
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"unexpected {type(tree).__name__} in a cache entry")
    if "b" in tree:
        return blobs[tree["b"]]
    if "l" in tree:
        return [_from_tree(item, blobs) for item in tree["l"]]
    if "t" in tree:
        return tuple(_from_tree(item, blobs) for item in tree["t"])
    if "d" in tree:
        return {name: _from_tree(item, blobs) for name, item in tree["d"].items()}
    decode = _DECODERS.get(tree.get("c"))
    if decode is None:
        raise ValueError(f"no disk codec {tree.get('c')!r} is registered (is its pack loaded?)")
    return decode(_from_tree(tree["v"], blobs))


@dataclass
class DiskCache:
    """Cache files in ``folder``, at most ``budget_bytes`` of them, least recently used first out.

    ``salt`` (the versions of the packs loaded) is mixed into file names, so upgrading a pack
    never replays outputs its older code made. Safe for several processes sharing the folder.
    """

    folder: Path
    budget_bytes: int
    salt: str = ""
    _used: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def path(self, key: str) -> Path:
        """The file that holds ``key``'s entry."""
        return self.folder / f"{self._name(key)}{SUFFIX}"

    def _name(self, key: str) -> str:
        return hashlib.blake2b(f"{self.salt}\n{key}".encode(), digest_size=16).hexdigest()

    def get(self, key: str) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """``(outputs, ui, file size)`` stored under ``key``, or ``None``; a damaged entry is deleted."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cache entry %s is unreadable (%s); computing it again", path, error)
            return None
        try:
            outputs, ui = decode_entry(self._name(key), data)
        except Exception as error:  # anything a damaged file or a decoder raises: recompute, never fail the run
            log.warning("cache entry %s is damaged (%s: %s); deleting it", path, type(error).__name__, error)
            _unlink(path)
            return None
        try:
            os.utime(path)  # recently used: the LRU order is the files' modification times
        except OSError:
            pass  # evicted by another process meanwhile: the outputs were read already
        return outputs, ui, len(data)

    def put(self, key: str, outputs: dict[str, Any], ui: dict[str, Any]) -> bool:
        """Store an entry; ``False`` when a value has no codec, the entry exceeds the budget or writing failed."""
        name = self._name(key)
        try:
            data = encode_entry(name, outputs, ui)
        except Unstorable:
            return False
        except Exception as error:  # a codec that fails on one value must not fail the run that made it
            log.warning("cannot encode the outputs for cache entry %s (%s: %s); the disk tier skips it",
                        self.path(key), type(error).__name__, error)
            return False
        if len(data) > self.budget_bytes:
            return False
        path = self.path(key)
        temporary = self.folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except OSError as error:
            log.warning("cannot write cache entry %s (%s); the disk tier skips it", path, error)
            _unlink(temporary)
            return False
        with self._lock:
            if self._used is None:
                self._used = self._scan_bytes()
            else:
                self._used += len(data)
            if self._used > self.budget_bytes:
                self._evict()
        return True

    @property
    def used_bytes(self) -> int:
        """Bytes of entries in the folder now (every process's)."""
        with self._lock:
            self._used = self._scan_bytes()
            return self._used

    def _entries(self) -> list[tuple[float, int, Path]]:
        """``(mtime, size, path)`` of every entry; stale temporary files of dead writers are removed."""
        found = []
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        now = time.time()
        for item in listing:
            try:
                stat = item.stat()
            except FileNotFoundError:
                continue
            if item.name.endswith(SUFFIX):
                found.append((stat.st_mtime, stat.st_size, Path(item.path)))
            elif item.name.endswith(".tmp") and now - stat.st_mtime > _STALE_TEMPORARY_SECONDS:
                _unlink(Path(item.path))
        return found

    def _scan_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> None:
        entries = sorted(self._entries())
        used = sum(size for _, size, _ in entries)
        target = int(self.budget_bytes * _EVICT_TO)
        for _, size, path in entries:
            if used <= target:
                break
            _unlink(path)
            used -= size
        self._used = used


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:  # e.g. open in another process on Windows: the next eviction retries
        log.warning("cannot remove cache file %s: %s", path, error)
