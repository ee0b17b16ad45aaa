"""The layering rules of ``../shared/DESIGN.md`` ("Layers"), checked on every import in the package.

Every ``import``/``from ... import`` of package code is parsed with :mod:`ast` - module-level,
function-level and ``TYPE_CHECKING`` ones alike - and mapped to its *area* by the import name
(``sparsa.hdl`` is the folder ``hdl/``, and so on; see ``[tool.setuptools.package-dir]``).
Lower areas never import higher ones:

    ground (sparsa.formats, sparsa.errors) <- core contracts (the rest of sparsa/) <- models
    <- hdl | compiler <- sim <- fpga <- CLI (sparsa.cli, sparsa.commands)

and no module imports a private name (``_x``) from another package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Folder -> import prefix, as pyproject's package-dir maps them.
FOLDERS = {"sparsa": "sparsa", "hdl": "sparsa.hdl", "sim": "sparsa.sim", "compiler": "sparsa.compiler",
           "models": "sparsa.models", "fpga": "sparsa.fpga"}

#: What each area may import (besides third-party packages and itself).
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "core": {"ground"},
    "models": {"ground", "core"},
    "hdl": {"ground", "core"},
    "compiler": {"ground", "core", "models"},
    "sim": {"ground", "core", "models", "compiler", "hdl"},
    "fpga": {"ground", "core", "models", "compiler", "hdl", "sim"},
    "cli": {"ground", "core", "models", "compiler", "hdl", "sim", "fpga"},
}


def area(module: str) -> str | None:
    """The area of an import name inside the package, or None for third-party modules."""
    if module != "sparsa" and not module.startswith("sparsa."):
        return None
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    head = parts[1]
    if head in ("formats", "errors"):
        return "ground"
    if head in ("cli", "commands"):
        return "cli"
    if head in ("hdl", "sim", "compiler", "models", "fpga"):
        return head
    return "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    name = ".".join([FOLDERS[parts[0]], *parts[1:]])
    return name.removesuffix(".__init__")


def package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def package_files() -> list[Path]:
    files = []
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def imports(path: Path, module: "str | None" = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import statement in ``path`` (as ``module``)."""
    module = module_name(path) if module is None else module
    package = package_of(module, path.name == "__init__.py")
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def file_violations(path: Path, module: str, where: str) -> list[str]:
    """The broken rules of one file, read as the package module ``module``."""
    bad = []
    mine = area(module)
    package = package_of(module, path.name == "__init__.py")
    for line, target, names in imports(path, module):
        theirs = area(target)
        if theirs is None:
            continue
        if theirs != mine and theirs not in ALLOWED[mine]:
            bad.append(f"{where}:{line}: {mine} imports {target} ({theirs})")
        for name in names:
            # a private name is for the modules of its own package only
            if name.startswith("_") and not name.startswith("__") \
                    and package not in (target, target.rpartition(".")[0]):
                bad.append(f"{where}:{line}: private name {name} imported from {target}")
    return bad


def violations() -> list[str]:
    bad = []
    for path in package_files():
        bad += file_violations(path, module_name(path), str(path.relative_to(ROOT)))
    return bad


def test_no_import_goes_up_a_layer():
    found = violations()
    assert not found, "\n" + "\n".join(found)


@pytest.mark.parametrize("module,expected", [
    ("sparsa.formats.nm", "ground"), ("sparsa.errors", "ground"), ("sparsa.config", "core"),
    ("sparsa.isa", "core"), ("sparsa.commands.run", "cli"), ("sparsa.cli", "cli"), ("sparsa.hdl.pe", "hdl"),
    ("sparsa.sim.backends.base", "sim"), ("sparsa.models.compression.pruning", "models"), ("numpy", None),
])
def test_areas(module, expected):
    assert area(module) == expected


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    # A probe read as if it were hdl/_layering_probe.py (written outside the tree: other tests scan it).
    src = tmp_path / "_layering_probe.py"
    src.write_text("def f():\n    from sparsa.sim import get_backend\n    from ..compiler.gemm import _x\n")
    found = file_violations(src, "sparsa.hdl._layering_probe", "hdl/_layering_probe.py")
    assert any("hdl imports sparsa.sim (sim)" in v for v in found)
    assert any("hdl imports sparsa.compiler.gemm (compiler)" in v for v in found)
    assert any("private name _x" in v for v in found)


def test_formats_use_only_numpy_pydantic_and_the_standard_library():
    """The ground floor has no optional dependency: every other floor can rely on it."""
    import sys

    allowed = {"numpy", "pydantic", "__future__"}
    bad = []
    for path in sorted((ROOT / "sparsa" / "formats").glob("*.py")):
        for line, target, _ in imports(path):
            top = target.split(".")[0]
            if top != "sparsa" and top not in allowed and top not in sys.stdlib_module_names:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert not bad, "\n" + "\n".join(bad)
