"""Helpers and fixtures for the plugin tests: packs installed without pip, a sandbox environment for
pip, and tiny pack projects to install into it.

Test modules import the fixtures they use from here: there is deliberately no ``conftest.py`` in
this folder, because other test folders import helpers with ``from conftest import ...``, which
breaks when pytest has loaded a second module named ``conftest``.

The sandbox is a throwaway virtual environment that sees every package of the running one
(through a ``.pth`` file) but installs into its own folder, so ``gouache packs install`` and
``remove`` run for real without touching the environment the tests run in. pip itself refuses to
uninstall anything outside the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a ``gouache`` subprocess: a temporary home, no pack filters."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("GOUACHE_PACKS_BLOCK", "GOUACHE_PACKS_ALLOW", "PYTHONPATH")}
    env["GOUACHE_HOME"] = str(home)
    env.update(extra)
    return env


def add_distribution(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """Make ``name`` look installed on ``site``, with these ``gouache`` entry points."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{pack} = {target}\n" for pack, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[gouache]\n{lines}")


@dataclass
class Gouache:
    """Runs ``python -m gouache`` in a subprocess with a given interpreter and environment."""

    python: Path
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
        env = {**self.env, **extra_env}
        return subprocess.run([str(self.python), "-m", "gouache", *args], capture_output=True, text=True,
                              env=env, cwd=self.cwd, timeout=timeout, stdin=subprocess.DEVNULL)

    def json(self, *args: str, **extra_env: str):
        done = self(*args, "--json", **extra_env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def packs(self, **extra_env: str) -> dict[str, dict]:
        """``gouache packs list --json`` by pack name."""
        return {pack["name"]: pack for pack in self.json("packs", "list", **extra_env)}

    def distributions(self) -> dict[str, str]:
        """Every distribution this interpreter sees, with its version (the state to compare)."""
        code = ("import json, importlib.metadata as m; "
                "print(json.dumps(sorted({(d.metadata['Name'], d.version, str(d.locate_file(''))) "
                "for d in m.distributions()})))")
        done = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, env=self.env, check=True)
        return {f"{name} {path}": version for name, version, path in json.loads(done.stdout)}


def make_toy_site(site: Path) -> Path:
    """A folder on which three packs look installed: ``greet``, ``broken`` and ``clash``."""
    site.mkdir(parents=True)
    (site / "greet_pack.py").write_text((HERE / "greet_pack.py").read_text())
    add_distribution(site, "gouache-greet", "1.0.0", {"greet": "greet_pack"})
    (site / "broken_pack.py").write_text('raise ImportError("needs the library frobnicate, which is not installed")\n')
    add_distribution(site, "gouache-broken", "0.3", {"broken": "broken_pack"})
    (site / "clash_pack.py").write_text(textwrap.dedent('''
        from gouache.engine import Node, Output, hookimpl

        class Nameless(Node):
            type_name = "Nameless"
            outputs = [Output("x", "FLOAT")]

            def run(self, ctx):
                return {"x": 1.0}

        @hookimpl
        def gouache_register_nodes():
            return [Nameless]
    '''))
    add_distribution(site, "gouache-clash", "0.1", {"clash": "clash_pack"})
    return site


def make_sandbox(venv: Path, env: dict[str, str]) -> Gouache:
    """A virtual environment at ``venv`` that sees the running one's packages and installs into itself."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    # addsitedir (not a bare path) so the parent's own .pth files, e.g. editable installs, apply too;
    # pip in the sandbox comes from the parent the same way.
    (Path(purelib) / "_gouache_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return Gouache(python, env, venv.parent)


def make_project(folder: Path, name: str, *, version: str = "0.1.0", dependencies: tuple[str, ...] = (),
                 module: str = "", entry_point: str | None = None) -> Path:
    """A minimal installable project: one module ``name`` (underscored) with ``module`` as its code."""
    package = name.replace("-", "_")
    folder.mkdir(parents=True)
    deps = ", ".join(json.dumps(dep) for dep in dependencies)
    entry = f'\n[project.entry-points.gouache]\n{entry_point} = "{package}"\n' if entry_point else ""
    (folder / "pyproject.toml").write_text(textwrap.dedent(f'''\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "{version}"
        dependencies = [{deps}]

        [tool.setuptools]
        py-modules = ["{package}"]
        ''') + entry)
    (folder / f"{package}.py").write_text(module or '"""Nothing but a name."""\n')
    return folder


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """Packs installed without pip on a folder: ``greet`` (works), ``broken`` (fails to import)
    and ``clash`` (imports, but its node type has no docstring). Put it on PYTHONPATH."""
    return make_toy_site(tmp_path / "site")


@pytest.fixture
def gouache_cli(toy_site: Path, tmp_path: Path) -> Gouache:
    """``gouache`` with the toy packs installed and the built-in pack blocked (it is not what
    these tests are about, and importing torch is slow)."""
    env = clean_env(tmp_path / "home", PYTHONPATH=str(toy_site), GOUACHE_PACKS_BLOCK="builtin")
    return Gouache(Path(sys.executable), env, tmp_path)


@pytest.fixture
def sandbox(tmp_path: Path) -> Gouache:
    """``gouache`` run by a throwaway virtual environment layered over the running one; the
    built-in pack is blocked unless a call passes ``GOUACHE_PACKS_BLOCK=""``."""
    return make_sandbox(tmp_path / "venv", clean_env(tmp_path / "home", GOUACHE_PACKS_BLOCK="builtin"))
