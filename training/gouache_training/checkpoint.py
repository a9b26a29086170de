"""Resumable training state: a wall-clock/step budget and periodic checkpoints under `.train/`.

Sessions on the build machine are cut off without warning, so every stage saves its state every
few minutes and a re-run continues from it. The budget counts time across resumes, which keeps
learning-rate schedules that depend on progress the same whether or not a run was interrupted.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Budget:
    """Stop after `steps` optimizer steps or `minutes` of training time, whichever comes first."""

    steps: int | None
    minutes: float | None
    step: int = 0
    elapsed: float = 0.0  # seconds of training time, summed over resumes
    _started: float = field(default_factory=time.monotonic)
    _base: float = 0.0

    def resume(self, step: int, elapsed: float) -> None:
        """Continue counting from a checkpoint."""
        self.step, self._base, self.elapsed = step, elapsed, elapsed
        self._started = time.monotonic()

    def tick(self) -> None:
        """Record one finished optimizer step."""
        self.step += 1
        self.elapsed = self._base + time.monotonic() - self._started

    @property
    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1]."""
        parts = []
        if self.steps:
            parts.append(self.step / self.steps)
        if self.minutes:
            parts.append(self.elapsed / (60 * self.minutes))
        return min(1.0, max(parts)) if parts else 0.0

    @property
    def done(self) -> bool:
        """Whether the budget is spent."""
        return self.progress >= 1.0


def lr_factor(budget: Budget, warmup_steps: int, decay_from: float, floor: float = 0.1) -> float:
    """Linear warm-up, constant, then a cosine decay to `floor` over the last part of the budget."""
    warm = min(1.0, (budget.step + 1) / max(1, warmup_steps))
    p = budget.progress
    if p <= decay_from:
        return warm
    t = (p - decay_from) / max(1e-8, 1 - decay_from)
    return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


class Checkpointer:
    """Saves a stage's state to one file atomically, at most every `every_s` seconds."""

    def __init__(self, path: Path, every_s: float = 300.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None when the stage starts fresh."""
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any]) -> None:
        """Write the state now (to a temporary file first, so a kill never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether enough time has passed since the last save."""
        return time.monotonic() - self._last >= self.every_s


def device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def log(path: Path, message: str) -> None:
    """Print a line and append it to a stage's log file."""
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(line + "\n")
