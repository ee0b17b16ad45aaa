"""Xilinx export: Verilog plus Vivado scripts for the Alveo U280 and the VCU1525 (no Vivado needed here).

``export_xilinx(config, board, out_dir)`` writes two designs:

``kernel/`` - the SoC as a **shell kernel** (Vitis RTL-kernel conventions)
    ``<kernel>.v``         the SoC core behind an AXI4-Lite slave with an AXI4 master to device
                           memory (Amaranth), plus a wrapper module with the shell's port names:
                           ``ap_clk``, ``ap_rst_n`` (active low, synchronous),
                           ``s_axi_control_*`` (AXI4-Lite, byte addresses; the register map of
                           docs/fpga.md), ``m_axi_gmem_*`` (AXI4 master, 64-bit addresses,
                           INCR bursts), ``interrupt``
    ``<kernel>.xdc``       ``create_clock`` on ``ap_clk`` at the config's ``clock_mhz``
    ``create_project.tcl`` Vivado project (part, sources, constraints, top), out-of-context
                           synthesis, optional implementation (``-tclargs impl``), reports
    ``package_kernel.tcl`` packages the project as an IP with ``s_axi_control`` and
                           ``m_axi_gmem`` bound to ``ap_clk``, the pointer registers bound to
                           ``m_axi_gmem`` and, with Vitis, as a ``.xo`` (``user_managed`` control)
    ``connectivity.cfg``   ``v++ --link --config`` file: ``m_axi_gmem`` to HBM[0] (U280) or
                           DDR[0] (VCU1525)
``board/`` - the **UART SoC** as a stand-alone bitstream for the board
    Amaranth's Vivado plan for :class:`~sparsa.hdl.soc.board.XilinxBoardTop` (MMCM from the
    board clock to ``clock_mhz``, the USB-UART pins of ``fpga/platforms``): ``<name>.v``,
    ``<name>.xdc``, ``<name>.tcl`` (non-project flow to a ``.bit``), ``build_<name>.sh``.

Here both are checked with Verilator lint and, on request, Yosys ``synth_xilinx`` resource
estimates (:mod:`sparsa.fpga.synth`); running Vivado is left to the user.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sparsa.config import AcceleratorConfig
from sparsa.errors import UnsupportedError
from sparsa.fpga.boards import Board
from sparsa.fpga.fit import FitEstimate, check_fit
from sparsa.hdl.soc.params import DmaConfig, SocParams
from sparsa.output import write_file

__all__ = ["XilinxExport", "export_xilinx", "kernel_name", "kernel_wrapper", "PARTS", "SHELL_NAMES",
           "MEMORY_BANKS", "DEFAULT_DMA", "PLATFORMS", "POINTER_REGISTERS"]

#: Core ports renamed in the shell wrapper (others: ``a__b`` -> ``a_b``).
SHELL_NAMES = {"irq": "interrupt"}

#: Vivado part of each Xilinx board.
PARTS = {"u280": "xcu280-fsvh2892-2L-e", "vcu1525": "xcvu9p-fsgd2104-2L-e"}

#: Device memory ``m_axi_gmem`` is connected to (``v++ --connectivity.sp``): one HBM pseudo
#: channel (256 MiB) on the U280, the first DDR4 bank on the VCU1525.
MEMORY_BANKS = {"u280": "HBM[0]", "vcu1525": "DDR[0]"}

#: Shape of the AXI4 master per board: the HBM pseudo channels are 256 bits wide, the shells'
#: DDR ports 512; bursts up to 64 beats (2 KiB / 4 KiB, never past a 4 KiB boundary).
DEFAULT_DMA = {"u280": (256, 64), "vcu1525": (512, 64)}

#: Example shell platforms (``v++ --platform``); use the one installed with your card.
PLATFORMS = {"u280": "xilinx_u280_gen3x16_xdma_1_202211_1", "vcu1525": "xilinx_vcu1525_xdma_201830_1"}

#: The DMA's 64-bit device-address registers: the kernel "arguments" bound to ``m_axi_gmem``.
POINTER_REGISTERS = (("instr_ptr", "DMA_INSTR_ADDR_LO"), ("weight_ptr", "DMA_WEIGHT_ADDR_LO"),
                     ("act_ptr", "DMA_ACT_ADDR_LO"), ("result_ptr", "DMA_RESULT_ADDR_LO"))


def kernel_name(config: AcceleratorConfig) -> str:
    """Top module of the shell kernel: ``sparsa_kernel_<config name>``."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", config.name).strip("_") or "unnamed"
    return f"sparsa_kernel_{stem}"


@dataclass
class XilinxExport:
    """Files written by :func:`export_xilinx`."""

    board: str
    part: str
    kernel: str
    kernel_dir: Path
    board_dir: Path
    files: list[Path] = field(default_factory=list)
    fit: "FitEstimate | None" = None
    ports: list[tuple[str, str, int]] = field(default_factory=list)
    dma: "DmaConfig | None" = None

    def file(self, name: str) -> Path:
        """The written file whose name is ``name`` (KeyError listing them otherwise)."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"no file {name!r}; wrote {[f.name for f in self.files]}")


def _core_ports(soc) -> list[tuple[str, str, int]]:
    """(verilog name, direction, width) of an AxiSoc's signature members."""
    from amaranth.hdl import Value
    from amaranth.lib import wiring

    ports = []
    for path, member, value in soc.signature.flatten(soc):
        ports.append(("__".join(str(p) for p in path), "input" if member.flow == wiring.In else "output",
                      len(Value.cast(value))))
    return ports


def kernel_wrapper(name: str, core: str, ports: list[tuple[str, str, int]]) -> str:
    """Verilog wrapper ``name`` around Amaranth module ``core`` with the shell's port names.

    ``s_axi_control__awvalid`` becomes ``s_axi_control_awvalid``; ``ap_rst_n`` (active low)
    is registered once and drives the core's synchronous ``rst``.
    """
    decls = ["    input  wire ap_clk,", "    input  wire ap_rst_n,"]
    # Vitis names: s_axi_control__awvalid -> s_axi_control_awvalid, m_axi_gmem__rdata -> m_axi_gmem_rdata
    conns = ["        .clk(ap_clk),", "        .rst(rst_q),"]
    for port, direction, width in ports:
        outer = SHELL_NAMES.get(port, port.replace("__", "_"))
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decl = f"    {direction:<6} wire {rng}{outer},"
        if outer == "interrupt":   # the shells' name; Verilator flags it as a C++ word
            decl = f"    /* verilator lint_off SYMRSVDWORD */\n{decl}\n    /* verilator lint_on SYMRSVDWORD */"
        decls.append(decl)
        conns.append(f"        .{port}({outer}),")
    last = decls[-1].rfind(",")
    decls[-1] = decls[-1][:last] + decls[-1][last + 1:]
    conns[-1] = conns[-1].rstrip(",")
    return "\n".join([
        f"// Shell-facing wrapper of {core} (generated by sparsa; Vitis RTL-kernel port names).",
        f"module {name} (",
        *decls,
        ");",
        "    reg rst_q = 1'b1;",
        "    always @(posedge ap_clk) rst_q <= ~ap_rst_n;",
        f"    {core} core (",
        *conns,
        "    );",
        "endmodule",
        "",
    ])


def _create_project_tcl(kernel: str, part: str, source: str, xdc: str, board: Board, clock_mhz: float,
                        dma: "DmaConfig | None" = None) -> str:
    gmem = (f"\n#             m_axi_gmem (AXI4 master, {dma.data_width}-bit data, 64-bit addresses) to "
            f"{MEMORY_BANKS[board.name]}," if dma is not None else "")
    return f"""# Vivado project for the sparsa shell kernel {kernel} on the {board.description} ({part}).
# Generated by `sparsa build --board {board.name}`; run with Vivado (2020.2 or later):
#   vivado -mode batch -source create_project.tcl               (out-of-context synthesis + reports)
#   vivado -mode batch -source create_project.tcl -tclargs impl (also place and route)
# Interfaces: ap_clk ({clock_mhz:g} MHz), ap_rst_n (active low, synchronous),
#             s_axi_control (AXI4-Lite slave, 32-bit data),{gmem}
#             interrupt (level, high when done).
set script_dir [file dirname [file normalize [info script]]]
set part {part}
set top {kernel}
create_project -force $top $script_dir/vivado -part $part
add_files -norecurse [list $script_dir/{source}]
add_files -fileset constrs_1 -norecurse [list $script_dir/{xdc}]
set_property top $top [current_fileset]
set_property -name {{STEPS.SYNTH_DESIGN.ARGS.MORE OPTIONS}} -value {{-mode out_of_context}} -objects [get_runs synth_1]
update_compile_order -fileset sources_1
file mkdir $script_dir/reports
launch_runs synth_1 -jobs 4
wait_on_run synth_1
open_run synth_1
report_utilization -file $script_dir/reports/utilization_synth.rpt
report_utilization -hierarchical -file $script_dir/reports/utilization_hierarchical_synth.rpt
report_timing_summary -file $script_dir/reports/timing_synth.rpt
if {{[lsearch -exact $argv impl] >= 0}} {{
    launch_runs impl_1 -jobs 4
    wait_on_run impl_1
    open_run impl_1
    report_utilization -file $script_dir/reports/utilization_impl.rpt
    report_timing_summary -max_paths 10 -file $script_dir/reports/timing_impl.rpt
}}
"""


def _package_tcl(kernel: str, board: Board, params: SocParams, dma: "DmaConfig | None") -> str:
    from sparsa.hdl.soc.params import Reg

    lines = [f"""# Package the {kernel} project (create_project.tcl first) as an IP, and with Vitis as a .xo kernel.
#   vivado -mode batch -source package_kernel.tcl
# The kernel's control protocol is `user_managed`: the host uses XRT's xrt::ip
# read_register/write_register on the register map of docs/fpga.md (address_map.txt),
# not ap_ctrl_hs.  Not run in sparsa's CI (no Vivado); check the result with `ipx::check_integrity`.
set script_dir [file dirname [file normalize [info script]]]
set top {kernel}
open_project $script_dir/vivado/$top.xpr
ipx::package_project -root_dir $script_dir/ip -vendor sparsa.dev -library sparsa -taxonomy /KernelIP -import_files -set_current true -force
set core [ipx::current_core]
ipx::infer_bus_interfaces xilinx.com:interface:aximm_rtl:1.0 $core
ipx::associate_bus_interfaces -busif s_axi_control -clock ap_clk $core"""]
    if dma is not None:
        span = 1 << params.byte_addr_width
        regs = [("CTRL", int(Reg.CTRL) * 4, 32), ("STATUS", int(Reg.STATUS) * 4, 32)]
        regs += [(name, int(Reg[reg]) * 4, 64) for name, reg in POINTER_REGISTERS]
        lines.append(f"""ipx::associate_bus_interfaces -busif m_axi_gmem -clock ap_clk $core
# m_axi_gmem: AXI4 master, {dma.data_width}-bit data, 64-bit addresses, INCR bursts only, full-width beats
set gmem [ipx::get_bus_interfaces m_axi_gmem -of_objects $core]
foreach {{param value}} {{HAS_BURST 0 SUPPORTS_NARROW_BURST 0}} {{
    ipx::add_bus_parameter $param $gmem
    set_property value $value [ipx::get_bus_parameters $param -of_objects $gmem]
}}
# s_axi_control register block: the pointer registers tell v++ which arguments use m_axi_gmem
set mem_map [ipx::add_memory_map s_axi_control $core]
set_property slave_memory_map_ref s_axi_control [ipx::get_bus_interfaces s_axi_control -of_objects $core]
set block [ipx::add_address_block reg0 $mem_map]
set_property range 0x{span:x} $block
set_property width 32 $block
foreach {{name offset size}} {{{" ".join(f"{n} 0x{o:03x} {z}" for n, o, z in regs)}}} {{
    set reg [ipx::add_register $name $block]
    set_property address_offset $offset $reg
    set_property size $size $reg
}}
foreach ptr {{{" ".join(n for n, _ in POINTER_REGISTERS)}}} {{
    set reg [ipx::get_registers $ptr -of_objects $block]
    ipx::add_register_parameter ASSOCIATED_BUSIF $reg
    set_property value m_axi_gmem [ipx::get_register_parameters ASSOCIATED_BUSIF -of_objects $reg]
}}""")
    lines.append("""set_property sdx_kernel true $core
set_property sdx_kernel_type rtl $core
ipx::update_checksums $core
ipx::check_integrity -kernel $core
ipx::save_core $core
close_project
if {[llength [info commands package_xo]] > 0} {
    package_xo -force -xo_path $script_dir/$top.xo -kernel_name $top -ip_directory $script_dir/ip -ctrl_protocol user_managed
}
""")
    return "\n".join(lines)


def _connectivity_cfg(kernel: str, board: Board, dma: DmaConfig) -> str:
    bank = MEMORY_BANKS[board.name]
    return f"""# v++ link configuration for {kernel} on the {board.description} (generated by sparsa).
#   v++ -l -t hw --platform {PLATFORMS[board.name]} --config connectivity.cfg {kernel}.xo -o sparsa.xclbin
# (platform: an example; use the shell installed with your card.)  m_axi_gmem ({dma.data_width}-bit,
# bursts up to {dma.max_burst} beats) reaches {bank}; allocate the host's buffers (xrt::bo) in that bank.
[connectivity]
nk={kernel}:1:{kernel}_1
sp={kernel}_1.m_axi_gmem:{bank}
"""


def _address_map(params: SocParams, dma: "DmaConfig | None") -> str:
    from sparsa.hdl.soc.params import Ctrl, Reg, Status

    lines = [params.describe(), "", "Registers (region 0; AXI4-Lite byte offset = word offset * 4):"]
    for reg in Reg:
        if reg.name.startswith("DMA_") and reg != Reg.DMA_CAPS and dma is None:
            continue
        lines.append(f"  0x{int(reg) * 4:04x}  word {int(reg):>2}  {reg.name}")
    lines.append("CTRL bits: " + ", ".join(f"{c.name}={int(c)}" for c in Ctrl
                                          if dma is not None or c != Ctrl.RUN_DMA))
    lines.append("STATUS bits: " + ", ".join(f"{st.name}={int(st)}" for st in Status
                                            if dma is not None or not st.name.startswith("DMA_")))
    if dma is not None:
        lines += ["", f"AXI4 master m_axi_gmem: {dma.data_width}-bit data, 64-bit byte addresses, INCR bursts of "
                  f"at most {dma.max_burst} beats, none across a 4 KiB boundary; DMA_CAPS = 0x{dma.caps:08x}.",
                  f"Device addresses (DMA_*_ADDR_LO/HI) must be multiples of {dma.beat_bytes} bytes.",
                  "Device-memory images: each beat padded to its stride of 32-bit words (the window layout above), "
                  "little endian.",
                  "RUN_DMA (CTRL bit 2) loads INSTR/WEIGHT/ACT_COUNT beats from the three images, runs, and stores "
                  "DMA_RESULT_COUNT result beats."]
    return "\n".join(lines) + "\n"


def export_xilinx(config: AcceleratorConfig, board: Board, out_dir: "str | os.PathLike", *,
                  baud: "int | None" = None, instr_depth: "int | None" = None, board_design: bool = True,
                  dma: "DmaConfig | None | bool" = True) -> XilinxExport:
    """Write the shell kernel and the stand-alone board design for a Xilinx board.

    ``dma``: the kernel's AXI4 master - ``True`` (default) for the board's
    :data:`DEFAULT_DMA`, a :class:`~sparsa.hdl.soc.params.DmaConfig`, or ``False`` / None
    for a kernel with ``s_axi_control`` only.

    Raises
    ------
    UnsupportedError
        ``board`` is not a Vivado board, or the design does not fit it.
    MissingToolError
        Amaranth is missing.
    """
    from sparsa.hdl.export import builtin_yosys, convert_verilog
    from sparsa.hdl.soc.board import XilinxBoardTop
    from sparsa.hdl.soc.top import AxiSoc

    if board.flow != "vivado":
        raise UnsupportedError(f"board {board.name!r} is not a Xilinx (Vivado) board")
    config.require_supported()
    params = SocParams(config) if instr_depth is None else SocParams(config, instr_depth=instr_depth)
    fit = check_fit(params, board)
    out = Path(out_dir).resolve()
    kdir, bdir = out / "kernel", out / "board"
    kdir.mkdir(parents=True, exist_ok=True)
    name = kernel_name(config)
    core = f"{name}_core"
    part = PARTS[board.name]
    result = XilinxExport(board=board.name, part=part, kernel=name, kernel_dir=kdir, board_dir=bdir, fit=fit)

    if dma is True:
        dma = DmaConfig(*DEFAULT_DMA[board.name])
    elif dma is False:
        dma = None
    elif dma is not None and not isinstance(dma, DmaConfig):
        raise TypeError(f"dma must be a DmaConfig, True or False, not {dma!r}")
    result.dma = dma
    soc = AxiSoc(params, dma=dma)
    core_text = convert_verilog(soc, core)
    result.ports = _core_ports(soc)
    files = {
        f"{name}.v": core_text + "\n" + kernel_wrapper(name, core, result.ports),
        f"{name}.xdc": (f"# {name}: ap_clk at {config.clock_mhz:g} MHz (config clock_mhz)\n"
                        f"create_clock -period {1000 / config.clock_mhz:.3f} -name ap_clk [get_ports ap_clk]\n"),
        "create_project.tcl": _create_project_tcl(name, part, f"{name}.v", f"{name}.xdc", board, config.clock_mhz, dma),
        "package_kernel.tcl": _package_tcl(name, board, params, dma),
        "address_map.txt": _address_map(params, dma),
    }
    if dma is not None:
        files["connectivity.cfg"] = _connectivity_cfg(name, board, dma)
    for fname, text in files.items():   # each file atomically (the kernel dir is Vivado's too)
        result.files.append(write_file(kdir / fname, text))

    if board_design:
        top = XilinxBoardTop(params, config.clock_mhz, board.baud if baud is None else baud, board.clock_resource)
        platform = board.platform()
        stem = f"sparsa_{re.sub(r'[^A-Za-z0-9_]', '_', config.name)}_{board.name}"
        with builtin_yosys():
            plan = platform.build(top, name=stem, do_build=False)
        plan.extract(bdir)
        result.files.extend(bdir / f for f in plan.files)
    return result
