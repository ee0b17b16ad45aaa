"""Every package folder installs: pyproject.toml's explicit package list names each of them.

The list is explicit (the product card's folders map onto the ``sparsa`` namespace through
``package-dir``), so a new sub-package missing from it works in an editable install and breaks a
wheel.  This test walks the mapped folders and compares.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in tool["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "_")) or part == "build" for part in rel.parts):
                continue
            found.add(".".join((name, *rel.parts)) if rel.parts else name)
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder"
