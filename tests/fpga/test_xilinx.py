"""Xilinx export (Alveo U280, VCU1525): Vivado TCL / XDC / wrapper contents, kernel lint, AXI4-Lite."""

from __future__ import annotations

import re

import pytest
from amaranth.sim import Simulator

from sparsa.cli import main
from sparsa.fpga.boards import get_board
from sparsa.fpga.xilinx import PARTS, export_xilinx
from sparsa.hdl.soc.params import SOC_ID, Reg, Region
from sparsa.hdl.soc.top import AxiSoc

from .conftest import SMALL

_EXPORTS = {}


@pytest.fixture(scope="module", params=["u280", "vcu1525"])
def exported(request, small_cfg, tmp_path_factory):
    name = request.param
    if name not in _EXPORTS:
        out = tmp_path_factory.mktemp(f"xilinx-{name}")
        _EXPORTS[name] = (export_xilinx(small_cfg, get_board(name), out, instr_depth=64), out)
    return _EXPORTS[name]


def test_project_tcl_names_part_sources_constraints_and_top(exported, small_cfg):
    exp, _ = exported
    tcl = exp.file("create_project.tcl").read_text()
    assert f"set part {PARTS[exp.board]}" in tcl
    assert f"set top {exp.kernel}" in tcl
    assert f"add_files -norecurse [list $script_dir/{exp.kernel}.v]" in tcl
    assert f"add_files -fileset constrs_1 -norecurse [list $script_dir/{exp.kernel}.xdc]" in tcl
    assert "-mode out_of_context" in tcl and "launch_runs synth_1" in tcl and "report_utilization" in tcl
    xdc = exp.file(f"{exp.kernel}.xdc").read_text()
    assert f"create_clock -period {1000 / small_cfg.clock_mhz:.3f} -name ap_clk [get_ports ap_clk]" in xdc
    pkg = exp.file("package_kernel.tcl").read_text()
    assert "ipx::associate_bus_interfaces -busif s_axi_control -clock ap_clk" in pkg
    assert "-ctrl_protocol user_managed" in pkg


def test_kernel_wrapper_has_the_shell_ports(exported, small_params):
    exp, _ = exported
    text = exp.file(f"{exp.kernel}.v").read_text()
    wrapper = text[text.index(f"module {exp.kernel} ("):]
    for port in ("ap_clk", "ap_rst_n", "s_axi_control_awvalid", "s_axi_control_wdata", "s_axi_control_rdata",
                 "s_axi_control_bresp", "interrupt"):
        assert re.search(rf"\b(input|output)\s+wire\s+(\[\d+:0\]\s+)?{port}\b", wrapper), port
    aw = small_params.byte_addr_width
    assert f"input  wire [{aw - 1}:0] s_axi_control_araddr" in wrapper
    assert "rst_q <= ~ap_rst_n" in wrapper


def test_board_design_uses_the_board_pins(exported):
    exp, _ = exported
    xdc = next(f for f in exp.files if f.parent == exp.board_dir and f.suffix == ".xdc").read_text()
    tcl = next(f for f in exp.files if f.parent == exp.board_dir and f.suffix == ".tcl").read_text()
    pins = {"u280": ("BJ43", "A28", "B33"), "vcu1525": ("AY37", "BF18", "BB20")}[exp.board]
    for pin in pins:
        assert f"LOC {pin}" in xdc
    assert f"-part {PARTS[exp.board]}" in tcl and "write_bitstream" in tcl
    verilog = next(f for f in exp.files if f.parent == exp.board_dir and f.name.endswith(f"{exp.board}.v")).read_text()
    assert "MMCME4_BASE" in verilog and "BUFG" in verilog


def test_kernel_verilog_lints_clean(exported):
    from sparsa.hdl.export import lint_verilog
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    exp, _ = exported
    lint_verilog(exp.file(f"{exp.kernel}.v"), top=exp.kernel)


def test_cli_build_xilinx(tmp_path, capsys):
    from ..conftest import CONFIGS

    sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    assert main(["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", "vcu1525", "-o", str(tmp_path),
                 "--instr-depth", "64", *sets]) == 0
    out = capsys.readouterr().out
    assert "create_project.tcl" in out and "fit estimate: 16 DSP48E2 of 6840" in out
    assert (tmp_path / "kernel" / "create_project.tcl").is_file()


def test_axi_lite_register_and_memory_access(small_params):
    """AXI4-Lite transactions (byte addresses) reach the same registers and memories as the UART."""
    p = small_params
    dut = AxiSoc(p)
    axi = dut.s_axi_control
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = {}

    async def write(ctx, word_addr, data):
        ctx.set(axi.awaddr, word_addr * 4)
        ctx.set(axi.wdata, data)
        ctx.set(axi.wstrb, 0xF)
        ctx.set(axi.awvalid, 1)
        ctx.set(axi.wvalid, 1)
        await ctx.tick().until(axi.awready & axi.wready)
        ctx.set(axi.awvalid, 0)
        ctx.set(axi.wvalid, 0)
        ctx.set(axi.bready, 1)
        await ctx.tick().until(axi.bvalid)
        ctx.set(axi.bready, 0)

    async def read(ctx, word_addr):
        ctx.set(axi.araddr, word_addr * 4)
        ctx.set(axi.arvalid, 1)
        await ctx.tick().until(axi.arready)
        ctx.set(axi.arvalid, 0)
        ctx.set(axi.rready, 1)
        data, = await ctx.tick().sample(axi.rdata).until(axi.rvalid)
        ctx.set(axi.rready, 0)
        return data

    async def tb(ctx):
        got["id"] = await read(ctx, p.reg_addr(Reg.ID))
        await write(ctx, p.reg_addr(Reg.SCRATCH), 0x5A5A1234)
        got["scratch"] = await read(ctx, p.reg_addr(Reg.SCRATCH))
        mem = p.memory(Region.ACTS)
        for w in range(mem.words):
            await write(ctx, p.beat_addr(Region.ACTS, 2) + w, 0x1000 + w)
        got["beat"] = [await read(ctx, p.beat_addr(Region.ACTS, 2) + w) for w in range(mem.words)]
        got["irq"] = ctx.get(dut.irq)
    sim.add_testbench(tb)
    sim.run()
    assert got == {"id": SOC_ID, "scratch": 0x5A5A1234,
                   "beat": [0x1000 + w for w in range(p.memory(Region.ACTS).words)], "irq": 0}
