"""The core imports nothing above it; the formats import only errors, NumPy, pydantic and the stdlib."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "sparsa"
ABOVE = ("sparsa.models", "sparsa.compiler", "sparsa.sim", "sparsa.hdl", "sparsa.fpga", "sparsa.commands",
         "sparsa.cli")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (relative imports resolved)."""
    package = "sparsa." + ".".join(path.relative_to(CORE).parent.parts) if path.parent != CORE else "sparsa"
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if module in ("sparsa", "sparsa.formats"))
    return names


def _core_files():
    return [p for p in sorted(CORE.rglob("*.py"))
            if p.name != "cli.py" and "commands" not in p.relative_to(CORE).parts]


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(CORE.parent)))
def test_core_imports_nothing_above_it(path):
    above = sorted(m for m in _imports(path) if m.startswith(ABOVE))
    assert not above, f"{path.relative_to(CORE.parent)} imports {above}"


@pytest.mark.parametrize("path", sorted((CORE / "formats").glob("*.py")), ids=lambda p: p.name)
def test_formats_are_ground_material(path):
    allowed_third_party = {"numpy", "pydantic"}
    for module in _imports(path):
        top = module.split(".")[0]
        if top == "sparsa":
            assert module == "sparsa.errors" or module.startswith("sparsa.formats"), (path.name, module)
        else:
            assert top in sys.stdlib_module_names or top in allowed_third_party or top == "__future__", \
                (path.name, module)
