"""The engine is domain-free: it imports only the stdlib, pydantic, networkx, pluggy and itself.

Read from the source (every import, those inside functions included) and checked in a fresh
process, so a heavy or domain import cannot slip in at the top of a module or later in a function.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
ALLOWED = {"pydantic", "networkx", "pluggy"}
ALLOWED_WHILE_TYPE_CHECKING = {"typing_extensions"}
FORBIDDEN_AT_IMPORT = {"torch", "diffusers", "transformers", "tqdm", "platformdirs", "aiohttp", "PIL", "numpy"}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_modules(path: Path) -> list[tuple[int, str, bool]]:
    """Every module ``path`` imports, anywhere in the file: (line, dotted name, under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_checking = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # ``from . import x`` stays inside the package; ``from gouache.engine import x`` names it.
            names = [node.module or ""] if node.level == 0 else ["gouache.engine"]
        else:
            continue
        found.extend((node.lineno, name, node.lineno in type_checking) for name in names)
    return found


def allowed(module: str, type_checking: bool) -> bool:
    """Whether the engine may import ``module``."""
    top = module.split(".")[0]
    if module == "gouache.engine" or module.startswith("gouache.engine."):
        return True
    if top == "gouache":
        return False
    return top in sys.stdlib_module_names or top in ALLOWED or (type_checking and top in ALLOWED_WHILE_TYPE_CHECKING)


def test_every_engine_module_imports_only_the_stdlib_pydantic_networkx_pluggy_and_the_engine():
    files = sorted(ENGINE.glob("*.py"))
    assert len(files) > 10, f"found no engine modules under {ENGINE}"
    wrong = [f"{path.name}:{line} imports {module}" for path in files
             for line, module, type_checking in imported_modules(path) if not allowed(module, type_checking)]
    assert not wrong, "the engine must import only the stdlib, pydantic, networkx and pluggy:\n" + "\n".join(wrong)


def test_the_check_itself_sees_imports_inside_functions_and_from_gouache(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import typing_extensions\n"
                      "def f():\n    import torch\n    from gouache.web import server\n    from . import cache\n")
    found = {(module, type_checking) for _, module, type_checking in imported_modules(source)}
    assert found == {("os", False), ("typing", False), ("typing_extensions", True), ("torch", False),
                     ("gouache.web", False), ("gouache.engine", False)}
    assert sorted(module for module, type_checking in found if not allowed(module, type_checking)) == \
        ["gouache.web", "torch"]


def test_importing_the_engine_loads_no_domain_terminal_or_web_module():
    watched = sorted(FORBIDDEN_AT_IMPORT | {"gouache"})
    script = ("import json, sys, gouache.engine; "
              f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    heavy = [module for module in loaded if module.split(".")[0] in FORBIDDEN_AT_IMPORT]
    outside = [module for module in loaded if module.startswith(("gouache.web", "gouache.nodes", "gouache.cli"))]
    assert not heavy and not outside, f"importing gouache.engine loaded {heavy + outside}"
    assert "gouache.engine" in loaded
