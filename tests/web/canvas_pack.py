"""A node with a full 64-bit seed for the canvas tests (the toy packs' seeds stop at 2**32 - 1)."""

from __future__ import annotations

from gouache.engine import Input, Node, Output, hookimpl

MAX_SEED = 2**64 - 1


class Noise(Node):
    """Pass ``seed`` through as a float: the editor's seed widget with the server's real limits."""

    type_name = "Noise"
    category = "web/canvas"
    inputs = [Input("seed", "INT", default=0, min=0, max=MAX_SEED, seed=True),
              Input("strength", "FLOAT", default=1.0, min=0.0, max=100.0, step=0.01)]
    outputs = [Output("seed", "FLOAT")]

    def run(self, ctx, seed, strength):
        return {"seed": float(seed) * strength}


@hookimpl
def gouache_register_nodes():
    return [Noise]
