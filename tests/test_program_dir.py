"""A compiled program directory read back: ``sparsa compile -o DIR`` then ``sparsa run CONFIG --program DIR``.

The round trip runs the files as written (no recompilation) bit-exact against ``expected.hex``
and with the cycles ``sparsa run --gemm`` reports for the same GEMM; a tampered, truncated or
mismatched directory is refused with one ``error:`` line naming the file and the line or field
(exit 2), and a wrong ``expected.hex`` is a reported mismatch (exit 1), never a silent pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsa import cli
from sparsa.isa import Instruction, Opcode, encode

from .rtl import require_simulator

SYSTOLIC = "configs/systolic-4x4-2of4.yaml"
CHAIN = "configs/chain-4x4-2of4.yaml"
GEMM = "5x12x6"


def _main(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """One compiled directory per config (compiled once; tests copy before they edit)."""
    out = {}
    for config in (SYSTOLIC, CHAIN):
        directory = tmp_path_factory.mktemp("prog") / Path(config).stem
        assert cli.main(["compile", config, "--gemm", GEMM, "--seed", "4", "-o", str(directory)]) == 0
        out[config] = directory
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("backend", ["isa", "cycle"])
@pytest.mark.parametrize("config", [SYSTOLIC, CHAIN])
def test_round_trip(config, backend, compiled, tmp_path, capsys):
    code, out, err = _main(["run", config, "--program", compiled[config], "--backend", backend,
                            "--json", tmp_path / "dir.json"], capsys)
    assert (code, err) == (0, [])
    assert "result                bit-exact vs expected.hex" in out
    report = json.loads((tmp_path / "dir.json").read_text())
    assert report["bit_exact"] and report["mismatched_beats"] == 0 and report["gemm"] == GEMM
    # The same GEMM compiled and run in one go reports the same cycle count.
    assert _main(["run", config, "--gemm", GEMM, "--seed", "4", "--backend", "cycle",
                  "--json", tmp_path / "gemm.json"], capsys)[0] == 0
    expected_cycles = json.loads((tmp_path / "gemm.json").read_text())["cycles"]
    assert report["cycle_model_cycles"] == expected_cycles
    assert report["cycles"] == (expected_cycles if backend == "cycle" else None)


def test_round_trip_on_the_rtl(compiled, tmp_path, capsys):
    """The Amaranth simulation takes the files' beats as they are: bit-exact, the contract's cycles."""
    require_simulator("amaranth")
    code, out, err = _main(["run", SYSTOLIC, "--program", compiled[SYSTOLIC], "--backend", "amaranth",
                            "--json", tmp_path / "r.json"], capsys)
    report = json.loads((tmp_path / "r.json").read_text())
    assert (code, err) == (0, []) and report["bit_exact"] and report["cycles"] == report["cycle_model_cycles"]


def test_a_wrong_expected_image_is_a_mismatch(compiled, tmp_path, capsys):
    """A different (well-formed) word in expected.hex: exit 1, the mismatch named, not a pass."""
    d = _copy(compiled[SYSTOLIC], tmp_path / "p")
    lines = (d / "expected.hex").read_text().splitlines()
    lines[2] = f"{int(lines[2], 16) ^ 1:0{len(lines[2])}x}"
    (d / "expected.hex").write_text("\n".join(lines) + "\n")
    code, out, _ = _main(["run", SYSTOLIC, "--program", d, "--backend", "isa"], capsys)
    assert code == 1
    assert out[-1].startswith(f"error: 1 of {len(lines)} output beats differ from {d / 'expected.hex'}; "
                              f"first at line 3: got ")


def _edit_line(path: Path, number: int, new: "str | None") -> None:
    lines = path.read_text().splitlines()
    if new is None:
        del lines[number - 1]
    else:
        lines[number - 1] = new
    path.write_text("\n".join(lines) + "\n")


def _tamper(kind: str, d: Path) -> str:
    """Damage directory ``d``; return what the error line must contain."""
    if kind == "truncated":
        lines = (d / "acts.hex").read_text().splitlines()
        _edit_line(d / "acts.hex", len(lines), None)
        return f"{d / 'acts.hex'}: {len(lines) - 1} words, but program.json says {len(lines)}"
    if kind == "bad-digit":
        word = (d / "weights.hex").read_text().splitlines()[1]
        _edit_line(d / "weights.hex", 2, "g" + word[1:])
        return f"{d / 'weights.hex'}: line 2: 'g{word[1:]}' is not a {len(word)}-digit hex word"
    if kind == "short-word":
        _edit_line(d / "expected.hex", 1, "1f")
        return f"{d / 'expected.hex'}: line 1: '1f' is not a "
    if kind == "extra-word":
        with (d / "instr.hex").open("a") as f:
            f.write(f"{encode(Instruction(Opcode.NOP)):08x}\n")
        return f"{d / 'instr.hex'}: 12 words, but program.json says 11"
    if kind == "illegal-word":
        first = int((d / "instr.hex").read_text().splitlines()[0], 16)
        _edit_line(d / "instr.hex", 1, f"{first | 1 << 30:08x}")
        return f"{d / 'instr.hex'}: line 1: illegal instruction: word 0 ({first | 1 << 30:#010x}) is "
    if kind == "missing":
        (d / "expected.hex").unlink()
        return f"{d / 'expected.hex'}: missing (a program directory from 'sparsa compile -o DIR' has program.json, "
    if kind == "bad-json":
        (d / "program.json").write_text('{"config": "systolic-4x4-2of4",\n  "beats": [1,\n}\n')
        return f"{d / 'program.json'}: line 3: not valid JSON"
    if kind == "config-name":
        meta = json.loads((d / "program.json").read_text())
        meta["config"] = "systolic-8x8-2of4"
        (d / "program.json").write_text(json.dumps(meta))
        return (f"{d / 'program.json'}: field config is 'systolic-8x8-2of4', but the config given is "
                f"'systolic-4x4-2of4'")
    if kind == "beat-width":
        meta = json.loads((d / "program.json").read_text())
        meta["beat_bits"]["acts"] += 8
        (d / "program.json").write_text(json.dumps(meta))
        return f"{d / 'program.json'}: field beat_bits.acts is "
    if kind == "counts":
        meta = json.loads((d / "program.json").read_text())
        meta["instructions"]["DRAIN"] += 1
        meta["instructions"]["LOAD_W"] -= 1
        (d / "program.json").write_text(json.dumps(meta))
        return f"{d / 'instr.hex'}: instruction counts "
    raise AssertionError(kind)


TAMPERING = ["truncated", "bad-digit", "short-word", "extra-word", "illegal-word", "missing", "bad-json",
             "config-name", "beat-width", "counts"]


@pytest.mark.parametrize("kind", TAMPERING)
def test_tampered_directory_is_one_line(kind, compiled, tmp_path, capsys):
    d = _copy(compiled[SYSTOLIC], tmp_path / "p")
    needle = _tamper(kind, d)
    code, out, err = _main(["run", SYSTOLIC, "--program", d, "--backend", "cycle"], capsys)
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_a_directory_of_another_datapath(compiled, capsys):
    """The chain's directory run with the systolic config: refused by program.json's config name."""
    code, _, err = _main(["run", SYSTOLIC, "--program", compiled[CHAIN], "--backend", "isa"], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {compiled[CHAIN] / 'program.json'}: field config is 'chain-4x4-2of4', "
                             f"but the config given is 'systolic-4x4-2of4'")


@pytest.mark.parametrize("argv,needle", [
    (["--backend", "cycle"], "give exactly one of --gemm MxKxN (compile a GEMM) and --program DIR"),
    (["--program", "{dir}", "--gemm", "2x2x2"], "give exactly one of --gemm MxKxN"),
    (["--program", "{dir}", "--backend", "reference"], "--backend 'reference' cannot run a program directory; "
                                                       "use one of isa, cycle, amaranth"),
    (["--program", "{dir}", "--seed", "3"], "--program DIR runs the directory's own operands; --seed only apply"),
    (["--program", "{dir}/instr.hex"], "instr.hex: not a directory"),
])
def test_bad_options(argv, needle, compiled, capsys):
    argv = [a.replace("{dir}", str(compiled[SYSTOLIC])) for a in argv]
    code, _, err = _main(["run", SYSTOLIC, *argv], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
