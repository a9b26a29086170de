"""Every hook a pack can implement, each on its own, with a toy pack (no torch)."""

from __future__ import annotations

import inspect
from pathlib import Path

from gouache.engine import Engine, ModelFolder, SocketType, WebExtension, WorkflowImporter, hookimpl, hookspecs

import greet_pack

REPO = Path(__file__).resolve().parents[2]


def engine_with(tmp_path: Path, **packs) -> Engine:
    return Engine(packs=packs, entry_points=False, home=tmp_path / "home")


def report(engine: Engine, name: str):
    return next(r for r in engine.packs if r.name == name)


def test_register_nodes_adds_node_types_attributed_to_the_pack(tmp_path):
    engine = engine_with(tmp_path, greet=greet_pack)
    assert report(engine, "greet").status == "loaded"
    assert report(engine, "greet").node_types == ["Greet", "Shout"]
    assert engine.registry.pack_of("Greet") == "greet"
    result = engine.run({"format": "gouache/1", "nodes": {
        "hi": {"type": "Greet", "inputs": {"name": "gouache"}},
        "out": {"type": "Shout", "inputs": {"text": {"node": "hi", "output": "text"}}}}})
    assert result.ok and result.outputs["hi"]["text"] == "hello, gouache"


def test_register_types_adds_socket_types_with_their_editor_colour(tmp_path):
    engine = engine_with(tmp_path, greet=greet_pack)
    greeting = engine.registry.types["GREETING"]
    assert (greeting.color, greeting.description) == ("#ff66aa", "A greeting.")
    # The type is what links are checked against: a GREETING output cannot feed a FLOAT input.
    assert not engine.registry.types.compatible("GREETING", "FLOAT")


def test_register_types_rejects_a_different_definition_of_a_taken_name(tmp_path):
    class Recolour:
        @hookimpl
        def gouache_register_types(self):
            return [SocketType("GREETING", "#000000")]

    engine = engine_with(tmp_path, greet=greet_pack, recolour=Recolour())
    assert report(engine, "recolour").status == "error"
    assert "already registered" in report(engine, "recolour").error
    assert engine.registry.types["GREETING"].color == "#ff66aa"


def test_register_model_folders_adds_a_model_kind_found_under_models(tmp_path):
    class ControlNets:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("controlnet", (".safetensors", ".pth"), description="ControlNet weights")]

    folder = tmp_path / "home" / "models" / "controlnet"
    folder.mkdir(parents=True)
    (folder / "canny.safetensors").write_bytes(b"0")
    (folder / "readme.txt").write_text("not a model")
    engine = engine_with(tmp_path, controlnets=ControlNets())
    assert engine.models.names("controlnet") == ["canny.safetensors"]
    assert engine.models.directories("controlnet")[0] == folder


def test_register_web_extensions_publishes_a_static_folder(tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "widget.js").write_text("export default function register(gouache) {}\n")

    class Widgets:
        @hookimpl
        def gouache_register_web_extensions(self):
            return [WebExtension("toy-widgets", static, scripts=("widget.js",))]

    engine = engine_with(tmp_path, widgets=Widgets())
    extension = engine.web_extensions["toy-widgets"]
    assert (extension.directory, extension.scripts) == (static, ("widget.js",))
    assert report(engine, "widgets").web_extensions == ["toy-widgets"]


def test_a_hook_returning_the_wrong_thing_is_reported_not_fatal(tmp_path):
    class NotAList:
        @hookimpl
        def gouache_register_model_folders(self):
            return "controlnet"

    class NotAnExtension:
        @hookimpl
        def gouache_register_web_extensions(self):
            return ["static/widget.js"]

    engine = engine_with(tmp_path, not_a_list=NotAList(), not_an_extension=NotAnExtension(), greet=greet_pack)
    assert "must return a list" in report(engine, "not_a_list").error
    assert "not a WebExtension" in report(engine, "not_an_extension").error
    assert report(engine, "greet").status == "loaded" and "Greet" in engine.registry


def test_every_hook_is_documented_in_the_plugin_guide():
    guide = (REPO / "docs" / "plugins.md").read_text()
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gouache_")]
    assert len(hooks) == 5
    for name in hooks:
        assert f"`{name}`" in guide, f"docs/plugins.md does not document {name}"


def test_register_workflow_importers_opens_a_foreign_file_in_check_and_run(tmp_path):
    class Greetings:
        """A toy foreign format: {"greet": NAME} becomes a Greet -> Shout workflow."""

        @hookimpl
        def gouache_register_workflow_importers(self):
            def convert(raw):
                return {"format": "gouache/1", "nodes": {
                    "hi": {"type": "Greet", "inputs": {"name": raw["greet"]}},
                    "out": {"type": "Shout", "inputs": {"text": {"node": "hi", "output": "text"}}}}}, []
            return [WorkflowImporter("greetings", lambda raw: isinstance(raw, dict) and "greet" in raw, convert)]

    engine = engine_with(tmp_path, greet=greet_pack, greetings=Greetings())
    assert [importer.name for importer in engine.importers] == ["greetings"]
    assert engine.run({"greet": "gouache"}).outputs["hi"]["text"] == "hello, gouache"
    # A gouache/1 file is never offered to importers; an unrecognised one is still unknown_format.
    _, problems = engine.check({"nodes": {}})
    assert [p.code for p in problems] == ["unknown_format"]


def test_a_workflow_importer_that_is_not_one_is_reported(tmp_path):
    class Wrong:
        @hookimpl
        def gouache_register_workflow_importers(self):
            return ["not an importer"]

    engine = engine_with(tmp_path, wrong=Wrong())
    assert "not a WorkflowImporter" in report(engine, "wrong").error


def test_an_importer_failing_on_a_damaged_file_is_a_problem_naming_it(tmp_path):
    class Fragile:
        @hookimpl
        def gouache_register_workflow_importers(self):
            return [WorkflowImporter("fragile", lambda raw: "fragile" in raw, lambda raw: raw["missing"])]

    engine = engine_with(tmp_path, fragile=Fragile())
    _, [problem] = engine.check({"fragile": 1})
    assert problem.code == "unreadable_workflow" and "fragile" in problem.message and "KeyError" in problem.message
