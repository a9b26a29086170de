"""A toy node pack for the engine tests: arithmetic on numbers, no torch anywhere."""

from __future__ import annotations

from gouache.engine import CachePolicy, Input, InputError, Node, Output, SocketType, hookimpl


class Number(Node):
    """Emit a number."""

    type_name = "Number"
    category = "toy"
    inputs = [Input("value", "FLOAT", default=0.0, min=-1e9, max=1e9)]
    outputs = [Output("value", "FLOAT")]

    def run(self, ctx, value):
        return {"value": value}


class Int(Node):
    """Emit a whole number."""

    type_name = "Int"
    category = "toy"
    inputs = [Input("value", "INT", default=0, min=-1000, max=1000)]
    outputs = [Output("value", "INT")]

    def run(self, ctx, value):
        return {"value": value}


class Add(Node):
    """Add two numbers."""

    type_name = "Add"
    category = "toy"
    inputs = [Input("a", "FLOAT", default=0.0), Input("b", "FLOAT", default=0.0)]
    outputs = [Output("sum", "FLOAT")]

    def run(self, ctx, a, b):
        return {"sum": a + b}


class Sum(Node):
    """Add up to four optional numbers (a fan-in)."""

    type_name = "Sum"
    category = "toy"
    inputs = [Input(name, "FLOAT", optional=True) for name in ("a", "b", "c", "d")]
    outputs = [Output("sum", "FLOAT")]

    def run(self, ctx, **values):
        return {"sum": sum(value for value in values.values() if value is not None)}


class Scale(Node):
    """Multiply a number by a factor chosen from a list, in a mode."""

    type_name = "Scale"
    category = "toy"
    inputs = [
        Input("x", "FLOAT", link="wire"),
        Input("factor", "FLOAT", default=1.0, choices=(0.5, 1.0, 2.0)),
        Input("label", "STRING", default="", multiline=True),
    ]
    outputs = [Output("x", "FLOAT")]

    def run(self, ctx, x, factor, label):
        return {"x": x * factor}


class Blob(Node):
    """A custom socket type's producer."""

    type_name = "Blob"
    category = "toy"
    inputs = [Input("size", "INT", default=4, min=0, max=1_000_000, step=1)]
    outputs = [Output("blob", "BLOB")]

    def run(self, ctx, size):
        return {"blob": bytes(size)}


class BlobSize(Node):
    """Measure a blob."""

    type_name = "BlobSize"
    category = "toy"
    inputs = [Input("blob", "BLOB")]
    outputs = [Output("size", "INT")]

    def run(self, ctx, blob):
        return {"size": len(blob)}


class Record(Node):
    """An output node: appends what it sees to a list the test holds."""

    type_name = "Record"
    category = "toy"
    output_node = True
    inputs = [Input("value", "*"), Input("seed", "INT", default=0, seed=True, min=0, max=2**32 - 1)]
    outputs = []
    log: list = []

    def run(self, ctx, value, seed):
        Record.log.append(value)
        return {}


class Fail(Node):
    """Raise an error at run time."""

    type_name = "Fail"
    category = "toy"
    inputs = [Input("x", "FLOAT", default=0.0)]
    outputs = [Output("x", "FLOAT")]

    def run(self, ctx, x):
        raise RuntimeError("this node always fails")


class Clock(Node):
    """Not deterministic: a counter that moves on every run."""

    type_name = "Clock"
    category = "toy"
    cache = CachePolicy.NEVER
    inputs = []
    outputs = [Output("tick", "FLOAT")]
    ticks = 0

    def run(self, ctx):
        Clock.ticks += 1
        return {"tick": float(Clock.ticks)}


class Slow(Node):
    """Report progress over many steps, checking for interruption at each."""

    type_name = "Slow"
    category = "toy"
    inputs = [Input("x", "FLOAT", default=0.0), Input("steps", "INT", default=5, min=1, max=1000)]
    outputs = [Output("x", "FLOAT")]
    on_step = None

    def run(self, ctx, x, steps):
        for step in range(steps):
            if Slow.on_step:
                Slow.on_step(step)
            ctx.progress(step + 1, steps)
        return {"x": x}


class ReadFile(Node):
    """Read a text file; its content is external state, so it is fingerprinted."""

    type_name = "ReadFile"
    category = "toy"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("path", "STRING")]
    outputs = [Output("text", "STRING")]

    def fingerprint(self, ctx, path):
        import os

        stat = os.stat(path)
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def run(self, ctx, path):
        with open(path) as handle:
            return {"text": handle.read()}


class Span(Node):
    """The length of a span from ``start`` to ``stop``, counted in whole ``unit`` steps."""

    type_name = "Span"
    category = "toy"
    inputs = [Input("start", "INT", default=0), Input("stop", "INT", default=8, min=0, max=4096, step=8),
              Input("unit", "INT", default=1, min=0, max=64)]
    outputs = [Output("length", "INT")]

    def check(self, values):
        problems = []
        if "start" in values and "stop" in values and values["start"] > values["stop"]:
            problems.append(InputError("stop", f"must not be below start ({values['start']})", "below_start"))
        if values.get("unit") == 0:
            problems.append(InputError("unit", "must not be 0: a span is counted in units", "zero"))
        return problems

    def run(self, ctx, start, stop, unit):
        if unit == 0:
            raise InputError("unit", "must not be 0: a span is counted in units", "zero")
        return {"length": (stop - start) // unit}


NODES = [Number, Int, Add, Sum, Scale, Blob, BlobSize, Record, Fail, Clock, Slow, ReadFile, Span]


@hookimpl
def gouache_register_types():
    return [SocketType("BLOB", "#aa00aa")]


@hookimpl
def gouache_register_nodes():
    return NODES
