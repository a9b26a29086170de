"""Stop a long forward pass when the run is interrupted, without changing what it computes.

A VAE decode of a large image or a whole-image upscale is one call that can take tens of seconds on
a CPU. :func:`interruptible` asks ``check`` (a node's ``ctx.check_interrupt``) before every
weight-bearing layer runs, so an interrupt lands within one layer; the layers themselves, and so
the result, are untouched. Code handed no context (reading a model's files) calls
:func:`check_running_node` between long steps: a model of several files stops between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def interruptible(modules: Iterable[Any], check: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, call ``check()`` before each layer of ``modules`` that holds weights."""
    if check is None:
        yield
        return
    handles = []
    seen: set[int] = set()
    for module in modules:
        if module is None:
            continue
        for layer in module.modules():
            if id(layer) in seen or not any(True for _ in layer.parameters(recurse=False)):
                continue
            seen.add(id(layer))
            handles.append(layer.register_forward_pre_hook(lambda *_: check()))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_running_node() -> None:
    """Raise ``Interrupted`` if the node running in this thread has been asked to stop (no-op outside a run)."""
    from gouache.engine import running_context

    ctx = running_context()
    if ctx is not None:
        ctx.check_interrupt()
