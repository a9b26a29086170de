"""Packs are found through the ``gouache`` entry-point group, filtered by env vars, and isolated."""

from __future__ import annotations

import sys

import pytest

from gouache.engine import Engine


@pytest.fixture
def installed(toy_site, monkeypatch):
    """The toy and broken packs installed as distributions (on sys.path)."""
    monkeypatch.syspath_prepend(str(toy_site))
    for name in ("GOUACHE_PACKS_BLOCK", "GOUACHE_PACKS_ALLOW", "GOUACHE_PLUGINS_BLOCK", "GOUACHE_PLUGINS_ALLOW"):
        monkeypatch.delenv(name, raising=False)
    yield toy_site
    sys.modules.pop("toy_pack", None)


def reports(engine):
    return {report.name: report for report in engine.packs}


def test_entry_point_packs_load_and_a_broken_one_is_reported_by_name(installed, tmp_path):
    engine = Engine(home=tmp_path)
    status = reports(engine)
    assert status["toy"].status == "loaded"
    assert (status["toy"].distribution, status["toy"].version) == ("gouache-toy", "1.2.3")
    assert "Add" in engine.registry
    assert status["broken"].status == "error"
    assert "failed to import" in status["broken"].error and "not installed" in status["broken"].error


def test_block_list(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_PACKS_BLOCK", "toy, other")
    engine = Engine(home=tmp_path)
    assert reports(engine)["toy"].status == "blocked" and "Add" not in engine.registry


def test_the_former_plugins_name_of_the_block_list_still_works_and_says_it_was_renamed(installed, tmp_path,
                                                                                      monkeypatch, caplog):
    monkeypatch.delenv("GOUACHE_PACKS_BLOCK", raising=False)
    monkeypatch.setenv("GOUACHE_PLUGINS_BLOCK", "toy")
    engine = Engine(home=tmp_path)
    assert reports(engine)["toy"].status == "blocked"
    assert "GOUACHE_PLUGINS_BLOCK is now called GOUACHE_PACKS_BLOCK" in caplog.text


def test_allow_list_loads_only_the_named_third_party_packs(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_PACKS_ALLOW", "gouache-toy")
    status = reports(Engine(home=tmp_path))
    assert status["toy"].status == "loaded" and status["broken"].status == "blocked"


def test_safe_mode_loads_no_third_party_pack(installed, tmp_path):
    status = reports(Engine(home=tmp_path, safe_mode=True))
    assert status["toy"].status == "blocked" and status["broken"].status == "blocked"
    first_party = [r for r in status.values() if r.distribution == "gouache"]
    assert all(r.status != "blocked" for r in first_party)


def test_a_hook_that_raises_is_reported_and_the_rest_loads(tmp_path):
    import toy_pack
    from gouache.engine import hookimpl

    class Raises:
        @hookimpl
        def gouache_register_nodes(self):
            raise RuntimeError("boom")

    engine = Engine(packs={"toy": toy_pack, "raises": Raises()}, entry_points=False, home=tmp_path)
    status = reports(engine)
    assert status["raises"].status == "error" and "boom" in status["raises"].error
    assert status["toy"].status == "loaded"


def test_model_folder_and_web_extension_hooks(tmp_path):
    from gouache.engine import ModelFolder, WebExtension, hookimpl

    class Pack:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("controlnet", (".safetensors",), describe=lambda path: {"size": path.stat().st_size})]

        @hookimpl
        def gouache_register_web_extensions(self):
            return [WebExtension("pack-ui", tmp_path, scripts=("main.js",))]

    home = tmp_path / "home"
    (home / "models" / "controlnet" / "sub").mkdir(parents=True)
    (home / "models" / "controlnet" / "sub" / "canny.safetensors").write_bytes(b"12345")
    (home / "models" / "controlnet" / "notes.txt").write_text("ignored")
    engine = Engine(packs={"pack": Pack()}, entry_points=False, home=home)
    assert engine.models.as_json() == {"controlnet": [
        {"name": "sub/canny.safetensors", "path": str(home / "models" / "controlnet" / "sub" / "canny.safetensors"), "size": 5}]}
    assert engine.web_extensions["pack-ui"].scripts == ("main.js",)


def test_validation_reads_no_model_and_a_listing_describes_each_file_version_once(tmp_path):
    """Validation names models for every input that takes one: it lists names and describes nothing;
    ``gouache models`` and /api/models describe a file once until it changes; new files show at once."""
    import os

    from gouache.engine import Input, ModelFolder, Node, Output, hookimpl

    described = []

    def describe(path):
        described.append(path.name)
        return {"size": path.stat().st_size}

    class Use(Node):
        """Name a stamp."""

        type_name = "Use"
        inputs = [Input("stamp", "STRING", choices_from="stamps")]
        outputs = [Output("stamp", "STRING")]

        def run(self, ctx, stamp):
            return {"stamp": stamp}

    class Pack:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("stamps", (".bin",), describe=describe)]

        @hookimpl
        def gouache_register_nodes(self):
            return [Use]

    home = tmp_path / "home"
    folder = home / "models" / "stamps"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"1")
    engine = Engine(packs={"pack": Pack()}, entry_points=False, home=home)
    workflow = {"format": "gouache/1", "nodes": {f"n{i}": {"type": "Use", "inputs": {"stamp": "a.bin"}} for i in range(3)}}
    assert engine.check(workflow)[1] == [] and described == []
    for _ in range(2):
        assert engine.models.as_json() == {"stamps": [{"name": "a.bin", "path": str(folder / "a.bin"), "size": 1}]}
    assert described == ["a.bin"]
    (folder / "b.bin").write_bytes(b"22")  # a new file is offered on the next listing
    workflow["nodes"]["n0"]["inputs"]["stamp"] = "b.bin"
    assert engine.check(workflow)[1] == []
    (folder / "a.bin").write_bytes(b"333")  # replaced: described again, with what it holds now
    stat = (folder / "a.bin").stat()
    os.utime(folder / "a.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert [entry["size"] for entry in engine.models.as_json()["stamps"]] == [3, 2]
    assert described == ["a.bin", "a.bin", "b.bin"]
    (folder / "b.gouache.json").write_text("{}")  # a file named after a model (its settings) counts as a change
    assert len(engine.models.as_json()["stamps"]) == 2
    assert described == ["a.bin", "a.bin", "b.bin", "b.bin"]
    (folder / "b.bin").unlink()
    valid, [problem] = engine.check(workflow)
    assert (problem.node, problem.code) == ("n0", "not_a_choice")


def test_a_built_in_model_is_described_when_a_listing_describes_and_only_once(tmp_path):
    """Built-in entries that ask for it get their kind's description on the first describing listing;
    names (validation, /api/nodes) read nothing, as the shipped LoRA's header need not be read to start."""
    from gouache.engine import ModelEntry, ModelFolder, hookimpl

    shipped = tmp_path / "shipped.bin"
    shipped.write_bytes(b"12")
    described = []

    def describe(path):
        described.append(path.name)
        return {"size": path.stat().st_size, "builtin": "overridden?"}

    class Pack:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("stamps", (".bin",), describe=describe, builtin=lambda: [
                ModelEntry("shipped", shipped, {"builtin": True}, describe_when_listed=True),
                ModelEntry("fixed", shipped, {"builtin": True, "size": 0})])]

    engine = Engine(packs={"pack": Pack()}, entry_points=False, home=tmp_path / "home")
    assert engine.models.names("stamps") == ["shipped", "fixed"] and described == []
    for _ in range(2):
        listed = engine.models.as_json()["stamps"]
        assert [(entry["name"], entry["size"], entry["builtin"]) for entry in listed] == [
            ("shipped", 2, True), ("fixed", 0, True)]
    assert described == ["shipped.bin"]


def test_a_home_folder_kind_offers_files_of_the_base_directory_and_is_not_a_model(tmp_path):
    from gouache.engine import Input, ModelFolder, Node, Output, hookimpl

    class Show(Node):
        """Name a picture in the input folder."""

        type_name = "Show"
        inputs = [Input("picture", "STRING", choices_from="pictures")]
        outputs = [Output("picture", "STRING")]

        def run(self, ctx, picture):
            return {"picture": picture}

    class Pack:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("pictures", (".png",), home_folder="input")]

        @hookimpl
        def gouache_register_nodes(self):
            return [Show]

    engine = Engine(packs={"pack": Pack()}, entry_points=False, home=tmp_path)
    engine.settings.folder("input").joinpath("a.png").write_bytes(b"")
    assert engine.models.names("pictures") == ["a.png"] and engine.models.as_json() == {}
    workflow = {"format": "gouache/1", "nodes": {"s": {"type": "Show", "inputs": {"picture": "b.png"}}}}
    valid, [problem] = engine.check(workflow)
    assert (problem.node, problem.input, problem.code) == ("s", "picture", "not_a_choice")
    assert "'a.png'" in problem.message


def test_a_check_with_a_choices_parameter_sees_the_models_of_a_kind(tmp_path):
    """Names of models written inside a text value are checked at validation, the engine knowing nothing of them."""
    from gouache.engine import Input, InputError, ModelFolder, Node, Output, hookimpl

    class Caption(Node):
        """Write a caption that may name stamps as stamp:NAME."""

        type_name = "Caption"
        inputs = [Input("text", "STRING", default="")]
        outputs = [Output("text", "STRING")]

        def check(self, values, choices):
            named = [word[len("stamp:"):] for word in values.get("text", "").split() if word.startswith("stamp:")]
            return [InputError("text", f"no stamp {name!r}; found: {', '.join(choices('stamps'))}", "unknown_stamp")
                    for name in named if name not in choices("stamps")]

        def run(self, ctx, text):
            return {"text": text}

    class Pack:
        @hookimpl
        def gouache_register_model_folders(self):
            return [ModelFolder("stamps", (".png",))]

        @hookimpl
        def gouache_register_nodes(self):
            return [Caption]

    home = tmp_path / "home"
    (home / "models" / "stamps").mkdir(parents=True)
    (home / "models" / "stamps" / "star.png").write_bytes(b"")
    engine = Engine(packs={"pack": Pack()}, entry_points=False, home=home)

    def workflow(text):
        return {"format": "gouache/1", "nodes": {"c": {"type": "Caption", "inputs": {"text": text}}}}

    assert engine.check(workflow("a stamp:star.png here"))[1] == []
    valid, [problem] = engine.check(workflow("a stamp:moon.png"))
    assert valid is None
    assert (problem.node, problem.input, problem.code) == ("c", "text", "unknown_stamp")
    assert "'moon.png'" in problem.message and "star.png" in problem.message
