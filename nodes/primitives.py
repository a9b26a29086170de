"""Primitive value nodes: one typed-in value, wired into any input of its type.

Any literal input (an INT, FLOAT, STRING or BOOLEAN widget) also takes a link of its type, so one
``Seed`` can drive several samplers and one ``PrimitiveInt`` several sizes; an INT also feeds FLOAT inputs.
Values arriving by link are not checked against the receiving input's range before the run (only
typed-in values are), so keep a primitive's value within what its consumers accept.
"""

from __future__ import annotations

from gouache.engine import Input, Node, Output
from gouache.nodes.support import MAX_SEED

INT_MIN, INT_MAX = -(2**63), 2**64 - 1


class Int(Node):
    """A whole number for any INT (or FLOAT) input."""

    type_name = "PrimitiveInt"
    category = "primitives"
    inputs = [Input("value", "INT", default=0, min=INT_MIN, max=INT_MAX, link="widget")]
    outputs = [Output("value", "INT")]

    def run(self, ctx, value):
        return {"value": value}


class Float(Node):
    """A number for any FLOAT input."""

    type_name = "PrimitiveFloat"
    category = "primitives"
    inputs = [Input("value", "FLOAT", default=0.0, step=0.01, link="widget")]
    outputs = [Output("value", "FLOAT")]

    def run(self, ctx, value):
        return {"value": float(value)}


class String(Node):
    """A line of text for any STRING input."""

    type_name = "PrimitiveString"
    category = "primitives"
    inputs = [Input("value", "STRING", default="", link="widget")]
    outputs = [Output("value", "STRING")]

    def run(self, ctx, value):
        return {"value": value}


class Text(Node):
    """Text over several lines (a prompt shared by several encoders) for any STRING input."""

    type_name = "PrimitiveText"
    category = "primitives"
    inputs = [Input("value", "STRING", default="", multiline=True, link="widget")]
    outputs = [Output("value", "STRING")]

    def run(self, ctx, value):
        return {"value": value}


class Boolean(Node):
    """True or false for any BOOLEAN input."""

    type_name = "PrimitiveBoolean"
    category = "primitives"
    inputs = [Input("value", "BOOLEAN", default=False, link="widget")]
    outputs = [Output("value", "BOOLEAN")]

    def run(self, ctx, value):
        return {"value": value}


class Seed(Node):
    """A seed for one or several samplers. Fixed, increment, decrement or randomise after each run is the
    editor's choice (the input is marked as a seed); the node outputs the value it is given."""

    type_name = "Seed"
    category = "primitives"
    inputs = [Input("seed", "INT", default=0, min=0, max=MAX_SEED, seed=True, link="widget")]
    outputs = [Output("seed", "INT")]

    def run(self, ctx, seed):
        return {"seed": seed}


PRIMITIVE_NODES = [Int, Float, String, Text, Boolean, Seed]
