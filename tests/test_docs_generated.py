"""The generated tables of docs/*.md equal what docs/generate.py makes from the code.

A failure names the stale block and its file; fix it with ``make docs`` (``python
docs/generate.py``) and commit the result.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_generator():
    name = "sparsa_docs_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    """A copy of docs/*.md to rewrite (the real docs are never written by the tests)."""
    for path in DOCS.glob("*.md"):
        shutil.copy2(path, tmp_path / path.name)
    return tmp_path


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.iterdir())}


def test_committed_docs_are_current():
    stale = gen.run(DOCS, check=True)
    assert not stale, ("generated tables in docs/ differ from the code; run `make docs` "
                       "(python docs/generate.py) and commit:\n" + "\n".join(stale))


def test_every_block_is_used_and_marked():
    used = {b.name for path in DOCS.glob("*.md") for b in gen.find_blocks(path.read_text(), str(path))}
    assert used == set(gen.BLOCKS)
    assert {"isa-fields", "isa-opcodes", "streams-systolic", "streams-chain", "program-json",
            "config-fields"} <= used


def test_tampered_block_is_detected_and_rewritten(docs_copy: Path, capsys):
    original = _snapshot(docs_copy)
    isa = docs_copy / "isa.md"
    text = isa.read_text()
    assert "| 28:21 | `segments_m1` |" in text
    isa.write_text(text.replace("| 28:21 | `segments_m1` |", "| 28:20 | `segments_m1` |")
                   .replace("# Instruction set", "# Instruction set (hand-edited prose)"))
    config = docs_copy / "config.md"
    config.write_text(config.read_text().replace("| `datapath.rows` | int | required |",
                                                 "| `datapath.rows` | int | 8 |"))

    messages = gen.run(docs_copy, check=True)
    assert len(messages) == 2
    assert any("isa.md" in m and "'isa-fields'" in m and "stale" in m for m in messages)
    assert any("config.md" in m and "'config-fields'" in m for m in messages)
    assert "28:20" in isa.read_text()  # check mode writes nothing

    assert gen.main(["--check", "--docs", str(docs_copy)]) == 1
    out = capsys.readouterr().out
    assert "isa-fields" in out and "config-fields" in out and "isa-opcodes" not in out

    assert len(gen.run(docs_copy)) == 2
    rewritten = _snapshot(docs_copy)
    # The blocks are back; prose outside the markers is kept; no temporary file is left behind.
    assert rewritten["isa.md"] == original["isa.md"].replace("# Instruction set",
                                                             "# Instruction set (hand-edited prose)")
    assert rewritten["config.md"] == original["config.md"]
    assert set(rewritten) == set(original)

    # Idempotent: a second run finds nothing to do and changes no byte.
    assert gen.run(docs_copy) == []
    assert gen.run(docs_copy, check=True) == []
    assert _snapshot(docs_copy) == rewritten


def test_empty_block_is_filled(docs_copy: Path):
    isa = docs_copy / "isa.md"
    blocks = gen.find_blocks(isa.read_text())
    lines = isa.read_text().splitlines(keepends=True)
    first = blocks[0]
    isa.write_text("".join(lines[:first.begin + 1] + lines[first.end:]))
    assert [first.name in m for m in gen.run(docs_copy, check=True)] == [True]
    gen.run(docs_copy)
    assert isa.read_text() == (DOCS / "isa.md").read_text()


@pytest.mark.parametrize("damage, error", [
    (lambda t: t.replace("<!-- end generated: isa-opcodes -->\n", ""), "has no end marker"),
    (lambda t: t.replace("<!-- end generated: isa-fields -->\n", ""), "starts inside block 'isa-fields'"),
    (lambda t: t.replace("generated: isa-opcodes (", "generated: isa-opcode ("), "end of block"),
    (lambda t: t + "\n<!-- generated: no-such-table (python docs/generate.py) -->\n"
                   "<!-- end generated: no-such-table -->\n", "unknown generated block 'no-such-table'"),
    (lambda t: t + "\n<!-- generated: isa-fields -->\n", "malformed marker"),
])
def test_malformed_markers_are_refused(docs_copy: Path, capsys, damage, error):
    isa = docs_copy / "isa.md"
    isa.write_text(damage(isa.read_text()))
    before = _snapshot(docs_copy)
    with pytest.raises(gen.MarkerError, match=error):
        gen.run(docs_copy)
    assert gen.main(["--docs", str(docs_copy)]) == 2
    assert error.split("'")[0] in capsys.readouterr().err
    assert _snapshot(docs_copy) == before  # nothing written


def test_block_missing_from_every_file_is_reported(docs_copy: Path):
    streams = docs_copy / "streams.md"
    text = streams.read_text()
    start = text.index("<!-- generated: program-json")
    end = text.index("<!-- end generated: program-json -->") + len("<!-- end generated: program-json -->")
    streams.write_text(text[:start] + text[end:])
    with pytest.raises(gen.MarkerError, match="program-json"):
        gen.run(docs_copy, check=True)


def test_chain_layouts_come_through_one_helper():
    layouts = gen._chain_layouts()
    assert set(layouts) == {"weights", "acts", "results"}
    assert all(callable(fn) for fn in layouts.values())


def test_slow_blocks_are_skipped_unless_asked(docs_copy: Path, monkeypatch):
    """`--check` / `make docs` never run a slow block (minutes of real-model runs, synthesis); `--slow` does."""
    assert {"accuracy-heldout", "accuracy-sfu", "versus-resources", "fpga-yosys"} <= gen.SLOW < set(gen.BLOCKS)
    calls = []

    def fake() -> str:
        calls.append(1)
        return "measured"

    for name in gen.SLOW:
        monkeypatch.setitem(gen.BLOCKS, name, fake)
    assert gen.run(docs_copy, check=True) == []
    assert gen.run(docs_copy) == [] and not calls
    stale = gen.run(docs_copy, check=True, slow=True)
    assert calls and {re.search(r"block '(.+)' is stale", m)[1] for m in stale} == gen.SLOW
    assert any("accuracy.md: generated block 'accuracy-heldout' is stale" in m for m in stale)
    assert "accuracy-heldout" in " ".join(gen.run(docs_copy, only=["accuracy-heldout"]))
    assert "\nmeasured\n" in (docs_copy / "accuracy.md").read_text()
