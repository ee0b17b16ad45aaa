"""No package module over ~500 lines without a reason written at its top.

A module longer than :data:`LIMIT` lines must say why in its module docstring, on a line that
starts with ``Size:``; the reason is for a reader deciding whether to split it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: "~500 lines": a module may grow a little past 500 before it needs a written reason.
LIMIT = 520


def test_long_modules_say_why():
    missing = []
    for folder in ("sparsa", "hdl", "sim", "compiler", "models", "fpga"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            lines = text.count("\n") + 1
            if lines <= LIMIT:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not any(line.startswith("Size:") for line in doc.splitlines()):
                missing.append(f"{path.relative_to(ROOT)}: {lines} lines and no 'Size:' reason in its docstring")
    assert not missing, "\n" + "\n".join(missing)
