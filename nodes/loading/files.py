"""Read checkpoint files safely, and fingerprint them for the cache."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from gouache.nodes.folders import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES

from .errors import ModelLoadError

if TYPE_CHECKING:  # fingerprint() is on every run's path and must not wait for torch
    import torch


def read_state_dict(path: Path, cast_to: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Read every tensor of a ``.safetensors`` or ``.ckpt`` file onto the CPU.

    Pickled files are read with ``torch.load(weights_only=True)`` only, which refuses code and
    arbitrary objects. A ``state_dict`` wrapper (as Lightning saves) is unwrapped and non-tensor
    entries (step counters and the like) are dropped.

    ``cast_to`` casts floating-point tensors. A safetensors file whose tensors need the cast is then
    read one tensor at a time with plain reads (no memory map), each cast as it arrives, so loading
    an fp16 file for an fp32 model holds the fp32 tensors and one fp16 tensor, never both whole.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from gouache.nodes.interrupt import check_running_node

    check_running_node()  # a model of several files stops between them when its run is interrupted

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES and cast_to is not None and _needs_cast(path, cast_to):
        return _read_safetensors_cast(path, cast_to)
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            data: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise ModelLoadError(
                f"{path}: not a readable safetensors file ({error}); an interrupted download is the usual cause"
            ) from error
    elif suffix in PICKLE_SUFFIXES:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ModelLoadError(
                f"{path}: holds Python objects beyond tensors, which gouache will not unpickle ({error}). "
                "Convert it to .safetensors with a tool you trust, or get a .safetensors release."
            ) from error
        except (RuntimeError, EOFError, OSError) as error:
            raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    else:
        accepted = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
        raise ModelLoadError(f"{path}: unknown checkpoint format {suffix!r}; expected one of {accepted}")
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not a dictionary of tensors")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path}: holds no tensors")
    if cast_to is not None:
        tensors = {k: v.to(cast_to) if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors


# safetensors' dtype names, as torch attribute names (fp8 types exist in torch >= 2.1).
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
                       "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_FLOATING = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def _header(path: Path) -> dict:
    from gouache.nodes.folders import safetensors_header

    try:
        return safetensors_header(path)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({error})") from error


def _needs_cast(path: Path, dtype: torch.dtype) -> bool:
    wanted = str(dtype).removeprefix("torch.")
    return any(info.get("dtype") in _FLOATING and _SAFETENSORS_DTYPES[info["dtype"]] != wanted
               for key, info in _header(path).items() if key != "__metadata__")


def _read_safetensors_cast(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, floating ones cast to ``dtype``, read one at a time."""
    import struct

    import torch

    header = _header(path)
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        base = 8 + length
        tensors: dict[str, torch.Tensor] = {}
        for key, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                                key=lambda item: item[1]["data_offsets"][0]):
            name = _SAFETENSORS_DTYPES.get(info.get("dtype", ""))
            if name is None:
                raise ModelLoadError(f"{path}: tensor {key} has dtype {info.get('dtype')!r}, which gouache cannot read")
            start, end = info["data_offsets"]
            raw = torch.empty(info["shape"], dtype=getattr(torch, name))
            buffer = raw.view(-1).view(torch.uint8) if raw.numel() else raw
            if end - start != buffer.numel() * (1 if raw.numel() else 0) and raw.numel():
                raise ModelLoadError(f"{path}: tensor {key} holds {end - start} bytes, not what its shape and dtype need")
            handle.seek(base + start)
            if raw.numel() and handle.readinto(memoryview(buffer.numpy())) != end - start:
                raise ModelLoadError(f"{path}: ends inside tensor {key}; an interrupted download is the usual cause")
            tensors[key] = raw.to(dtype) if info["dtype"] in _FLOATING else raw
    if not tensors:
        raise ModelLoadError(f"{path}: holds no tensors")
    return tensors


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's ``__metadata__`` (header only); ``{}`` for other formats or a file without one."""
    from gouache.nodes.folders import safetensors_header

    path = Path(path)
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    try:
        metadata = safetensors_header(path).get("__metadata__") or {}
    except (OSError, ValueError):
        return {}  # read_state_dict says what is wrong with the file
    return {str(k): str(v) for k, v in metadata.items()}


def _stat_line(path: Path, name: str) -> str:
    stat = path.stat()
    return f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n"


def fingerprint(path: Path) -> str:
    """Return a stable key for the content of a model file or folder, for cache keys.

    The key hashes the resolved path, size and modification time (nanoseconds) of the file, or of
    every file in a folder. That costs one ``stat`` instead of reading gigabytes, changes whenever a
    file is rewritten, and is the same in every process. Two copies of one file at different paths get
    different keys, which only costs a cache miss.
    """
    path = Path(path).resolve()
    digest = hashlib.sha256(str(path).encode("utf-8") + b"\n")
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()  # os.walk order is the file system's; sort for a stable key
            for name in sorted(files):
                file = Path(root) / name
                digest.update(_stat_line(file, file.relative_to(path).as_posix()).encode("utf-8"))
    elif path.is_file():
        digest.update(_stat_line(path, path.name).encode("utf-8"))
    else:
        raise ModelLoadError(f"{path}: no such file or folder")
    return digest.hexdigest()
