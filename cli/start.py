"""The ``gouache`` console script's first module: it pauses the cyclic garbage collector while the command's
modules import.

A command imports the engine, pydantic's machinery and the node pack's classes: objects that live as long as
the process. Collections during those imports only walk them again (about 8 ms of `gouache serve`'s 250 ms
start, docs/benchmarks.md). ``gouache.cli.main.main`` then freezes what the imports made, so later
collections skip it too; a program calling ``gouache.cli.main.main(argv)`` itself keeps its collector as
it was.
"""

from __future__ import annotations

import gc


def main() -> int:
    """Entry point of the ``gouache`` console script."""
    gc.disable()
    try:
        from gouache.cli.main import main as command
    finally:
        gc.enable()
    return command()
