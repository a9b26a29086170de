"""A test-only pack: a node that makes a seeded random LATENT, to feed the sampler arbitrary starts."""

from __future__ import annotations

from gouache.engine import Input, Node, Output, hookimpl


class RandomLatent(Node):
    """A [1, 4, side, side] latent drawn from ``torch.randn`` with ``seed``."""

    type_name = "RandomLatent"
    category = "test"
    inputs = [Input("seed", "INT", default=0), Input("side", "INT", default=8)]
    outputs = [Output("latent", "LATENT")]

    def run(self, ctx, seed, side):
        import torch

        return {"latent": {"samples": torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(seed))}}


@hookimpl
def gouache_register_nodes():
    return [RandomLatent]
