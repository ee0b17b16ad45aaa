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


def test_kernel_has_the_axi4_master_and_its_scripts(exported, small_params):
    """m_axi_gmem (Vitis naming, 64-bit addresses, the board's data width) in the wrapper;
    package_kernel.tcl binds it to ap_clk and the pointer registers to it; connectivity.cfg
    connects it to the board's memory; address_map.txt lists the DMA registers."""
    from sparsa.fpga.xilinx import DEFAULT_DMA, MEMORY_BANKS

    exp, _ = exported
    width, burst = DEFAULT_DMA[exp.board]
    assert (exp.dma.data_width, exp.dma.max_burst) == (width, burst)
    text = exp.file(f"{exp.kernel}.v").read_text()
    wrapper = text[text.index(f"module {exp.kernel} ("):]
    for port, direction, bits in (("awaddr", "output", 64), ("araddr", "output", 64), ("awlen", "output", 8),
                                  ("arlen", "output", 8), ("awsize", "output", 3), ("awburst", "output", 2),
                                  ("wdata", "output", width), ("wstrb", "output", width // 8),
                                  ("rdata", "input", width), ("bresp", "input", 2), ("rresp", "input", 2)):
        pad = "input " if direction == "input" else "output"
        assert f"{pad} wire [{bits - 1}:0] m_axi_gmem_{port}," in wrapper, port
    for port in ("awvalid", "awready", "wvalid", "wready", "wlast", "bvalid", "bready", "arvalid", "arready",
                 "rvalid", "rready", "rlast"):
        assert re.search(rf"\b(input|output)\s+wire\s+m_axi_gmem_{port}\b", wrapper), port
    pkg = exp.file("package_kernel.tcl").read_text()
    assert "ipx::associate_bus_interfaces -busif m_axi_gmem -clock ap_clk" in pkg
    assert "instr_ptr 0x060 64 weight_ptr 0x068 64 act_ptr 0x070 64 result_ptr 0x078 64" in pkg
    assert "set_property value m_axi_gmem [ipx::get_register_parameters ASSOCIATED_BUSIF" in pkg
    assert f"set_property range 0x{1 << small_params.byte_addr_width:x} $block" in pkg
    cfg = exp.file("connectivity.cfg").read_text()
    assert "[connectivity]" in cfg and f"nk={exp.kernel}:1:{exp.kernel}_1" in cfg
    assert f"sp={exp.kernel}_1.m_axi_gmem:{MEMORY_BANKS[exp.board]}" in cfg
    assert MEMORY_BANKS == {"u280": "HBM[0]", "vcu1525": "DDR[0]"}
    amap = exp.file("address_map.txt").read_text()
    for line in ("0x0054  word 21  DMA_CAPS", "0x0060  word 24  DMA_INSTR_ADDR_LO",
                 "0x007c  word 31  DMA_RESULT_ADDR_HI", "0x0080  word 32  DMA_RESULT_COUNT", "0x0088  word 34  DMA_CYCLES", "RUN_DMA=4", "DMA_ERROR=32",
                 f"Device addresses (DMA_*_ADDR_LO/HI) must be multiples of {width // 8} bytes"):
        assert line in amap, line
    tcl = exp.file("create_project.tcl").read_text()
    assert f"m_axi_gmem (AXI4 master, {width}-bit data, 64-bit addresses)" in tcl


def test_kernel_without_dma_keeps_only_s_axi_control(small_cfg, tmp_path):
    exp = export_xilinx(small_cfg, get_board("u280"), tmp_path, instr_depth=64, board_design=False, dma=False)
    assert exp.dma is None
    assert "m_axi_gmem" not in exp.file(f"{exp.kernel}.v").read_text()
    assert "m_axi_gmem" not in exp.file("package_kernel.tcl").read_text()
    assert "connectivity.cfg" not in [f.name for f in exp.files]
    assert "DMA_INSTR_ADDR_LO" not in exp.file("address_map.txt").read_text()
    with pytest.raises(TypeError, match="dma must be a DmaConfig, True or False, not 64"):
        export_xilinx(small_cfg, get_board("u280"), tmp_path, instr_depth=64, board_design=False, dma=64)


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
    from sparsa.hdl.verilator import lint_verilog
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
    assert "m_axi_gmem: AXI4 master, 512-bit data, bursts up to 64 beats to DDR[0] (connectivity.cfg)" in out
    assert "kernel/connectivity.cfg" in out


def test_cli_build_xilinx_axi_options(tmp_path, capsys):
    from ..conftest import CONFIGS

    sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    base = ["build", str(CONFIGS / "systolic-4x4-2of4.yaml"), "--board", "u280", "--instr-depth", "64", *sets]
    assert main([*base, "-o", str(tmp_path / "a"), "--axi-width", "64", "--axi-burst", "8"]) == 0
    assert "m_axi_gmem: AXI4 master, 64-bit data, bursts up to 8 beats to HBM[0]" in capsys.readouterr().out
    assert main([*base, "-o", str(tmp_path / "b"), "--axi-width", "48"]) != 0
    assert "--axi-width / --axi-burst: data_width must be one of (32, 64, 128, 256, 512, 1024), not 48" in \
        capsys.readouterr().err


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
