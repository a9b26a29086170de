"""Node definitions are checked when they register, with errors naming the pack and the node."""

from __future__ import annotations

import pytest

from gouache.engine import DefinitionError, Engine, Input, Node, Output, SocketType, hookimpl
from gouache.engine.registry import Registry

import toy_pack


def make(name="Thing", inputs=(), outputs=(Output("x", "FLOAT"),), doc="A thing.", **attrs):
    def run(self, ctx, **kwargs):
        return {"x": 1.0}

    namespace = {"type_name": name, "inputs": list(inputs), "outputs": list(outputs), "__doc__": doc,
                 "run": run, **attrs}
    return type(name, (Node,), namespace)


def with_run(run, inputs) -> type[Node]:
    """A node class whose ``run`` is ``run``, to test the signature checks."""
    return type("Thing", (Node,), {"type_name": "Thing", "inputs": list(inputs), "outputs": [Output("x", "FLOAT")],
                                   "__doc__": "A thing.", "run": run})


def problems_of(node_class) -> str:
    registry = Registry()
    with pytest.raises(DefinitionError) as caught:
        registry.add_node(node_class, "mypack")
    assert caught.value.pack == "mypack"
    message = str(caught.value)
    assert "mypack" in message and repr(caught.value.node) in message
    return message


def test_a_valid_definition_registers_and_publishes_its_docstring():
    registry = Registry()
    registry.add_node(toy_pack.Scale, "toy")
    info = registry.infos()[0]
    assert info.type == "Scale" and info.description == "Multiply a number by a factor chosen from a list, in a mode."
    assert info.pack == "toy" and info.version == 1 and info.category == "toy"
    assert [spec.name for spec in info.inputs] == ["x", "factor", "label"]
    assert info.inputs[1].choices == (0.5, 1.0, 2.0) and info.inputs[2].multiline


@pytest.mark.parametrize("node_class, expected", [
    (make(inputs=[Input("n", "INT", default=50, min=0, max=10)]), "default 50 is above the maximum 10"),
    (make(inputs=[Input("n", "INT", default=-1, min=0, max=10)]), "default -1 is below the minimum 0"),
    (make(inputs=[Input("n", "INT", default=1.5)]), "default expects a whole number"),
    (make(inputs=[Input("m", "STRING", default="z", choices=("a", "b"))]), "'z' is not one of the choices"),
    (make(inputs=[Input("a", "INT"), Input("a", "FLOAT")]), "input 'a' is declared twice"),
    (make(outputs=[Output("x", "")]), "output 'x' has no type"),
    (make(outputs=[Output("x", "NOPE")]), "unknown socket type 'NOPE'"),
    (make(outputs=[Output("x", "INT"), Output("x", "INT")]), "output 'x' is declared twice"),
    (make(inputs=[Input("bad name", "INT")]), "must be a Python identifier"),
    (make(inputs=[Input("n", "INT", min=5, max=1)]), "min 5 is above max 1"),
    (make(inputs=[Input("s", "FLOAT", seed=True)]), "only an INT input can be a seed"),
    (make(inputs=[Input("s", "INT", multiline=True)]), "only a STRING input can be multiline"),
    (make(doc=None), "has no docstring"),
    (make(name=""), "type_name is empty"),
    (make(version=0), "version must be a positive integer"),
    (type("NoRun", (Node,), {"type_name": "NoRun", "__doc__": "x"}), "run() is not defined"),
    (make(inputs=[Input("n", "INT", step=0)]), "step must be above 0"),
    (make(inputs=[Input("n", "INT", step=2.5)]), "step must be above 0 (and whole for an INT input)"),
    (with_run(lambda self, ctx, n, extra: {"x": 1.0}, [Input("n", "INT")]), "takes extra, which is not a declared input"),
    (with_run(lambda self, ctx: {"x": 1.0}, [Input("n", "INT"), Input("m", "INT")]),
     "no parameter for the declared input(s) n, m; add them, or take **inputs"),
    (with_run(lambda self, ctx, *args: {"x": 1.0}, []), "takes *args"),
    (with_run(lambda self: {"x": 1.0}, []), "run() must take the run context first"),
])
def test_bad_definitions_are_refused_with_the_reason(node_class, expected):
    assert expected in problems_of(node_class)


def test_run_may_name_each_input_or_take_them_all():
    registry = Registry()
    registry.add_node(with_run(lambda self, ctx, n, m: {"x": 1.0}, [Input("n", "INT"), Input("m", "INT")]), "p")
    registry = Registry()
    registry.add_node(with_run(lambda self, ctx, n, **rest: {"x": 1.0}, [Input("n", "INT"), Input("m", "INT")]), "p")


def test_fingerprint_may_take_some_inputs_but_names_only_declared_ones():
    from gouache.engine import CachePolicy

    good = make(inputs=[Input("n", "INT")], cache=CachePolicy.FINGERPRINT, fingerprint=lambda self, ctx, n: "k")
    Registry().add_node(good, "p")
    bad = make(inputs=[Input("n", "INT")], cache=CachePolicy.FINGERPRINT, fingerprint=lambda self, ctx, path: "k")
    assert "fingerprint() takes path, which is not a declared input" in problems_of(bad)


def test_a_fingerprint_node_must_define_fingerprint():
    from gouache.engine import CachePolicy

    assert "fingerprint() is not defined" in problems_of(make(cache=CachePolicy.FINGERPRINT))


def test_a_type_name_is_never_silently_overwritten():
    registry = Registry()
    registry.add_node(toy_pack.Add, "first")
    with pytest.raises(DefinitionError, match="already registered by pack 'first'"):
        registry.add_node(make(name="Add"), "second")
    assert registry.get("Add") is toy_pack.Add and registry.pack_of("Add") == "first"


class _Duplicate:
    @hookimpl
    def gouache_register_nodes(self):
        return [make(name="Add")]


class _Bad:
    @hookimpl
    def gouache_register_nodes(self):
        return [make(name="Fine"), make(name="Broken", inputs=[Input("n", "INT", default=9, max=1)])]


def test_a_pack_with_a_bad_node_is_reported_and_the_others_keep_working(tmp_path):
    engine = Engine(packs={"toy": toy_pack, "dup": _Duplicate(), "bad": _Bad()}, entry_points=False, home=tmp_path)
    status = {report.name: report for report in engine.packs}
    assert status["toy"].status == "loaded" and "Add" in status["toy"].node_types
    assert status["dup"].status == "error" and "already registered by pack 'toy'" in status["dup"].error
    assert status["bad"].status == "error" and "'Broken'" in status["bad"].error
    # A pack registers all of its nodes or none of them.
    assert "Fine" not in engine.registry and engine.registry.pack_of("Add") == "toy"


def test_plugins_can_add_socket_types_and_a_conflicting_redefinition_is_an_error(tmp_path):
    class Conflict:
        @hookimpl
        def gouache_register_types(self):
            return [SocketType("BLOB", "#000000", converts_to=("INT",))]

    engine = Engine(packs={"toy": toy_pack, "conflict": Conflict()}, entry_points=False, home=tmp_path)
    assert "BLOB" in engine.registry.types
    conflict = next(report for report in engine.packs if report.name == "conflict")
    assert conflict.status == "error" and "BLOB" in conflict.error


def test_a_deprecated_node_says_so_in_its_published_info():
    registry = Registry()
    registry.add_node(make(name="Old", deprecated=True), "p")
    registry.add_node(make(name="New"), "p")
    assert {info.type: info.deprecated for info in registry.infos()} == {"New": False, "Old": True}
