"""``gouache run --sweep``, in this process: every combination runs, files named by values, --json lists them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from gouache.cli import sweep
from gouache.cli.main import build_parser
from gouache.engine import Engine, Input, Node, Output, hookimpl


class Text(Node):
    """A seed and a prompt joined."""

    type_name = "SweepText"
    category = "sweep"
    inputs = [Input("seed", "INT", default=0, min=0, max=100), Input("text", "STRING", default="")]
    outputs = [Output("text", "STRING")]

    def run(self, ctx, seed, text):
        return {"text": f"{seed}:{text}"}


class Save(Node):
    """Writes its text to ``filename_prefix``.txt in the output folder, as SaveImage writes PNGs."""

    type_name = "SweepSave"
    category = "sweep"
    output_node = True
    inputs = [Input("text", "STRING", link="wire"), Input("filename_prefix", "STRING", default="gouache")]
    outputs = []

    def run(self, ctx, text, filename_prefix):
        path = ctx.settings.folder("output") / f"{filename_prefix}.txt"
        path.write_text(text)
        ctx.add_image("output", path)
        return {}


PACK = SimpleNamespace(gouache_register_nodes=hookimpl(lambda: [Text, Save]))


@pytest.fixture
def setup(tmp_path: Path):
    engine = Engine(packs={"sweep": PACK}, entry_points=False, home=tmp_path / "home")
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"format": "gouache/1", "nodes": {
        "t": {"type": "SweepText", "inputs": {"seed": 1, "text": "x"}},
        "save": {"type": "SweepSave", "inputs": {"text": {"node": "t", "output": "text"}, "filename_prefix": "out"}}}}))
    (tmp_path / "prompts.txt").write_text("a cat\n5\n")
    return engine, str(workflow), tmp_path


def args(*argv: str):
    return build_parser().parse_args(["run", *argv])


def test_every_combination_runs_and_its_files_are_named_by_its_values(setup, capsys, monkeypatch):
    engine, workflow, folder = setup
    monkeypatch.chdir(folder)
    code = sweep.main(args(workflow, "--sweep", "t.seed=1..2", "--sweep", "t.text=@prompts.txt", "--json", "--quiet"),
                      engine, {})
    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["status"] == "succeeded"
    assert [run["values"] for run in listed["runs"]] == [
        {"t.seed": 1, "t.text": "a cat"}, {"t.seed": 1, "t.text": "5"},
        {"t.seed": 2, "t.text": "a cat"}, {"t.seed": 2, "t.text": "5"}]
    files = [Path(run["files"][0]) for run in listed["runs"]]
    assert [file.name for file in files] == ["out_seed-1_text-a-cat.txt", "out_seed-1_text-5.txt",
                                             "out_seed-2_text-a-cat.txt", "out_seed-2_text-5.txt"]
    assert files[1].read_text() == "1:5"  # the prompt "5" stayed text


def test_zip_and_an_invalid_value_that_stops_everything_before_anything_runs(setup, capsys):
    engine, workflow, _ = setup
    assert sweep.main(args(workflow, "--sweep", "t.seed=1..2", "--sweep", 't.text=["a", "b"]', "--zip", "--json"),
                      engine, {}) == 0
    assert [run["values"] for run in json.loads(capsys.readouterr().out)["runs"]] == [
        {"t.seed": 1, "t.text": "a"}, {"t.seed": 2, "t.text": "b"}]
    with pytest.raises(sweep.SweepInvalid, match=r"with t.seed=101"):
        sweep.main(args(workflow, "--sweep", "t.seed=99..101"), engine, {})
    assert not list((engine.settings.home / "output").glob("out_seed-99*"))
