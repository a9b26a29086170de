"""The weight update of each LoRA-family layer kind, as its authors define it.

Every adapter turns a layer's factors into a change of one parameter (a weight, or a bias for
full differences) and applies it at a strength: ``apply(W, s)`` returns the patched tensor in fp32.
For additive kinds that is ``W + s * delta``; DoRA rescales the patched weight per channel, so it
needs ``W`` itself. The formulas follow LyCORIS (``lycoris/functional``) and peft:

* LoRA / LoCon: ``delta = alpha/rank * up @ down`` (convolutions flattened to
  ``[out, in*k*k]``); with a Tucker core ``mid`` (LoCon ``use_tucker``):
  ``delta[p, r, k, l] = alpha/rank * sum_ij mid[i, j, k, l] up[p, i] down[j, r]``.
* LoHa: ``delta = alpha/rank * (w1a @ w1b) * (w2a @ w2b)`` (Hadamard product), rank = rows of
  ``w1b``; with CP cores ``t1``/``t2`` each factor is ``einsum('ijkl,jr,ip->prkl', t, wb, wa)``.
* LoKr: ``delta = scale * kron(w1, w2)`` where ``w1`` is given or ``w1a @ w1b``, ``w2`` is given,
  ``w2a @ w2b`` or the Tucker form with ``t2``; ``scale = alpha/rank`` when a factor is split
  into a/b (rank = rows of its ``b``), 1 when both are whole.
* DoRA (``dora_scale`` / peft ``lora_magnitude_vector``) on any of the above: ``W' = W + delta``;
  ``W_dora = m * W' / ||W'||`` with the norm per output channel when ``m`` has one value per output
  (peft, kohya, LyCORIS ``wd_on_out``) or per input channel when it has one per input (older
  LyCORIS); at strength ``s`` the weight is ``W + s * (W_dora - W)`` (LyCORIS, ComfyUI).
* Full differences (``.diff`` / ``.diff_b``): ``delta`` is the tensor itself.

Nothing here imports torch at module level; the adapters hold tensors read by ``gouache.nodes.lora``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _scale(alpha: float | None, rank: int) -> float:
    """alpha/rank; a file without alpha means alpha = rank (kohya, peft, LyCORIS)."""
    return 1.0 if alpha is None else float(alpha) / rank


def _tucker(core: Any, wa: Any, wb: Any) -> Any:
    """LyCORIS's ``rebuild_tucker``: ``einsum('i j k l, j r, i p -> p r k l', core, wb, wa)``."""
    import torch

    return torch.einsum("i j ..., j r, i p -> p r ...", core.float(), wb.float().flatten(1), wa.float().flatten(1))


class Adapter(ABC):
    """One layer of a LoRA-family file: a change to one parameter of one module."""

    param = "weight"
    """Which parameter of the module it changes (``weight``, or ``bias`` for ``.diff_b``)."""
    kind = ""

    @abstractmethod
    def tensors(self) -> tuple[Any, ...]:
        """Every tensor it holds (for memory accounting)."""

    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of its update as the factors give it (its element count must match the parameter's)."""

    @abstractmethod
    def delta(self, shape: Any) -> Any:
        """The update, fp32, reshaped to ``shape``."""

    def mismatch(self, shape: tuple[int, ...]) -> str | None:
        """Why it cannot patch a parameter of ``shape``, or ``None`` when it can."""
        own = self.shape()
        if _numel(own) != _numel(shape) or own[0] != shape[0]:
            return f"its update is {list(own)} but the model's {self.param} is {list(shape)}"
        return None

    def apply(self, weight: Any, strength: float) -> Any:
        """``weight`` (fp32) patched at ``strength``."""
        return weight + self.delta(weight.shape).to(weight.device) * strength


@dataclass(eq=False)
class LoraAdapter(Adapter):
    """LoRA, and LoCon on convolutions (with an optional Tucker core ``mid``)."""

    up: Any
    down: Any
    alpha: float | None = None
    mid: Any = None

    kind = "lora"

    def tensors(self) -> tuple[Any, ...]:
        return tuple(t for t in (self.up, self.down, self.mid) if t is not None)

    def shape(self) -> tuple[int, ...]:
        if self.mid is not None:
            return (self.up.shape[0], self.down.shape[1], *self.mid.shape[2:])
        return (self.up.shape[0], _numel(tuple(self.down.shape[1:])))

    def delta(self, shape: Any) -> Any:
        import torch

        up, down = self.up.float().flatten(1), self.down.float().flatten(1)
        if self.mid is None:
            update = up @ down
        else:
            update = torch.einsum("i j ..., p i, j r -> p r ...", self.mid.float(), up, down)
        return update.reshape(shape) * _scale(self.alpha, self.down.shape[0])


@dataclass(eq=False)
class LohaAdapter(Adapter):
    """LyCORIS LoHa: the Hadamard product of two low-rank products (CP cores ``t1``/``t2`` optional)."""

    w1a: Any
    w1b: Any
    w2a: Any
    w2b: Any
    alpha: float | None = None
    t1: Any = None
    t2: Any = None

    kind = "loha"

    def tensors(self) -> tuple[Any, ...]:
        return tuple(t for t in (self.w1a, self.w1b, self.w2a, self.w2b, self.t1, self.t2) if t is not None)

    def shape(self) -> tuple[int, ...]:
        if self.t1 is not None:
            return (self.w1a.shape[1], self.w1b.shape[1], *self.t1.shape[2:])
        return (self.w1a.shape[0], _numel(tuple(self.w1b.shape[1:])))

    def delta(self, shape: Any) -> Any:
        if self.t1 is not None:
            first, second = _tucker(self.t1, self.w1a, self.w1b), _tucker(self.t2, self.w2a, self.w2b)
        else:
            first = self.w1a.float() @ self.w1b.float().flatten(1)
            second = self.w2a.float() @ self.w2b.float().flatten(1)
        return (first * second).reshape(shape) * _scale(self.alpha, self.w1b.shape[0])


@dataclass(eq=False)
class LokrAdapter(Adapter):
    """LyCORIS LoKr: the Kronecker product of ``w1`` and ``w2``, either given whole or as a low-rank pair."""

    w1: Any = None
    w1a: Any = None
    w1b: Any = None
    w2: Any = None
    w2a: Any = None
    w2b: Any = None
    t2: Any = None
    alpha: float | None = None

    kind = "lokr"

    def tensors(self) -> tuple[Any, ...]:
        return tuple(t for t in (self.w1, self.w1a, self.w1b, self.w2, self.w2a, self.w2b, self.t2) if t is not None)

    def _w1_shape(self) -> tuple[int, ...]:
        return tuple(self.w1.shape) if self.w1 is not None else (self.w1a.shape[0], self.w1b.shape[1])

    def _w2_shape(self) -> tuple[int, ...]:
        if self.w2 is not None:
            return tuple(self.w2.shape)
        if self.t2 is not None:
            return (self.w2a.shape[1], self.w2b.shape[1], *self.t2.shape[2:])
        return (self.w2a.shape[0], *self.w2b.shape[1:])

    def shape(self) -> tuple[int, ...]:
        (a, b), w2 = self._w1_shape(), self._w2_shape()
        return (a * w2[0], b * _numel(tuple(w2[1:])))

    def delta(self, shape: Any) -> Any:
        import torch

        w1 = self.w1.float() if self.w1 is not None else self.w1a.float() @ self.w1b.float()
        if self.w2 is not None:
            w2 = self.w2.float()
        elif self.t2 is not None:
            w2 = _tucker(self.t2, self.w2a, self.w2b)
        else:
            w2 = (self.w2a.float() @ self.w2b.float().flatten(1)).reshape(self.w2a.shape[0], *self.w2b.shape[1:])
        while w1.dim() < w2.dim():
            w1 = w1.unsqueeze(-1)
        rank = self.w1b.shape[0] if self.w1b is not None else self.w2b.shape[0] if self.w2b is not None else None
        scale = 1.0 if rank is None else _scale(self.alpha, rank)
        return torch.kron(w1, w2.contiguous()).reshape(shape) * scale


@dataclass(eq=False)
class DiffAdapter(Adapter):
    """A full difference: ``.diff`` for a weight, ``.diff_b`` for a bias."""

    diff: Any
    param: str = "weight"

    kind = "diff"

    def tensors(self) -> tuple[Any, ...]:
        return (self.diff,)

    def shape(self) -> tuple[int, ...]:
        return tuple(self.diff.shape)

    def mismatch(self, shape: tuple[int, ...]) -> str | None:
        if tuple(self.diff.shape) != tuple(shape):
            return f"its difference is {list(self.diff.shape)} but the model's {self.param} is {list(shape)}"
        return None

    def delta(self, shape: Any) -> Any:
        return self.diff.float().reshape(shape)


@dataclass(eq=False)
class DoraAdapter(Adapter):
    """DoRA: another adapter's update, then each channel rescaled to the trained magnitude."""

    inner: Adapter
    magnitude: Any

    kind = "dora"

    def tensors(self) -> tuple[Any, ...]:
        return (*self.inner.tensors(), self.magnitude)

    def shape(self) -> tuple[int, ...]:
        return self.inner.shape()

    def _on_output_axis(self, shape: tuple[int, ...]) -> bool | None:
        """True: one magnitude per output channel; False: per input channel; None: neither."""
        magnitude = tuple(self.magnitude.shape)
        count = _numel(magnitude)
        if count == shape[0] and (len(magnitude) == 1 or magnitude[0] == shape[0]):
            return True
        if len(shape) > 1 and count == shape[1] and len(magnitude) > 1 and magnitude[0] == 1:
            return False
        return None

    def mismatch(self, shape: tuple[int, ...]) -> str | None:
        if (problem := self.inner.mismatch(shape)) is not None:
            return problem
        if self._on_output_axis(shape) is None:
            return (f"its DoRA magnitude is {list(self.magnitude.shape)}, "
                    f"neither per output nor per input of {list(shape)}")
        return None

    def delta(self, shape: Any) -> Any:
        return self.inner.delta(shape)

    def apply(self, weight: Any, strength: float) -> Any:
        import torch

        direction = weight + self.inner.delta(weight.shape).to(weight.device)
        magnitude = self.magnitude.float().to(weight.device)
        if self._on_output_axis(tuple(weight.shape)):
            norm = direction.flatten(1).norm(dim=1).reshape(-1, *[1] * (weight.dim() - 1))
        else:
            norm = direction.transpose(0, 1).flatten(1).norm(dim=1).reshape(1, -1, *[1] * (weight.dim() - 2))
        norm = norm.clamp_min(torch.finfo(torch.float32).tiny)
        decomposed = direction * (magnitude.reshape(norm.shape) / norm)
        return weight + (decomposed - weight) * strength
