"""Every command the README shows runs as written, from a fresh clone's point of view.

The README's first screen has exactly two set-up commands: one installs and runs the main job, one
installs and runs the tests (CI runs the latter verbatim, ``.ci/run``). Their venv and pip parts
are what made this environment, so they are not repeated here; the rest of the first (the main
job) runs, then every command of every other ``bash`` block, and every ``python`` block, in a copy
of the checkout whose ``.venv`` is this environment, with ``GOUACHE_HOME`` in a temporary folder.
What they leave in the checkout must be ignored by git.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
SETUP = [code.strip() for _, code in BLOCKS[:2]]
SET_UP_STEPS = ("python3 -m venv ", ".venv/bin/pip install ")
"""Parts of the set-up commands CI itself runs; here the environment they made is used instead."""

pytestmark = pytest.mark.slow


def main_job() -> list[str]:
    """The set-up commands' parts that are not installing and not the test run itself."""
    parts = [part.strip() for command in SETUP for part in command.split(" && ")]
    return [part for part in parts if not part.startswith(SET_UP_STEPS) and " -m pytest" not in part]


def commands() -> list[tuple[str, str]]:
    """(language, command) for every README command after the set-up: bash lines and python blocks."""
    found = []
    for language, code in BLOCKS[2:]:
        if language == "bash":
            found += [("bash", line) for line in code.splitlines() if line.strip() and not line.startswith("#")]
        elif language == "python":
            found.append(("python", code))
    return found


def test_the_first_screen_has_exactly_two_set_up_commands_and_ci_runs_the_second():
    assert [language for language, _ in BLOCKS[:2]] == ["bash", "bash"]
    install, tests = SETUP
    assert "\n" not in install and "\n" not in tests
    assert install.startswith("python3 -m venv .venv && ") and ".venv/bin/pip install -e . && " in install
    assert main_job() == [".venv/bin/gouache run workflows/text-to-image.json --output-dir output"]
    assert '.venv/bin/pip install -e ".[test]" && .venv/bin/pip install --no-deps k-diffusion==0.1.1.post1 && .venv/bin/python -m pytest' in tests
    assert tests in (REPO / ".ci" / "run").read_text()


def test_commands_name_the_gouache_the_set_up_installed():
    bare = [command for language, command in commands() if language == "bash" and command.startswith("gouache ")]
    assert not bare, "the set-up puts gouache in .venv/bin; write .venv/bin/gouache"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> dict:
    """A copy of the checkout's files after the main job ran in it, and the environment to run in."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.fail(f"the README commands run from a copy of the git checkout, and git ls-files failed: {listed.stderr}")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "gouache").exists():
        pytest.fail(f"run the tests with the interpreter of the venv gouache is installed in ({venv} has no bin/gouache)")
    root = tmp_path_factory.mktemp("clone") / "gouache"
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / ".venv").symlink_to(venv)
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "GOUACHE_HOME": str(home), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           # a fresh shell: nothing on PATH knows gouache unless the README says where it is
           "PATH": os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                   if p and not (Path(p) / "gouache").exists())}
    env.pop("VIRTUAL_ENV", None)
    before = {path.relative_to(root) for path in root.rglob("*")}
    for command in main_job():
        done = subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    return {"root": root, "env": env, "before": before}


def test_the_main_job_writes_the_file_the_readme_names(clone):
    named = re.search(r"writes `([^`]+)`", README).group(1)
    assert (clone["root"] / named).is_file()


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serve(command: str, clone: dict) -> None:
    url = re.search(r"http://[\w.:]+", command)
    url = url.group(0) if url else "http://127.0.0.1:8188"
    if not _free(int(url.rsplit(":", 1)[1])):
        pytest.fail(f"{url}, which the README's serve command uses, is taken by another process; stop it and run again")
    server = subprocess.Popen(["bash", "-c", command], cwd=clone["root"], env=clone["env"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline, ready = time.monotonic() + 120, False
        while not ready and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url + "/api/nodes", timeout=5) as response:
                    ready = response.status == 200 and b"Sampler" in response.read()
            except OSError:
                time.sleep(0.5)
        assert ready, f"{command}: not serving at {url}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # what Ctrl-C sends
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr[-3000:]


@pytest.mark.parametrize(("language", "command"), commands(), ids=[command.split("#")[0].strip()[:80]
                                                                   for _, command in commands()])
def test_every_readme_command_runs_as_written(clone, language, command):
    if language == "python":
        argv = [str(clone["root"] / ".venv" / "bin" / "python"), "-c", command]
    elif shlex.split(command, comments=True)[1:2] == ["serve"]:
        return _serve(command, clone)
    else:
        argv = ["bash", "-c", command]
    done = subprocess.run(argv, cwd=clone["root"], env=clone["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"


def test_what_the_commands_leave_in_the_checkout_is_ignored_by_git(clone):
    made = sorted(str(path.relative_to(clone["root"])) for path in clone["root"].rglob("*")
                  if path.is_file() and path.relative_to(clone["root"]) not in clone["before"]
                  and ".venv" not in path.relative_to(clone["root"]).parts)
    assert made, "the main job saved no file"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(made),
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == made, f"not ignored by .gitignore: {sorted(set(made) - set(ignored))}"
