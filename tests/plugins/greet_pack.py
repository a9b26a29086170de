"""A toy third-party pack for the plugin tests: text nodes only, so it needs no torch."""

from __future__ import annotations

from gouache.engine import Input, Node, Output, SocketType, hookimpl


class Greet(Node):
    """Greet someone by name."""

    type_name = "Greet"
    category = "toy/text"
    inputs = [Input("name", "STRING", default="world")]
    outputs = [Output("text", "GREETING")]

    def run(self, ctx, name):
        return {"text": f"hello, {name}"}


class Shout(Node):
    """An output node: print a greeting in capitals."""

    type_name = "Shout"
    category = "toy/text"
    output_node = True
    inputs = [Input("text", "GREETING")]
    outputs = []

    def run(self, ctx, text):
        print(text.upper())
        return {}


@hookimpl
def gouache_register_types():
    return [SocketType("GREETING", "#ff66aa", description="A greeting.")]


@hookimpl
def gouache_register_nodes():
    return [Greet, Shout]
