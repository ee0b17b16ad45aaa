"""The open ECP5 flow end to end on a small design: Yosys, nextpnr-ecp5, ecppack -> bitstream.

Slow (about 2 minutes on 2 cores for each build of the 4x4 SoC: ULX3S-25F with two seeds, ECPIX-5 85F).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsa.cli import main

from ..conftest import CONFIGS
from .conftest import SMALL, yowasp_missing

pytestmark = pytest.mark.slow


def _build(tmp_path, capsys, board: str, *extra: str) -> tuple[dict, str, "Path"]:
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    out = tmp_path / board
    status = main(["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", board, "-o", str(out),
                   "--instr-depth", "64", "--json", str(tmp_path / "r.json"), *sets, *extra])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads((tmp_path / "r.json").read_text())
    bit = out / f"{report['name']}.bit"
    assert bit.is_file() and bit.stat().st_size > 50_000
    util = report["place_and_route"]["utilization"]
    assert util["MULT18X18D"]["used"] == 16
    assert 0 < util["DP16KD"]["used"] <= report["fit_estimate"]["bram"]
    assert util["EHXPLLL"]["used"] == 1
    assert report["fmax_mhz"] > 20
    assert report["place_and_route"]["critical_paths"]
    assert "fmax" in text and "bitstream" in text
    return report, text, out


def test_ulx3s_25f_bitstream_seed_sweep(tmp_path, capsys):
    """Two seeds on one synthesis, placed and routed at once; the faster one is kept and packed."""
    report, text, out = _build(tmp_path, capsys, "ulx3s-25f", "--seed", "1,2", "--jobs", "2")
    assert report["place_and_route"]["utilization"]["MULT18X18D"]["available"] == 28
    fmax = {int(k): v for k, v in report["seeds"].items()}
    assert set(fmax) == {1, 2} and all(v > 20 for v in fmax.values())
    assert report["seed"] == max(fmax, key=lambda k: (fmax[k], -k))
    assert report["fmax_mhz"] == fmax[report["seed"]]
    name = report["name"]
    for seed in (1, 2):
        assert (out / f"{name}.seed{seed}.report.json").is_file() and (out / f"{name}.seed{seed}.config").is_file()
    assert (out / f"{name}.config").read_bytes() == (out / f"{name}.seed{report['seed']}.config").read_bytes()
    assert f"-> kept seed {report['seed']}" in text


def test_ecpix5_85f_bitstream(tmp_path, capsys):
    """The second ECP5 board: the 5G part in speed grade 8, PLL from its 100 MHz oscillator."""
    report, text, _ = _build(tmp_path, capsys, "ecpix5-85f")
    assert report["place_and_route"]["utilization"]["MULT18X18D"]["available"] == 156
    assert report["pll"]["f_in_mhz"] == 100 and report["seeds"] == {"1": report["fmax_mhz"]}
