"""``gouache packs install`` and ``remove``: a dry run first, a guard around gouache's own
dependencies, and an environment left exactly as it was whenever the answer is no.

The pip runs happen in a sandbox environment (see ``conftest.sandbox``) with tiny local projects,
so they are offline and quick (a few seconds each, mostly pip building the project).
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from pack_sandbox import make_project, sandbox  # noqa: F401 (fixture)
from gouache.cli import pack_install
from gouache.cli.pack_install import Change, canonical, core_packages, forbidden, parse_report

REPORT = {  # the shape of `pip install --dry-run --report -` (format version 1), trimmed
    "version": "1", "pip_version": "23.2.1",
    "install": [
        {"metadata": {"name": "gouache-pinned", "version": "0.1.0"}, "requested": True, "is_direct": True,
         "download_info": {"url": "file:///tmp/pinned", "dir_info": {}}},
        {"metadata": {"name": "Pluggy", "version": "1.6.0"}, "requested": False, "is_direct": False,
         "download_info": {"url": "file:///opt/pypi/files/pluggy-1.6.0-py3-none-any.whl", "archive_info": {}}},
        {"metadata": {"name": "tinylib", "version": "2.0"}, "requested": False, "is_direct": True,
         "download_info": {"url": "file:///tmp/tinylib", "dir_info": {}}},
    ],
    "environment": {"python_version": "3.11"},
}

GREET_MODULE = (Path(__file__).parent / "greet_pack.py").read_text()


def test_the_report_is_read_as_changes_against_what_is_installed():
    installed = {"Pluggy": "1.7.0"}.get
    changes = parse_report(REPORT, installed)
    assert changes == [Change("gouache-pinned", None, "0.1.0", True), Change("Pluggy", "1.7.0", "1.6.0", False),
                       Change("tinylib", None, "2.0", False)]
    assert [change.describe() for change in changes] == [
        "gouache-pinned 0.1.0 (new)", "Pluggy 1.7.0 -> 1.6.0", "tinylib 2.0 (new)"]
    assert Change("torch", "2.1", "2.1", False).describe() == "torch 2.1 (reinstall)"


def test_an_unknown_report_format_is_an_error_not_a_guess():
    with pytest.raises(pack_install.PipFailed, match="report version"):
        parse_report({**REPORT, "version": "2"})


def test_core_packages_come_from_gouaches_installed_requirements():
    core = core_packages()
    expected = {"gouache", "torch", "torchvision", "diffusers", "transformers", "tokenizers", "safetensors",
                "spandrel", "accelerate", "scipy", "torchsde", "pydantic", "pydantic-core", "aiohttp", "networkx",
                "pluggy", "pillow", "numpy"}
    assert expected <= core
    required = {canonical(r.split(";")[0].split(">")[0].split("=")[0].strip())
                for r in metadata.requires("gouache") if "extra" not in r}
    assert required <= core
    assert "pytest" not in core and "playwright" not in core, "test extras are not core"
    assert "peft" not in core, "the train extra (the training code in training/) is not core"


def test_any_change_to_a_core_package_is_forbidden_whatever_its_spelling():
    changes = parse_report(REPORT, {"Pluggy": "1.7.0"}.get)
    assert [change.name for change in forbidden(changes, core_packages())] == ["Pluggy"]
    assert forbidden([Change("Pydantic_Core", "2.0", "2.0", False)], core_packages())


def test_without_a_terminal_confirmation_needs_yes(monkeypatch):
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(pack_install.Refused, match="pass --yes"):
        pack_install.confirm("Install?", assume_yes=False)
    pack_install.confirm("Install?", assume_yes=True)


@pytest.mark.parametrize(("answer", "goes_on"), [("y", True), ("yes", True), ("", False), ("n", False)])
def test_at_a_terminal_confirmation_asks(monkeypatch, answer, goes_on):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    if goes_on:
        pack_install.confirm("Install?", assume_yes=False)
    else:
        with pytest.raises(pack_install.Refused):
            pack_install.confirm("Install?", assume_yes=False)


def test_a_pack_that_would_downgrade_a_core_dependency_is_refused_and_nothing_changes(sandbox, tmp_path):
    pluggy = metadata.version("pluggy")
    other = "1.6.0" if pluggy != "1.6.0" else "1.5.0"
    project = make_project(tmp_path / "pinned", "gouache-pinned", dependencies=(f"pluggy=={other}",),
                           module=GREET_MODULE, entry_point="pinned")
    before = sandbox.distributions()
    done = sandbox("packs", "install", str(project), "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"pluggy {pluggy} -> {other}" in done.stdout
    assert "refusing to change gouache or its core dependencies" in done.stderr
    assert "--allow-upgrades" in done.stderr
    assert sandbox.distributions() == before


def test_allow_upgrades_lets_the_same_install_through(sandbox, tmp_path):
    other = "1.6.0" if metadata.version("pluggy") != "1.6.0" else "1.5.0"
    project = make_project(tmp_path / "pinned", "gouache-pinned", dependencies=(f"pluggy=={other}",),
                           module=GREET_MODULE, entry_point="pinned")
    done = sandbox("packs", "install", str(project), "--yes", "--allow-upgrades")
    assert done.returncode == 0, done.stdout + done.stderr
    venv = str(sandbox.python.parent.parent)
    versions = {key.split()[0]: value for key, value in sandbox.distributions().items() if venv in key}
    # Only the sandbox changed: its own pluggy now shadows the running environment's.
    assert versions["pluggy"] == other and versions["gouache-pinned"] == "0.1.0"


def test_without_yes_and_without_a_terminal_nothing_is_installed(sandbox, tmp_path):
    project = make_project(tmp_path / "greet", "gouache-greet", module=GREET_MODULE, entry_point="greet")
    before = sandbox.distributions()
    done = sandbox("packs", "install", str(project))
    assert done.returncode == 2
    assert "gouache-greet 0.1.0 (new)" in done.stdout and "pass --yes" in done.stderr
    assert sandbox.distributions() == before


def test_install_then_remove_a_local_pack_and_only_that_distribution(sandbox, tmp_path):
    library = make_project(tmp_path / "tinylib", "tinylib", version="2.0")
    project = make_project(tmp_path / "greet", "gouache-greet", module=GREET_MODULE, entry_point="greet",
                           dependencies=(f"tinylib @ {library.as_uri()}",))
    before = sandbox.distributions()
    done = sandbox("packs", "install", str(project), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gouache-greet 0.1.0 (new)" in done.stdout and "tinylib 2.0 (new)" in done.stdout
    assert "pack 'greet' loaded; node types: Greet, Shout" in done.stdout
    assert "picks them up when it is restarted" in done.stdout
    # Available at once, without editing any file.
    assert sandbox.packs()["greet"]["status"] == "loaded"
    assert {"Greet", "Shout"} <= {node["type"] for node in sandbox.json("nodes")}

    done = sandbox("packs", "remove", "greet", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removing gouache-greet 0.1.0 (packs: greet)" in done.stdout
    assert "greet" not in sandbox.packs()
    after = sandbox.distributions()
    assert set(after) - set(before) == {key for key in after if key.startswith("tinylib ")}, \
        "the pack's own distribution went, its dependency stayed"


def test_a_distribution_without_an_entry_point_installs_with_a_warning(sandbox, tmp_path):
    project = make_project(tmp_path / "plain", "plain-library", module=GREET_MODULE)
    done = sandbox("packs", "install", str(project), "--yes")
    assert done.returncode == 0, done.stderr
    assert "plain-library declares no entry point in group 'gouache'" in done.stderr
    assert "[project.entry-points.gouache]" in done.stderr


def test_installing_what_is_already_there_changes_nothing(sandbox):
    done = sandbox("packs", "install", "pluggy", "--yes")
    assert done.returncode == 0 and "nothing to change" in done.stdout


def test_a_spec_pip_cannot_resolve_fails_before_anything_changes(sandbox, tmp_path):
    done = sandbox("packs", "install", str(tmp_path / "no-such-folder"), "--yes")
    assert done.returncode == 1 and "pip cannot resolve" in done.stderr


@pytest.mark.parametrize("name", ["builtin", "gouache"])
def test_remove_refuses_gouache_itself(sandbox, name):
    done = sandbox("packs", "remove", name, "--yes")
    assert done.returncode == 2 and "core dependencies" in done.stderr


def test_remove_refuses_what_is_not_a_pack(sandbox):
    done = sandbox("packs", "remove", "pluggy", "--yes")
    assert done.returncode == 2 and "no installed pack or pack distribution named 'pluggy'" in done.stderr


def test_the_admin_dispatches_install_and_remove(monkeypatch):
    from gouache.cli import packs

    seen = []
    monkeypatch.setattr(pack_install, "install", lambda args: seen.append(("install", args.spec)) or 0)
    monkeypatch.setattr(pack_install, "remove", lambda args: seen.append(("remove", args.name)) or 0)
    packs.main(argparse.Namespace(packs_command="install", spec="x"))
    packs.main(argparse.Namespace(packs_command="remove", name="y"))
    assert seen == [("install", "x"), ("remove", "y")]


def test_at_a_real_terminal_answering_no_installs_nothing(sandbox, tmp_path):
    project = make_project(tmp_path / "greet", "gouache-greet", module=GREET_MODULE, entry_point="greet")
    before = sandbox.distributions()
    controller, terminal = pty.openpty()
    os.write(controller, b"n\n")
    done = subprocess.run([str(sandbox.python), "-m", "gouache", "packs", "install", str(project)], stdin=terminal,
                          capture_output=True, text=True, env=sandbox.env, cwd=sandbox.cwd, timeout=300)
    os.close(controller)
    os.close(terminal)
    assert done.returncode == 2 and "Install? [y/N]" in done.stdout and "nothing changed" in done.stderr
    assert sandbox.distributions() == before
