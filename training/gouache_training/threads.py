"""Choose the number of torch CPU threads while training, by timing the alternatives now and then.

On the 2-core build machine other jobs come and go; when one holds a core, a 2-thread torch job
waits at every parallel barrier and measured several times slower than a 1-thread one. So the
count is re-chosen from measured step times instead of being fixed up front.
"""

from __future__ import annotations

import time

import torch


class ThreadGovernor:
    """Call `step()` once per optimizer step; it switches `torch.set_num_threads` to the faster count."""

    def __init__(self, choices: tuple[int, ...] | None = None, window: int = 6, every: int = 300) -> None:
        # Default: one thread or however many the command line asked for.
        self.choices = choices or tuple(sorted({1, torch.get_num_threads()}))
        self.window = window
        self.every = every
        self.current = min(self.choices)  # the safer choice while other jobs may hold a core
        torch.set_num_threads(self.current)
        self._last = time.monotonic()
        self._steps = 0
        self._times: dict[int, list[float]] = {c: [] for c in self.choices}
        self._probing: int | None = None

    def step(self) -> None:
        """Record the duration of the step that just ended and maybe change the thread count."""
        now = time.monotonic()
        duration, self._last = now - self._last, now
        self._steps += 1
        running = self._probing if self._probing is not None else self.current
        times = self._times[running]
        times.append(duration)
        del times[: -self.window]
        if self._probing is not None and len(times) >= self.window:
            # Probe over: keep whichever count had the shorter median step.
            probe, base = sorted(times)[len(times) // 2], sorted(self._times[self.current])[len(self._times[self.current]) // 2]
            if probe < base:
                self.current = self._probing
            self._probing = None
            torch.set_num_threads(self.current)
        elif self._probing is None and self._steps % self.every == 0 and len(self._times[self.current]) >= self.window:
            others = [c for c in self.choices if c != self.current]
            if others:
                self._probing = others[0]
                self._times[self._probing] = []
                torch.set_num_threads(self._probing)

    def reset_clock(self) -> None:
        """Forget the time spent outside training steps (evaluation, checkpoints)."""
        self._last = time.monotonic()
