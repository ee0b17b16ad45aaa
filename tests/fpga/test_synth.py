"""Yosys resource estimates: one hard multiplier per PE on UltraScale+ and on ECP5.

Slow: each synthesis takes 5-15 s, plus ~95 s once per machine while YoWASP compiles Yosys
(cached in ~/.cache/YoWASP).
"""

from __future__ import annotations

import json

import pytest

from sparsa.cli import main
from sparsa.fpga.synth import synthesize
from sparsa.hdl.export import generate_verilog, resource_summary

from ..conftest import CONFIGS
from .conftest import yowasp_missing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def verilog_4x4(small_cfg, tmp_path_factory):
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    return generate_verilog(small_cfg, tmp_path_factory.mktemp("synth-src"))


@pytest.mark.parametrize("target,dsp_cell", [("xcu280", "DSP48E2"), ("ecp5-85f", "MULT18X18D")])
def test_one_dsp_per_pe(verilog_4x4, small_cfg, target, dsp_cell, tmp_path):
    rep = synthesize([verilog_4x4.path], verilog_4x4.name, target, tmp_path)
    macs = small_cfg.rows * small_cfg.cols
    assert rep.dsp == rep.cells[dsp_cell] == macs
    # about one flip-flop per architectural register bit: Yosys merges flip-flops with equal
    # inputs (e.g. the sign-extension bits of the top row's partial sums) and may add a few
    # around block RAMs (measured 4x4: 1522 register bits -> 1469 FDRE, 1341 TRELLIS_FF)
    regs = resource_summary(small_cfg).register_bits
    assert 0.8 * regs <= rep.ff <= 1.1 * regs
    assert rep.lut > 0


def test_cli_synth_json(verilog_4x4, capsys):
    assert main(["synth", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--target", "xcvu9p", "--json",
                 "--set", "buffers.accumulator_depth=64"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dsp"] == 16 and data["available"]["dsp"] == 6840
    assert {"lut", "ff", "bram", "uram", "cells"} <= set(data)


def test_kernel_dma_costs_flip_flops_and_luts_but_no_dsp_or_bram(small_cfg, tmp_path):
    """Yosys on the shell kernel without and with m_axi_gmem (64 bit): same DSPs (one per PE)
    and block RAMs; the DMA adds at least its beat buffers and address registers in FFs."""
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    from sparsa.fpga.boards import get_board
    from sparsa.fpga.xilinx import export_xilinx
    from sparsa.hdl.soc.params import DmaConfig

    reports = {}
    for name, dma in (("lite", False), ("dma", DmaConfig(64, 16))):
        exp = export_xilinx(small_cfg, get_board("u280"), tmp_path / name, instr_depth=64, board_design=False, dma=dma)
        reports[name] = synthesize([exp.file(f"{exp.kernel}.v")], exp.kernel, "xcu280", tmp_path / f"synth-{name}")
    lite, dma = reports["lite"], reports["dma"]
    assert lite.dsp == dma.dsp == small_cfg.rows * small_cfg.cols
    assert lite.bram == dma.bram
    # read + write beat buffers (2 x 64) + strobes + 4 x 64-bit addresses + the burst address
    assert dma.ff - lite.ff >= 2 * 64 + 8 + 4 * 64 + 64
    assert dma.lut > lite.lut


def test_cli_synth_reports_the_sfu_next_to_the_matrix_datapath(verilog_4x4, capsys):
    """A config with an ``sfu:`` section: the SFU is synthesized as its own top, 11 multipliers per
    lane (docs/sfu.md: two 32 x 32 products of four MULT18X18 each, interpolation, the squarer, and
    REQUANT_ROW's 16 x 16 row-scale product),
    and the totals are the sums of the two units."""
    assert main(["synth", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--target", "ecp5-85f", "--json",
                 "--set", "buffers.accumulator_depth=64", "--set", "sfu.lanes=2", "--set", "sfu.vmem_words=64",
                 "--set", "sfu.scale_words=16"]) == 0
    data = json.loads(capsys.readouterr().out)
    matrix, sfu = data["units"]["matrix"], data["units"]["sfu"]
    assert matrix["dsp"] == 16 and sfu["dsp"] == 2 * 11
    assert sfu["bram"] >= 1 and sfu["ff"] > matrix["ff"]
    for key in ("dsp", "lut", "ff", "bram"):
        assert data[key] == matrix[key] + sfu[key]
    assert data["macs_per_dsp"] == 1.0

