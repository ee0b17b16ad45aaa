"""``sparsa block``: the compiled block from the command line, its JSON, and its refusals."""

from __future__ import annotations

import json

import pytest

from sparsa.cli import main

from .conftest import CONFIGS

SYSTOLIC = str(CONFIGS / "systolic-8x8-2of4.yaml")
CHAIN = str(CONFIGS / "chain-4x4-2of4.yaml")


@pytest.mark.parametrize("cfg,model,phase", [(SYSTOLIC, "tiny-llama", "decode"), (CHAIN, "tiny-bert", "prefill")])
def test_block_json(tmp_path, capsys, cfg, model, phase):
    out = tmp_path / "b.json"
    args = ["block", cfg, "--set", "sfu.lanes=8", "--model", model, "--phase", phase, "--backend", "cycle",
            "--json", str(out), "--text", "A held-out sentence the calibration never saw."]
    args += ["--context", "21"] if phase == "decode" else ["--seq", "5"]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["bit_exact"] is True and r["cycles"] == r["cycle_model_cycles"] > 0
    assert set(r["cycles_by_unit"]) == {"matrix", "sfu", "memory"}
    assert sum(r["cycles_by_unit"].values()) == r["cycles"]
    assert "bit-exact against the integer reference (output and KV cache): yes" in capsys.readouterr().out


def test_block_reference_and_isa(tmp_path):
    for backend in ("reference", "isa"):
        out = tmp_path / f"{backend}.json"
        assert main(["block", SYSTOLIC, "--set", "sfu.lanes=8", "--model", "tiny-llama", "--seq", "3",
                     "--backend", backend, "--json", str(out)]) == 0
        r = json.loads(out.read_text())
        assert r["bit_exact"] is True and r["cycles"] is None and r["cycle_model_cycles"] > 0


@pytest.mark.parametrize("args,message", [
    (["--model", "tiny-llama"], "no sfu: section"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--seq", "0"], "--seq must be at least 1, not 0"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--phase", "decode", "--context", "200"],
     "holds 128 positions, not 201"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--block", "2"], "--block must be in 0..1"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--context", "4"], "--context 4 belongs to --phase decode"),
    (["--set", "sfu.lanes=8", "--model", "tiny-llama", "--backend", "verilator"], "not attached to a datapath top"),
    (["--set", "sfu.lanes=8", "--set", "sfu.vmem_words=32", "--model", "tiny-llama"], "sfu.vmem_words=32"),
])
def test_block_refusals(tmp_path, capsys, args, message):
    out = tmp_path / "never.json"
    assert main(["block", SYSTOLIC, *args, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
