"""The one resumable training loop that every stage configures: budget, checkpoints, logging, evaluation.

A stage supplies the optimizer, a loss function that draws its own batch from a generator seeded
by the step number, a learning-rate schedule, the objects whose state a checkpoint holds, and
optionally a hook run after each step (an EMA update) and an evaluation hook. The loop owns the
rest: it resumes from `work/<stage>/state.pt`, saves there every few minutes or steps, logs to
`work/<stage>.log`, and stops when the step or time budget is spent.

Sessions on a training machine can be cut off without warning, so a re-run continues from the last
checkpoint. The checkpoint holds torch's random state too, and the budget counts time across
resumes: a run stopped and resumed on a step budget ends with the weights an uninterrupted run
gives, and a schedule that depends on progress is the same either way.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .threads import ThreadGovernor

CHECKPOINT_MINUTES = 5.0


class Stateful(Protocol):
    """Anything a checkpoint can hold: modules, optimizers, small trackers."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Run:
    """What the command line decides for a stage: folders, seed, budget and how often to checkpoint."""

    work: Path
    out: Path
    seed: int = 0
    steps: int | None = None
    minutes: float | None = None
    checkpoint_minutes: float = CHECKPOINT_MINUTES
    checkpoint_steps: int | None = None

    def budget(self) -> Budget:
        """A fresh budget of this run's steps and minutes."""
        return Budget(self.steps, self.minutes)


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


@dataclass(frozen=True)
class Schedule:
    """Learning rate `lr` times `lr_factor`: warm-up, constant, cosine decay to `floor` from `decay_from`."""

    lr: float
    warmup_steps: int
    decay_from: float
    floor: float = 0.1

    def __call__(self, budget: Budget) -> float:
        """The learning rate for the next step."""
        return self.lr * lr_factor(budget, self.warmup_steps, self.decay_from, self.floor)


class Checkpointer:
    """Saves a stage's state to one file atomically, every `every_s` seconds or `every_steps` steps."""

    def __init__(self, path: Path, every_s: float = 60 * CHECKPOINT_MINUTES, every_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.every_steps = every_steps
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

    def due(self, step: int) -> bool:
        """Whether enough time or enough steps have passed since the last save."""
        if self.every_steps and step % self.every_steps == 0:
            return True
        return time.monotonic() - self._last >= self.every_s


@dataclass
class Loop:
    """One stage's training: resumable, bounded by a budget, logged, evaluated now and then.

    `loss(budget)` returns the loss of step `budget.step` (steps count from 0), drawing its batch
    from a generator seeded by that number so the data stream survives resumes. `state` names what
    a checkpoint holds besides the optimizer, the budget and torch's random state. `after_step(n)`
    runs after the n-th optimizer step (EMA updates). `evaluate(n)` runs every `eval_every` steps,
    once at the end unless the last step was just evaluated, and, with `evaluate_start`, before
    the first step of a fresh run.
    """

    name: str
    run: Run
    optimizer: torch.optim.Optimizer
    loss: Callable[[Budget], torch.Tensor]
    schedule: Schedule
    state: dict[str, Stateful]
    clip: Sequence[torch.nn.Parameter] | None = None  # gradient norm clipped to 1 over these
    after_step: Callable[[int], None] | None = None
    evaluate: Callable[[int], None] | None = None
    eval_every: int = 0
    evaluate_start: bool = False
    log_every: int = 50

    @property
    def logfile(self) -> Path:
        """`work/<stage>.log`."""
        return self.run.work / f"{self.name}.log"

    def log(self, message: str) -> None:
        """A line in this stage's log."""
        log(self.logfile, message)

    def start(self) -> tuple[Budget, Checkpointer, bool]:
        """The budget and checkpointer, resumed from the last checkpoint when there is one."""
        budget = self.run.budget()
        ckpt = Checkpointer(self.run.work / self.name / "state.pt", 60 * self.run.checkpoint_minutes, self.run.checkpoint_steps)
        saved = ckpt.load()
        if saved is None:
            return budget, ckpt, False
        for key, obj in self.state.items():
            obj.load_state_dict(saved[key])
        self.optimizer.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        budget.resume(saved["step"], saved["elapsed"])
        self.log(f"{self.name}: resumed at step {budget.step}, {budget.elapsed / 60:.1f} min")
        return budget, ckpt, True

    def save(self, ckpt: Checkpointer, budget: Budget) -> None:
        """Checkpoint everything a resumed run needs to continue as if it had never stopped."""
        saved = {key: obj.state_dict() for key, obj in self.state.items()}
        saved.update(
            opt=self.optimizer.state_dict(), step=budget.step, elapsed=budget.elapsed, rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )
        ckpt.save(saved)

    def __call__(self) -> Budget:
        """Train until the budget is spent (or continue a run that was cut off); returns the budget."""
        budget, ckpt, resumed = self.start()
        if self.evaluate is not None and self.evaluate_start and not resumed:
            self.evaluate(0)
        threads = ThreadGovernor()
        evaluated = -1
        while not budget.done:
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule(budget)
            loss = self.loss(budget)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(self.clip, 1.0)
            self.optimizer.step()
            budget.tick()
            threads.step()
            if self.after_step is not None:
                self.after_step(budget.step)
            if budget.step % self.log_every == 0:
                lr = self.optimizer.param_groups[0]["lr"]
                self.log(
                    f"{self.name} step {budget.step} loss {loss.item():.4f} lr {lr:.2e}"
                    f" {budget.elapsed / 60:.1f} min {threads.current}t"
                )
            if self.evaluate is not None and self.eval_every and budget.step % self.eval_every == 0:
                self.evaluate(budget.step)
                evaluated = budget.step
                threads.reset_clock()
            if ckpt.due(budget.step):
                self.save(ckpt, budget)
                threads.reset_clock()
        if self.evaluate is not None and evaluated != budget.step:
            self.evaluate(budget.step)
        self.save(ckpt, budget)
        self.log(f"{self.name}: trained {budget.step} steps, {budget.elapsed / 60:.1f} min")
        return budget


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
