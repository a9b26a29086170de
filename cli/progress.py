"""A tqdm progress bar on stderr, driven by the engine's run events."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gouache.engine.events import Event

if TYPE_CHECKING:  # imported with the first bar: `gouache serve` and `--quiet` runs never draw one
    from tqdm import tqdm


class Progress:
    """A progress bar on stderr: nodes done out of nodes planned, and the running node's steps."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        """Advance, describe or close the bar for one event (subscribe this to an engine)."""
        if not self.enabled:
            return
        data = event.data
        if event.type == "started":
            from tqdm import tqdm

            self.bar = tqdm(total=len(data["nodes"]), unit="node", file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        elif self.bar is None:
            return
        elif event.type in ("node_cached", "node_finished"):
            self.bar.update(1)
        elif event.type == "node_started":
            self.bar.set_description(f"{data['node']} ({data['type']})")
        elif event.type == "progress":
            self.bar.set_postfix_str(f"step {data['value']}/{data['max']}")
        elif event.type in ("finished", "interrupted", "node_error"):
            self.bar.close()
            self.bar = None
