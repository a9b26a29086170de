"""Settings of rectified-flow models (SD 3.x, Flux.1) that travel with their handles."""

from __future__ import annotations

from dataclasses import replace

from gouache.engine import Input, Node, Output


class FluxGuidance(Node):
    """Set Flux.1 dev's distilled guidance strength on a conditioning (3.5 by default; schnell ignores it)."""

    type_name = "FluxGuidance"
    category = "conditioning"
    inputs = [Input("conditioning", "CONDITIONING"),
              Input("guidance", "FLOAT", default=3.5, min=0.0, max=100.0, step=0.1)]
    outputs = [Output("conditioning", "CONDITIONING")]

    def run(self, ctx, conditioning, guidance):
        return {"conditioning": replace(conditioning, guidance=float(guidance))}


class FlowShift(Node):
    """Shift a flow model's noise schedule toward high noise by ``shift`` (SD 3.x uses 3.0).

    For Flux.1 it replaces the shift computed from the image size by this fixed one. In ComfyUI's convention
    it is ``ModelSamplingSD3``'s shift, and for Flux.1 dev ``ModelSamplingFlux``'s with ``mu = ln(shift)``.
    """

    type_name = "FlowShift"
    category = "sampling"
    inputs = [Input("model", "MODEL"), Input("shift", "FLOAT", default=3.0, min=0.0, max=100.0, step=0.01)]
    outputs = [Output("model", "MODEL")]

    def run(self, ctx, model, shift):
        overrides = dict(model.sampling)
        overrides.update(shift=float(shift), use_dynamic_shifting=False)
        return {"model": replace(model, sampling=tuple(sorted(overrides.items())))}
