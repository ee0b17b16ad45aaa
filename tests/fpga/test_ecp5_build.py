"""The open ECP5 flow end to end on a small design: Yosys, nextpnr-ecp5, ecppack -> bitstream.

Slow (about 2 minutes on 2 cores for the 4x4 SoC on a ULX3S-25F).
"""

from __future__ import annotations

import json

import pytest

from sparsa.cli import main

from ..conftest import CONFIGS
from .conftest import SMALL, yowasp_missing

pytestmark = pytest.mark.slow


def test_ulx3s_25f_bitstream(tmp_path, capsys):
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    out = tmp_path / "ulx3s"
    status = main(["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", "ulx3s-25f", "-o", str(out),
                   "--instr-depth", "64", "--json", str(tmp_path / "r.json"), *sets])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads((tmp_path / "r.json").read_text())
    bit = out / f"{report['name']}.bit"
    assert bit.is_file() and bit.stat().st_size > 50_000
    util = report["place_and_route"]["utilization"]
    assert util["MULT18X18D"]["used"] == 16 and util["MULT18X18D"]["available"] == 28
    assert 0 < util["DP16KD"]["used"] <= report["fit_estimate"]["bram"]
    assert util["EHXPLLL"]["used"] == 1
    assert report["fmax_mhz"] > 20
    assert report["place_and_route"]["critical_paths"]
    assert "fmax" in text and "bitstream" in text
