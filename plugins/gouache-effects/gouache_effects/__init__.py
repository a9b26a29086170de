"""gouache-effects: image effect nodes and a colour-picker widget, built on gouache's public API.

The pack is found through its ``gouache`` entry point (``effects = "gouache_effects"``); this
module implements the hooks.
"""

from __future__ import annotations

from pathlib import Path

from gouache.engine import WebExtension, hookimpl

from gouache_effects.nodes import NODES

WEB = Path(__file__).parent / "web"

__all__ = ["NODES", "gouache_register_nodes", "gouache_register_web_extensions"]


@hookimpl
def gouache_register_nodes():
    """The effect nodes; they work on IMAGE, which gouache's built-in pack registers."""
    return NODES


@hookimpl
def gouache_register_web_extensions():
    """The colour picker that ColorGrade's ``tint`` input uses in the editor."""
    return [WebExtension("gouache-effects", WEB, scripts=("effects.js",), styles=("effects.css",))]
