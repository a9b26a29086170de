"""docs/plugins.md: its code is the example pack's code, and that pack installs, runs and goes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pack_sandbox import REPO, sandbox  # noqa: F401 (fixture)

GUIDE = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "docs" / "examples" / "plugin_minimal"


def normalised(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def test_every_code_block_in_the_guide_is_taken_from_the_example_pack():
    sources = [normalised(path.read_text()) for path in EXAMPLE.rglob("*") if path.suffix in (".py", ".toml", ".js")]
    blocks = re.findall(r"```(python|toml|javascript)\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 7
    for language, block in blocks:
        assert any(normalised(block) in source for source in sources), f"this {language} block is not in {EXAMPLE}:\n{block}"


def test_the_example_packs_own_tests_pass():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "test_hello.py")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_pack_installs_runs_and_is_removed(sandbox):
    done = sandbox("packs", "install", str(EXAMPLE), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pack 'hello' loaded; node types: HelloSplitWords, HelloCountWords" in done.stdout

    info = sandbox.json("packs", "info", "hello")
    assert (info["distribution"], info["status"], info["web_extensions"]) == ("gouache-hello", "loaded", ["gouache-hello"])
    text = sandbox("packs", "info", "hello").stdout
    assert "web extension gouache-hello: " in text and "(hello.js)" in text
    assert "text/hello/HelloSplitWords v1" in text
    assert "wordlists" in sandbox.json("models")
    result = sandbox.json("run", str(EXAMPLE / "hello.json"))
    assert result["outputs"]["count"] == {"count": 3}

    done = sandbox("packs", "remove", "hello", "--yes")
    assert done.returncode == 0, done.stderr
    assert "hello" not in sandbox.packs()
