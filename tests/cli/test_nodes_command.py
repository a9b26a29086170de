"""``gouache nodes [NAME]``: what a user needs to write a node into a workflow, in plain text."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from engine_helpers import subprocess_env
from gouache.cli.nodes import first_sentence, plain


@pytest.fixture
def nodes(toy_site, tmp_path):
    env = subprocess_env(toy_site, tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gouache", "nodes", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    return run


def test_markup_is_plain_text():
    assert plain("Resize by ``scale_by`` with :class:`~gouache.engine.Input` and :func:`run`") == (
        "Resize by scale_by with Input and run")


@pytest.mark.parametrize(("description", "sentence"), [
    ("Encode a prompt. ``(word:1.3)`` weighs words.", "Encode a prompt."),
    ("Resize images by ``scale_by``, or to ``width`` x ``height`` when those are set\n"
     "    (one of them 0 keeps the aspect ratio).\n\n    More.", 
     "Resize images by scale_by, or to width x height when those are set (one of them 0 keeps the aspect ratio)."),
    ("Load a 1.x / 2.x checkpoint, e.g. a file or a folder. Then more.", "Load a 1.x / 2.x checkpoint, e.g. a file or a folder."),
    ("No full stop at all", "No full stop at all"),
    ("", ""),
])
def test_the_listing_shows_whole_first_sentences(description, sentence):
    assert first_sentence(description) == sentence


def test_listing_has_signatures_and_first_sentences_in_plain_text(nodes):
    done = nodes()
    assert done.returncode == 0, done.stderr
    assert "toy/Span v1 [toy]\n  (start: INT, stop: INT, unit: INT) -> (length: INT)\n" \
           "  The length of a span from start to stop, counted in whole unit steps.\n" in done.stdout
    assert "``" not in done.stdout and "`gouache nodes NAME` describes one in full" in done.stdout


def test_one_node_type_in_full(nodes):
    done = nodes("Span")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("Span (category toy, version 1, pack toy)\n\nThe length of a span from start to stop")
    assert "  stop: INT; typed in or linked; default 8; from 0 to 4096; step 8\n" in text
    assert "  length: INT" in text.split("outputs:")[1]
    scale = nodes("Scale").stdout
    assert "  x: FLOAT; linked only; required\n" in scale
    assert "  factor: FLOAT; typed in or linked; default 1.0; choices: 0.5, 1.0, 2.0\n" in scale
    assert '  label: STRING; typed in or linked; default ""; multi-line text\n' in scale
    assert "  seed: INT; typed in or linked; default 0; from 0 to 4294967295; a seed" in nodes("Record").stdout
    assert "Caching: runs every time (not deterministic)." in nodes("Clock").stdout


def test_names_are_found_ignoring_case_and_misspellings_get_a_suggestion(nodes):
    assert nodes("span").stdout == nodes("Span").stdout
    done = nodes("Spam")
    assert done.returncode == 2 and done.stdout == ""
    assert "error: no node type 'Spam'; did you mean 'Span'?" in done.stderr


def test_json_forms_are_the_registry_s_node_info(nodes):
    every = json.loads(nodes("--json").stdout)
    one = json.loads(nodes("Span", "--json").stdout)
    assert one == next(info for info in every if info["type"] == "Span")
    assert {i["name"]: (i["min"], i["max"], i["step"]) for i in one["inputs"]}["stop"] == (0, 4096, 8)


def test_the_builtin_pack_reads_whole_in_the_terminal(capsys, tmp_path):
    from gouache.cli.main import main

    assert main(["--home", str(tmp_path), "nodes"]) == 0
    listing = capsys.readouterr().out
    summaries = listing.split("\n\n")[0].splitlines()[2::3]
    assert summaries and all(re.search(r"[.!?)]$", line) for line in summaries), summaries
    assert "``" not in listing
    assert main(["--home", str(tmp_path), "nodes", "CheckpointLoader"]) == 0
    text = capsys.readouterr().out
    assert 'name: COMBO; typed in only; default "gouache-tiny"; choices: the checkpoints found now' in text
    assert main(["--home", str(tmp_path), "nodes", "Sampler"]) == 0
    text = capsys.readouterr().out
    assert "steps: INT; typed in or linked; default 20; from 1 to 1000" in text
    assert 'scheduler: COMBO; typed in or linked; default "normal"; choices: "normal", "karras"' in text
