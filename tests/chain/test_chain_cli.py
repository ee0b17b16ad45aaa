"""``sparsa run / compile / estimate`` on DSP-chain configs."""

from __future__ import annotations

import json

from sparsa.cli import main

from ..conftest import CONFIGS

CFG = str(CONFIGS / "chain-4x4-packed.yaml")


def test_run_cycle_and_amaranth(capsys, tmp_path):
    for backend in ("cycle", "amaranth"):
        assert main(["run", CFG, "--gemm", "3x70x9", "--backend", backend, "--json", str(tmp_path / "r.json")]) == 0
        assert "bit-exact vs NumPy reference" in capsys.readouterr().out
        assert json.loads((tmp_path / "r.json").read_text())["bit_exact"]


def test_compile_writes_images(capsys, tmp_path):
    assert main(["compile", CFG, "--gemm", "3x70x9", "-o", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "program.json").read_text())
    assert meta["datapath"] == "dsp_chain" and meta["instructions"]["LOAD_A"] >= 1
    assert len((tmp_path / "weights.hex").read_text().splitlines()) == meta["beats"]["weights"]


def test_estimate_u280_flightllm(capsys):
    assert main(["estimate", str(CONFIGS / "u280-flightllm.yaml"), "--workload", "llama2-7b", "--phase", "decode",
                 "--context", "1024"]) == 0
    out = capsys.readouterr().out
    assert "dsp_chain" in out and "tokens/s" in out
