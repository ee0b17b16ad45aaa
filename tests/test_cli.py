"""The ``sparsa`` command line: main paths and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparsa.cli import main

from .conftest import CONFIGS

CFG = str(CONFIGS / "systolic-4x4-2of4.yaml")


def test_schema_to_file(tmp_path):
    out = tmp_path / "s.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "sparsa accelerator config"


def test_run_cycle_backend(capsys, tmp_path):
    assert main(["run", CFG, "--gemm", "37x300x45", "--seed", "1", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "bit-exact vs NumPy reference" in out and "speedup vs dense" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["bit_exact"] and report["speedup_vs_dense"] > 1.8


def test_compile_writes_images(tmp_path):
    assert main(["compile", CFG, "--gemm", "3x10x5", "-o", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "program.json").read_text())
    assert len((tmp_path / "weights.hex").read_text().split()) == meta["beats"]["weights"]
    assert len((tmp_path / "acts.hex").read_text().split()) == meta["beats"]["acts"]
    assert len((tmp_path / "expected.hex").read_text().split()) == meta["beats"]["outputs"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_user_supplied_matrices(tmp_path):
    import numpy as np

    np.save(tmp_path / "w.npy", np.arange(-20, 20).reshape(8, 5))
    np.save(tmp_path / "a.npy", np.ones((2, 8), dtype=np.int8))
    assert main(["run", CFG, "--gemm", "2x8x5", "--weights", str(tmp_path / "w.npy"),
                 "--acts", str(tmp_path / "a.npy"), "--backend", "isa"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["run", CFG, "--gemm", "3x0x5"], "has a zero dimension"),
    (["run", CFG, "--gemm", "3by5"], "--gemm must look like MxKxN"),
    (["run", CFG, "--gemm", "3x8x5", "--sparsity", "5:4"], "N:M needs 1 <= N <= M, got 5:4"),
    (["run", CFG, "--gemm", "3x8x5", "--sparsity", "1:8"], "needs groups of 8"),
    (["run", "nope.yaml", "--gemm", "3x8x5"], "does not exist"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_weights_file(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "w.npy", np.full((8, 5), 300))
    assert main(["run", CFG, "--gemm", "2x8x5", "--weights", str(tmp_path / "w.npy")]) == 2
    assert "not int8-representable" in capsys.readouterr().err


def test_console_script_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datapath: {rows: 4, cols: 4, colour: red}\n")
    proc = subprocess.run([sys.executable, "-m", "sparsa.cli", "run", str(bad), "--gemm", "1x4x4"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown key 'datapath.colour'" in proc.stderr and "Traceback" not in proc.stderr
