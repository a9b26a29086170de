"""Textual-inversion embeddings: the files, ``embedding:NAME`` in prompts, and what a file holds.

An embedding is one or more learnt vectors that stand in for words: ``embedding:NAME`` in a prompt
puts its vectors where the words would be, each vector taking one of a window's 75 token places
(as A1111 and ComfyUI do). Formats read:

* A1111 ``.pt``: ``{"string_to_param": {"*": [n, D]}, "string_to_token": ..., "name": ...}``;
* ``.safetensors`` with ``emb_params`` [n, D] (A1111, kohya);
* SDXL's pair: ``clip_l`` [n, 768] and ``clip_g`` [n, 1280] (also how SD 3's CLIPs read one);
* diffusers' ``learned_embeds``: a single tensor under the token's name ([D] or [n, D]).

Each encoder of a CLIP takes the tensor whose width is its own; an embedding that fits none of them is
an error naming it. An encoder joined side by side with one it fits (SDXL) but that it does not fit
itself reads padding tokens at those places, so the encoders' sequences stay aligned.

Reading names and shapes (``gouache models``) needs no torch: safetensors headers, and for ``.pt``
files a restricted unpickler that records tensor shapes without reading a byte of the weights.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

KIND = "embeddings"
"""The model folder kind embeddings are found in."""
REFERENCE = re.compile(r"embedding:([^\s,()\[\]:\\]+)")
"""``embedding:NAME`` in a prompt; the name runs to a space, comma, bracket or colon."""
ENCODER_NAMES = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}
"""What people call a CLIP by its width, for ``gouache models``."""
_PAIR_KEYS = ("clip_l", "clip_g")
_SUFFIXES = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")


def references(text: str) -> list[str]:
    """The embedding names a prompt refers to, in order, each once."""
    return list(dict.fromkeys(REFERENCE.findall(text)))


def find_name(name: str, names: Iterable[str]) -> str | None:
    """The entry of ``names`` that ``embedding:name`` means: the name itself or with a file suffix."""
    known = set(names)
    if name in known:
        return name
    return next((name + suffix for suffix in _SUFFIXES if name + suffix in known), None)


def unknown_message(name: str, names: list[str]) -> str:
    """What to say about ``embedding:name`` when no such file is in the embeddings folders."""
    found = ", ".join(_stem(n) for n in names[:20]) or "none"
    return (f"no embedding named {name!r} in the embeddings folders (models/embeddings); "
            f"found: {found}")


def _stem(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Embedding:
    """A loaded embedding: its name in prompts and one [n, D] tensor per encoder width it was made for."""

    name: str
    tensors: tuple[torch.Tensor, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        """The encoder widths it has vectors for."""
        return tuple(int(t.shape[-1]) for t in self.tensors)

    def vectors_for(self, width: int) -> torch.Tensor | None:
        """Its [n, width] vectors, or ``None`` if it was not made for an encoder of that width."""
        return next((t for t in self.tensors if t.shape[-1] == width), None)

    @property
    def count(self) -> int:
        """How many vectors (token places) it takes in a prompt."""
        return int(self.tensors[0].shape[0])


def read_embedding(path: Path, name: str) -> Embedding:
    """Read an embedding file (torch); raises ``ValueError`` naming the file when it is not one."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    try:
        if path.suffix.lower() in (".safetensors", ".sft"):
            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path.name}: holds Python objects beyond tensors, which gouache will not unpickle "
                         f"({error}); convert it to .safetensors") from None
    except Exception as error:  # noqa: BLE001 - any reading failure is "not a readable file"
        raise ValueError(f"{path.name}: not a readable embedding file ({type(error).__name__}: {error})") from None
    tensors = [t.detach().float() for t in _embedding_tensors(data, path.name)]
    tensors = [t.reshape(1, -1) if t.dim() == 1 else t.reshape(-1, t.shape[-1]) for t in tensors]
    if len({t.shape[0] for t in tensors}) != 1:
        raise ValueError(f"{path.name}: its tensors hold different numbers of vectors "
                         f"({', '.join(str(tuple(t.shape)) for t in tensors)})")
    return Embedding(name, tuple(tensors))


def _embedding_tensors(data: Any, file: str) -> list[Any]:
    """The vector tensors of a loaded embedding file (values are tensors or shape stand-ins)."""
    if not isinstance(data, dict):
        raise ValueError(f"{file}: holds a {type(data).__name__}, not an embedding")
    params = data.get("string_to_param")
    if isinstance(params, dict) and params:
        return [params["*"] if "*" in params else next(iter(params.values()))]
    if "emb_params" in data:
        return [data["emb_params"]]
    pair = [data[key] for key in _PAIR_KEYS if key in data]
    if pair:
        return pair
    tensors = [value for value in data.values() if hasattr(value, "shape")]
    if len(tensors) == 1 and len(tensors[0].shape) in (1, 2):
        return tensors
    keys = ", ".join(map(str, list(data)[:8]))
    raise ValueError(f"{file}: not a textual-inversion embedding (no string_to_param, emb_params, clip_l/clip_g "
                     f"or single tensor; keys: {keys})")


# -- names and shapes without torch ------------------------------------------------------------------


class _Shape:
    """Stands in for a tensor: only its shape was read."""

    def __init__(self, shape: Iterable[int]) -> None:
        self.shape = tuple(int(n) for n in shape)


class _ShapeUnpickler(pickle.Unpickler):
    """Reads a torch zip checkpoint's ``data.pkl`` into plain values, each tensor a :class:`_Shape`.

    Only the few globals a saved tensor needs are answered (with stand-ins that never touch storage);
    anything else is refused, so describing a file runs none of its code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, *rest: _Shape(size)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *rest: data
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor")

    def persistent_load(self, pid: Any) -> Any:
        return pid


def _pickled_shapes(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickled = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickled is None:
            raise ValueError("not a zip-format torch file")
        with archive.open(pickled) as handle:
            return _ShapeUnpickler(handle).load()


def describe_embedding(path: Path, header: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``gouache models`` says of an embedding: vectors, widths and encoders, from names and shapes only.

    ``header`` is the file's safetensors header when the caller has read it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"format": suffix.lstrip("."), "kind": "embedding"}
    try:
        if header is not None:
            data: Any = {k: _Shape(v.get("shape", [])) for k, v in header.items() if k != "__metadata__"}
        elif zipfile.is_zipfile(path):
            data = _pickled_shapes(path)
        else:
            return {**info, "problem": "an old (non-zip) torch file: its shapes are known only once loaded"}
        shapes = [tuple(t.shape) for t in _embedding_tensors(data, path.name)]
    except (ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError) as error:
        return {**info, "problem": str(error)}
    widths = [shape[-1] for shape in shapes if shape]
    vectors = 1 if shapes and len(shapes[0]) == 1 else (shapes[0][0] if shapes and shapes[0] else 0)
    return {**info, "vectors": vectors, "widths": widths,
            "encoders": [ENCODER_NAMES.get(width, f"width {width}") for width in widths]}
