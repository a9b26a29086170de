"""The ``gouache`` command line, run as a user runs it: a subprocess with packs installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import chain, subprocess_env
from gouache.cli.main import parse_assignment


@pytest.fixture
def cli(toy_site, tmp_path):
    home = tmp_path / "home"
    env = subprocess_env(toy_site, home)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gouache", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    return run


def write(tmp_path: Path, workflow: dict) -> str:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow))
    return str(path)


def test_set_values_are_json_when_they_parse_else_strings():
    assert parse_assignment("sampler.seed=5") == ("sampler.seed", 5)
    assert parse_assignment("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_assignment("positive.text=a red circle") == ("positive.text", "a red circle")
    assert parse_assignment('positive.text="5"') == ("positive.text", "5")


def test_run_succeeds_with_json_result_and_set(cli, tmp_path):
    path = write(tmp_path, chain(3))
    done = cli("run", path, "--json", "--set", "n0.value=10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["executed"] == ["n0", "n1", "n2", "out"]
    assert result["outputs"]["n2"]["sum"] == 12.0 and set(result["timings"]) == set(result["executed"])


def test_invalid_workflow_exits_2_listing_every_problem_without_traceback(cli, tmp_path):
    workflow = chain(2)
    workflow["nodes"]["n0"]["inputs"]["value"] = "ten"
    workflow["nodes"]["x"] = {"type": "Nope"}
    done = cli("run", write(tmp_path, workflow))
    assert done.returncode == 2
    assert "[wrong_value_type] node 'n0' (Number) input 'value'" in done.stderr
    assert "[unknown_node_type] node 'x'" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("validate", write(tmp_path, workflow), "--json")
    assert done.returncode == 2 and len(json.loads(done.stdout)["problems"]) == 2


def test_bad_arguments_exit_2(cli, tmp_path):
    done = cli("run", write(tmp_path, chain(2)), "--set", "novalue")
    assert done.returncode == 2 and "NODE.INPUT=VALUE" in done.stderr
    done = cli("run", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "cannot read the workflow" in done.stderr


def test_failing_node_exits_1_with_message_and_traceback_only_with_debug(cli, tmp_path):
    workflow = {"format": "gouache/1", "nodes": {"f": {"type": "Fail"}}}
    done = cli("run", write(tmp_path, workflow))
    assert done.returncode == 1
    assert "node 'f' (Fail) failed: RuntimeError: this node always fails" in done.stderr
    assert "Traceback" not in done.stderr
    debug = cli("--debug", "run", write(tmp_path, workflow))
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_validate_and_nodes(cli, tmp_path):
    done = cli("validate", write(tmp_path, chain(2)))
    assert done.returncode == 0 and "valid (3 nodes)" in done.stdout
    nodes = json.loads(cli("nodes", "--json").stdout)
    add = next(node for node in nodes if node["type"] == "Add")
    assert add["pack"] == "toy" and [i["name"] for i in add["inputs"]] == ["a", "b"]
    assert add["outputs"] == [{"name": "sum", "type": "FLOAT", "description": ""}]
    text = cli("nodes").stdout
    assert "toy/Add v1 [toy]" in text


def test_packs_list_shows_status(cli):
    listing = json.loads(cli("packs", "list", "--json").stdout)
    status = {pack["name"]: pack for pack in listing}
    assert status["toy"]["status"] == "loaded" and "Add" in status["toy"]["node_types"]
    assert status["broken"]["status"] == "error" and "not installed" in status["broken"]["error"]


@pytest.mark.parametrize("arguments", [["list"], ["list", "--json"], ["info", "toy"], ["info", "nope"]])
def test_plugins_is_another_name_for_packs(cli, arguments):
    packs, plugins = cli("packs", *arguments), cli("plugins", *arguments)
    assert (plugins.returncode, plugins.stdout, plugins.stderr) == (packs.returncode, packs.stdout, packs.stderr)


def test_help_names_packs_and_its_alias(cli):
    done = cli("--help")
    assert done.returncode == 0 and "packs (plugins)" in done.stdout


def test_the_command_line_imports_neither_torch_nor_the_web_server_until_asked():
    script = ("import sys, gouache.cli.main; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('gouache.web', "
              "'gouache.nodes'))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_console_script_and_python_m_gouache_are_the_same_command(cli):
    gouache = Path(sys.executable).with_name("gouache")
    assert gouache.exists(), f"run the tests with the interpreter of the venv gouache is installed in ({gouache} is missing)"
    script = subprocess.run([str(gouache), "--help"], capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and script.stdout == cli("--help").stdout


def test_progress_goes_to_stderr_and_results_to_stdout(cli, tmp_path):
    workflow = {"format": "gouache/1", "nodes": {"s": {"type": "Slow", "inputs": {"steps": 3}}}}
    done = cli("run", write(tmp_path, workflow))
    assert done.returncode == 0
    assert "node" in done.stderr and "succeeded" in done.stderr and "1 ran, 0 cached" in done.stderr
    assert done.stdout == ""


def test_a_png_carrying_a_workflow_runs(cli, tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("workflow", json.dumps(chain(2)))
    Image.new("RGB", (4, 4)).save(tmp_path / "made.png", pnginfo=info)
    done = cli("run", str(tmp_path / "made.png"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["n1"]["sum"] == 2.0
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    done = cli("run", str(tmp_path / "plain.png"))
    assert done.returncode == 2 and "without an embedded gouache workflow" in done.stderr


def test_a_misspelt_config_key_stops_every_command_with_a_suggestion(cli, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"cache_byte": 1000}))
    done = cli("validate", write(tmp_path, chain(2)))
    assert done.returncode == 1 and done.stdout == ""
    assert f"{home / 'config.json'} is not a valid gouache config" in done.stderr
    assert "unknown key 'cache_byte': did you mean 'cache_bytes'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_text_input_keeps_set_values_that_look_like_json_as_text(cli, tmp_path):
    (tmp_path / "5").write_text("five")
    (tmp_path / "true").write_text("yes")
    workflow = {"format": "gouache/1", "nodes": {
        "r": {"type": "ReadFile", "inputs": {"path": "missing"}},
        "out": {"type": "Record", "inputs": {"value": {"node": "r", "output": "text"}}}}}
    for typed, read in (("5", "five"), ("true", "yes")):
        done = cli("run", write(tmp_path, workflow), "--json", "--set", f"r.path={typed}")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["outputs"]["r"]["text"] == read
    # a number input still reads JSON, and a link stays a link
    done = cli("validate", write(tmp_path, chain(2)), "--set", "n0.value=5", "--set",
               'n1.b={"node": "n0", "output": "value"}')
    assert done.returncode == 0, done.stderr


def test_takes_text_is_decided_by_the_declared_type():
    from gouache.engine.sweep import takes_text
    from gouache.engine import Input

    assert takes_text(Input("text", "STRING"))
    assert takes_text(Input("name", "COMBO", choices_from="checkpoints"))
    assert takes_text(Input("mode", "COMBO", choices=("a", "b")))
    assert not takes_text(Input("size", "COMBO", choices=(512, 768)))
    assert not takes_text(Input("seed", "INT"))


def test_the_builtin_prompt_set_to_a_number_is_the_prompt_5(cli, tmp_path):
    workflow = Path(__file__).resolve().parents[2] / "workflows" / "text-to-image.json"
    done = cli("validate", str(workflow), "--set", "positive.text=5", "--set", "sampler.seed=7")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_that_is_not_there_is_refused_before_anything_runs(toy_site, tmp_path, device):
    import torch

    # CUDA is hidden from the run, so the refusal is tested on every machine; MPS cannot be hidden,
    # so where a Mac has it the same command must be accepted instead.
    env = {**subprocess_env(toy_site, tmp_path / "home"), "CUDA_VISIBLE_DEVICES": ""}
    present = device == "mps" and torch.backends.mps.is_available()
    workflow = {"format": "gouache/1", "nodes": {"s": {"type": "Slow", "inputs": {"steps": 3}}}}
    done = subprocess.run([sys.executable, "-m", "gouache", "run", write(tmp_path, workflow), "--device", device],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == (0 if present else 2), done.stderr


def unreadable(tmp_path: Path, kind: str) -> Path:
    from PIL import Image

    path = tmp_path / f"{kind}.input"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "png without a workflow":
        Image.new("RGB", (4, 4)).save(path, format="PNG")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "cut json":
        path.write_text('{"format": "gouache/1", "nodes": {')
    return path  # "missing": never written


@pytest.mark.parametrize("kind", ["missing", "directory", "binary", "png without a workflow", "empty", "cut json"])
def test_validate_exits_2_for_every_unreadable_file(cli, tmp_path, kind):
    path = str(unreadable(tmp_path, kind))
    done = cli("validate", path)
    assert done.returncode == 2, done.stderr
    assert "[unreadable_workflow] cannot read the workflow" in done.stderr and "Traceback" not in done.stderr
    done = cli("validate", path, "--json", "--set", "a.b=1")
    assert done.returncode == 2
    assert json.loads(done.stdout)["valid"] is False
