"""An interrupted run stops a model's load between its files (issue 18: interrupt within 1 s everywhere)."""

from __future__ import annotations

import shutil

import pytest

from gouache.engine import Engine
from gouache.nodes.loading import files

from pack_support import run_interrupted_at, text_to_image


@pytest.mark.parametrize("checkpoint", ["folder", "gouache-tiny"])
def test_an_interrupt_at_the_loader_stops_before_any_file_is_read(tmp_path, tiny_sd1, monkeypatch, checkpoint):
    # A diffusers folder through diffusers (a file per part), and the embedded model on native modules.
    home = tmp_path / "home"
    shutil.copytree(tiny_sd1.folder, home / "models" / "checkpoints" / "folder")
    engine = Engine(home=home)
    workflow = text_to_image(checkpoint)
    result = run_interrupted_at(engine, workflow, "checkpoint", ["checkpoint"])
    assert result.status == "interrupted" and "checkpoint" not in result.executed
    from gouache.nodes.model_manager import RESOURCE_KEY

    held = engine.resources.get(RESOURCE_KEY, lambda: pytest.fail("the loader made no model manager"))
    assert held.loads == 0  # nothing half-loaded is kept
    again = engine.run(workflow, outputs=["checkpoint"])
    assert again.ok and again.executed == ["checkpoint"]


def test_a_model_of_several_files_stops_between_them(tmp_path, tiny_sd1, monkeypatch):
    """The stop arrives while the first of the native folder's three files is read; the others are not."""
    home = tmp_path / "home"
    folder = shutil.copytree(tiny_sd1.folder, home / "models" / "checkpoints" / "folder")
    (folder / "gouache.json").write_text('{"modules": "native"}')
    engine = Engine(home=home)
    read: list[str] = []
    real = files.read_state_dict

    def read_then_stop(path, *args, **kwargs):
        result = real(path, *args, **kwargs)
        read.append(path.parent.name)
        engine.interrupt()
        return result

    monkeypatch.setattr("gouache.nodes.loading.native.read_state_dict", read_then_stop)
    result = engine.run(text_to_image("folder"), outputs=["checkpoint"])
    assert result.status == "interrupted" and "checkpoint" not in result.executed
    assert read == ["unet"]
