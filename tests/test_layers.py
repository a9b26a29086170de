"""The layers of docs/architecture.md, checked: who may import whom, and what registering costs.

The engine's own rule (stdlib, pydantic, networkx, pluggy) is in tests/engine/test_architecture.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "safetensors", "spandrel", "PIL", "numpy", "accelerate")


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports in module-level if/try blocks still run on import
        if isinstance(node, (ast.If, ast.Try)) and "TYPE_CHECKING" not in ast.unparse(getattr(node, "test", ast.Pass())):
            top_level.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend((node.lineno, name, id(node) in top_level) for name in names)
    return found


def sources(folder: str) -> list[Path]:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def offenders(folder: str, refused: tuple[str, ...], *, module_level_only: bool = False) -> list[str]:
    out = []
    for path in sources(folder):
        for line, module, top in imports(path):
            if module_level_only and not top:
                continue
            if any(module == name or module.startswith(name + ".") for name in refused):
                out.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return out


def test_the_web_layer_never_imports_the_diffusion_pack_or_the_cli():
    assert offenders("web", ("gouache.nodes", "gouache.cli", "gouache_training", "torch", "diffusers",
                             "transformers")) == []
    # Pillow checks uploads, inside the upload handler only.
    assert offenders("web", HEAVY, module_level_only=True) == []


def test_the_diffusion_pack_never_imports_the_web_layer_the_cli_or_training_code():
    assert offenders("nodes", ("gouache.web", "gouache.cli", "gouache_training")) == []


def test_the_cli_imports_the_server_and_the_pack_only_when_a_command_needs_them():
    assert offenders("cli", ("gouache.web", "gouache.nodes", "gouache_training", *HEAVY), module_level_only=True) == []


def test_only_the_ray_module_imports_ray():
    """Ray is the optional extra gouache[ray]: everything else runs without it."""
    for folder in ("engine", "nodes", "web", "cli", "gouache", "cluster"):
        found = [line for line in offenders(folder, ("ray",)) if not line.startswith("cluster/ray_workers.py:")]
        assert found == [], found


def test_the_cluster_imports_neither_the_diffusion_pack_nor_the_cli():
    assert offenders("cluster", ("gouache.nodes", "gouache.cli", "gouache_training", *HEAVY)) == []


@pytest.mark.parametrize("module", ["gouache.nodes.pack", "gouache.cli.main", "gouache.web.server"])
def test_importing_a_layer_loads_no_torch(module):
    code = (f"import sys, json, {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == [], f"importing {module} loaded {done.stdout.strip()}"


def test_every_package_folder_ships():
    """A package folder missing from pyproject's explicit list works in a checkout and breaks when installed."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: REPO / folder for package, folder in config["package-dir"].items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if "__pycache__" not in relative:
                found.add(".".join((package, *relative)))
    assert sorted(found - set(config["packages"])) == []
