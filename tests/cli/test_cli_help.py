"""``gouache --help`` and friends explain every option, in plain text, with the rules users trip on."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from gouache.cli.main import SET_HELP, build_parser, main


def parsers(parser: argparse.ArgumentParser, name: str = "gouache") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser below it, each with its command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                yield from parsers(subparser, f"{name} {command}")


ALL = list(parsers(build_parser()))


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_every_argument_and_subcommand_has_help(name, parser):
    missing = [action.option_strings or action.dest for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            missing += [choice.dest for choice in action._choices_actions if not choice.help]
    assert not missing, f"{name}: no help text for {missing}"


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_help_shows_no_restructuredtext_markup(name, parser):
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text, text


def test_the_set_rule_is_in_run_help():
    run = dict(ALL)["gouache run"].format_help()
    assert "JSON" in SET_HELP and "positive.text=5 is the text '5'" in " ".join(run.split())


def test_home_and_debug_are_accepted_before_and_after_the_command():
    parser = build_parser()
    before = parser.parse_args(["--home", "A", "--debug", "run", "w.json"])
    after = parser.parse_args(["run", "w.json", "--home", "B", "--debug"])
    neither = parser.parse_args(["packs", "list"])
    assert (before.home, before.debug) == ("A", True)
    assert (after.home, after.debug) == ("B", True)
    assert (neither.home, neither.debug) == (None, False)


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes: 0 success; 2 the workflow or the arguments are invalid (nothing ran)" in text
    assert "1 a node failed at run time" in text


def test_the_console_script_runs_the_cli_with_its_collector_paused_only_while_importing(tmp_path):
    import json
    import subprocess
    import sys
    from importlib.metadata import entry_points

    (script,) = [point for point in entry_points(group="console_scripts") if point.name == "gouache"]
    assert script.value == "gouache.cli.start:main"
    # Each collection notes whether the CLI's modules had finished importing when it ran.
    probe = """
import gc, json, sys
from gouache.cli.start import main
during = []
def noted(phase, info):
    if phase == "start":
        during.append(not hasattr(sys.modules.get("gouache.cli.main"), "build_parser"))
gc.callbacks.append(noted)
sys.argv = ["gouache", "--home", sys.argv[1], "models", "--json"]
code = main()
print(json.dumps({"code": code, "while_importing": sum(during), "enabled": gc.isenabled()}))
"""
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"code": 0, "while_importing": 0, "enabled": True}
