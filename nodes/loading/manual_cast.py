"""Run a model whose weights stay in their file's dtype (bf16, fp16, fp8) in another compute dtype.

A 12-billion-parameter Flux transformer is 24 GB in bf16 and 12 GB in fp8; an fp32 copy would be 48 GB.
So weights are kept as the file stores them and each layer casts its own weights, for the length of
its own forward call, to the compute dtype (what ComfyUI calls "manual cast"). Only one layer's
weights exist in the compute dtype at a time.

:func:`manual_cast` wraps the ``forward`` of every module that holds floating-point parameters or
buffers of another dtype: the call's floating-point tensor arguments are cast to the compute dtype
and the module's own tensors are swapped for cast copies while it runs. Modules that read a child's
weights in their own ``forward`` (transformers' T5 feed-forward blocks compare the output layer's
dtype with their activations) are wrapped as a whole, so the child's weights are already cast when
the parent looks.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)
# Modules whose forward inspects a child's weight dtype: cast the whole subtree for their call.
_WHOLE = ("T5DenseGatedActDense", "T5DenseActDense")


def _cast_value(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast_value(v, dtype) for v in value)
    if isinstance(value, list):
        return [_cast_value(v, dtype) for v in value]
    return value


def _own_tensors(module: nn.Module, recurse: bool) -> list[tuple[nn.Module, str, str]]:
    """(owner, kind, name) of the floating-point parameters and buffers ``module`` holds."""
    owners = module.modules() if recurse else [module]
    found = []
    for owner in owners:
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(owner, kind).items():
                if tensor is not None and tensor.is_floating_point():
                    found.append((owner, kind, name))
    return found


def _wrap(module: nn.Module, dtype: torch.dtype, recurse: bool) -> None:
    original = module.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        tensors = _own_tensors(module, recurse)
        saved = []
        for owner, kind, name in tensors:
            stored = getattr(owner, kind)[name]
            saved.append((owner, kind, name, stored))
            # Plain tensors: nn.Module.__getattr__ finds them in the dict just like parameters.
            getattr(owner, kind)[name] = stored.detach().to(dtype) if stored.dtype != dtype else stored
        try:
            return original(*_cast_value(args, dtype), **{k: _cast_value(v, dtype) for k, v in kwargs.items()})
        finally:
            for owner, kind, name, stored in saved:
                getattr(owner, kind)[name] = stored

    module.forward = forward
    module._gouache_compute_dtype = dtype  # type: ignore[attr-defined]


def storage_dtypes(module: nn.Module) -> set[torch.dtype]:
    """The dtypes the module's floating-point weights are stored in."""
    return {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}


def manual_cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Make ``module`` compute in ``dtype`` while its weights keep their stored dtype; returns it.

    Does nothing when every weight is stored in ``dtype`` already. Calling it again with another
    dtype is refused: the wrappers close over the first one.
    """
    existing = getattr(module, "_gouache_compute_dtype", None)
    if existing is not None:
        if existing != dtype:
            raise ValueError(f"{type(module).__name__} already computes in {existing}, not {dtype}")
        return module
    module._gouache_compute_dtype = dtype  # type: ignore[attr-defined]
    if storage_dtypes(module) <= {dtype}:
        return module
    covered: set[int] = set()
    for sub in module.modules():
        if id(sub) in covered:
            continue
        if type(sub).__name__ in _WHOLE:
            _wrap(sub, dtype, recurse=True)
            covered.update(id(m) for m in sub.modules())
            continue
        if any(t.dtype != dtype for _, _, t in _stored(sub)):
            _wrap(sub, dtype, recurse=False)
    return module


def _stored(module: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    return [(kind, name, getattr(module, kind)[name]) for _, kind, name in _own_tensors(module, recurse=False)]


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in: the one :func:`manual_cast` set, else its first weight's."""
    dtype = getattr(module, "_gouache_compute_dtype", None)
    if dtype is not None:
        return dtype
    return next(module.parameters()).dtype
