# amaranth: UnusedElaboratable=no
"""The SFU (sequencer + VMEM + lanes + scalar unit) against the interpreter, and its cycles
against :func:`sparsa.sfu.schedule.command_cycles`, for every command the gateware runs."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.hdl.sfu.sfu import Sfu
from sparsa.sfu import ops
from sparsa.sfu.command import SfuCommand, SfuOp, row_words
from sparsa.sfu.fixed import FX_MAX, FX_MIN, to_fx
from sparsa.sfu.schedule import command_cycles
from sparsa.sfu.timing import LANE_LATENCY, SCALAR_CYCLES
from sparsa.sim.sfu import SfuState, execute

from ..helpers import expect_error, simulate

DEPTH = 64


def _payload(cmd: SfuCommand) -> dict:
    return {"op": int(cmd.op), "rows": cmd.rows, "n": cmd.n, "dst": cmd.dst, "a": cmd.a, "b": cmd.b,
            "b_step": cmd.b_step, "shift": cmd.shift, "mantissa": cmd.mantissa, "exponent": cmd.exponent,
            "bits4": int(cmd.bits == 4), "eps_code": cmd.eps_code, "causal": int(cmd.causal), "offset": cmd.offset,
            "unit": cmd.unit, "mantissa_bits": cmd.mantissa_bits, "scale_dst": cmd.scale_dst,
            "row_exponent": int(cmd.row_exponent), "exp_dst": cmd.exp_dst, "scale_src": cmd.scale_src,
            "exp_src": cmd.exp_src, "qmax": cmd.qmax}


def run_rtl(lanes: int, init: np.ndarray, cmds: list[SfuCommand]) -> tuple[np.ndarray, list[int], int]:
    """Load VMEM through the host port, run ``cmds`` back to back, read VMEM back; cycles from
    each command's acceptance to its done pulse, inclusive; the exponent register at the end."""
    dut = Sfu(lanes, DEPTH)
    out = np.zeros_like(init)
    cycles: list[int] = []
    final = {}

    async def bench(ctx):
        for addr in range(DEPTH):
            ctx.set(dut.host_addr, addr)
            ctx.set(dut.host_wdata, [int(v) for v in init[addr]])
            ctx.set(dut.host_we, 1)
            await ctx.tick()
        ctx.set(dut.host_we, 0)
        for cmd in cmds:
            ctx.set(dut.cmd.payload, _payload(cmd))
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            n = 2          # the accepting cycle and this one (the first set-up cycle)
            while True:
                done = ctx.get(dut.done)
                await ctx.tick()
                if done:
                    break
                n += 1
            cycles.append(n)
        for addr in range(DEPTH):
            ctx.set(dut.host_addr, addr)
            await ctx.tick()
            out[addr] = ctx.get(dut.host_rdata)
        final["exponent"] = ctx.get(dut.exponent)

    simulate(dut, bench)
    return out, cycles, final["exponent"]


def _check(lanes, init, cmds):
    state = SfuState(lanes, DEPTH)
    state.vmem[:] = init
    for cmd in cmds:
        execute(state, cmd)
    got, cycles, exponent = run_rtl(lanes, init, cmds)
    np.testing.assert_array_equal(got, state.vmem)
    if any(c.op == SfuOp.QUANTIZE for c in cmds):
        assert exponent == state.exponent
    assert cycles == [command_cycles(c, lanes, LANE_LATENCY, SCALAR_CYCLES) for c in cmds]


def _random_vmem(rng, lanes, lo=-(1 << 20), hi=1 << 20):
    return rng.integers(lo, hi, size=(DEPTH, lanes), dtype=np.int64)


@pytest.mark.parametrize("lanes", [2, 4])
def test_elementwise_commands(lanes):
    rng = np.random.default_rng(lanes)
    init = _random_vmem(rng, lanes)
    n = 3 * lanes - 1
    w = row_words(n, lanes)
    init[40:48] = rng.integers(0, 1 << 16, size=(8, lanes))
    cmds = [
        SfuCommand(SfuOp.ADD, 2, n, dst=20, a=0, b=8, b_step=w),
        SfuCommand(SfuOp.MUL, 2, n, dst=0, a=0, b=8, b_step=w),
        SfuCommand(SfuOp.SILU, 1, n, dst=30, a=20),
        SfuCommand(SfuOp.GELU, 2, n, dst=20, a=20),
        SfuCommand(SfuOp.REQUANT, 2, n, dst=50, a=0, b=40, b_step=0, shift=11),
        SfuCommand(SfuOp.ROPE, 2, 2 * lanes, dst=56, a=8, b=0, b_step=2),
        SfuCommand(SfuOp.QSTATIC, 2, n, dst=0, a=0, mantissa=3, exponent=-2, bits=8),
        SfuCommand(SfuOp.QSTATIC, 2, n, dst=20, a=0, mantissa=3, exponent=-2, bits=8, qmax=119),
    ]
    _check(lanes, init, cmds)


@pytest.mark.parametrize("lanes", [2, 4])
def test_softmax_commands(lanes):
    rng = np.random.default_rng(10 + lanes)
    init = _random_vmem(rng, lanes, -(8 << 16), 8 << 16)
    n = 2 * lanes + 1
    cmds = [
        SfuCommand(SfuOp.SOFTMAX, 3, n, dst=30, a=0),
        SfuCommand(SfuOp.SOFTMAX, 3, n, dst=0, a=0, causal=True, offset=1),
    ]
    _check(lanes, init, cmds)


@pytest.mark.parametrize("lanes", [2, 4])
def test_norm_commands(lanes):
    rng = np.random.default_rng(20 + lanes)
    init = _random_vmem(rng, lanes)
    n = 3 * lanes - 1
    init[60:64] = to_fx(rng.normal(size=(4, lanes)))
    cmds = [
        SfuCommand(SfuOp.RMSNORM, 2, n, dst=20, a=0, b=60, eps_code=ops.norm_eps_code(1e-5, n)),
        SfuCommand(SfuOp.LAYERNORM, 2, n, dst=0, a=0, b=60, eps_code=ops.norm_eps_code(1e-12, n)),
    ]
    _check(lanes, init, cmds)


def test_saturating_operands():
    lanes = 2
    init = np.full((DEPTH, lanes), FX_MAX, dtype=np.int64)
    init[::2] = FX_MIN
    _check(lanes, init, [SfuCommand(SfuOp.ADD, 4, 2, dst=16, a=0, b=1, b_step=2),
                         SfuCommand(SfuOp.MUL, 4, 2, dst=24, a=0, b=1, b_step=2)])


@pytest.mark.parametrize("lanes, per_token, bits, mbits", [(2, True, 8, 16), (4, False, 4, 16), (2, False, 8, 6)])
def test_quantize_commands(lanes, per_token, bits, mbits):
    """Codes, per-unit mantissas (in VMEM) and the exponent, with cycles from quantize_cycles."""
    rng = np.random.default_rng(30 + lanes + bits)
    init = _random_vmem(rng, lanes, -(1 << 26), 1 << 26)
    init[0, 0] = FX_MIN                                  # |FX_MIN| = 2**31 is a tensor max the scalar unit takes
    n = 4 * lanes
    cmds = [SfuCommand(SfuOp.QUANTIZE, 3, n, dst=0, a=0, unit=n if per_token else lanes, bits=bits,
                       mantissa_bits=mbits, scale_dst=40)]
    _check(lanes, init, cmds)


@pytest.mark.parametrize("lanes, n, unit, bits, mbits", [(2, 5, 5, 8, 16), (4, 8, 4, 4, 16), (4, 6, 6, 8, 9),
                                                         (2, 4, 2, 8, 24)])
def test_quantize_row_exponent_commands(lanes, n, unit, bits, mbits):
    """QUANTIZE with row_exponent: each row its own exponent (written to exp_dst, L per word),
    per-token units of any row length; cycles from quantize_cycles."""
    rng = np.random.default_rng(40 + lanes + n)
    init = _random_vmem(rng, lanes, -(1 << 26), 1 << 26)
    init[0, 0] = FX_MIN
    init[row_words(n, lanes)] >>= 20                     # a row of small values: a larger exponent
    rows = 5 if lanes == 2 else 3
    cmds = [SfuCommand(SfuOp.QUANTIZE, rows, n, dst=32, a=0, unit=unit, bits=bits, mantissa_bits=mbits,
                       scale_dst=48, row_exponent=True, exp_dst=56)]
    _check(lanes, init, cmds)


@pytest.mark.parametrize("lanes", [2, 4])
def test_quantize_row_exponent_then_requant_row(lanes):
    """A linear layer's SFU steps: QUANTIZE per row writes mantissas and exponents, REQUANT_ROW
    reads them for raw sums (the largest and smallest 32-bit ones, shifts that saturate)."""
    rng = np.random.default_rng(50 + lanes)
    init = _random_vmem(rng, lanes, -(1 << 26), 1 << 26)
    n, rows = 3 * lanes - 1, 3
    init[20:30] = rng.integers(-(1 << 31), 1 << 31, size=(10, lanes))    # raw sums
    init[20, 0], init[20, 1] = FX_MIN, FX_MAX
    init[40:46] = rng.integers(0, 1 << 16, size=(6, lanes))              # channel mantissas
    init[40, 0] = 0xFFFF
    cmds = [SfuCommand(SfuOp.QUANTIZE, rows, n, dst=9, a=0, unit=n, scale_dst=48, row_exponent=True, exp_dst=50),
            SfuCommand(SfuOp.REQUANT_ROW, rows, n, dst=30, a=20, b=40, shift=-20, scale_src=48, exp_src=50),
            SfuCommand(SfuOp.REQUANT_ROW, rows, n, dst=20, a=20, b=40, shift=63, scale_src=48, exp_src=50),
            SfuCommand(SfuOp.REQUANT_ROW, 2, n, dst=30, a=9, b=40, b_step=row_words(n, lanes), shift=-63,
                       scale_src=40, exp_src=0)]          # any words: low 16 bits, clamped shifts
    _check(lanes, init, cmds)


def test_constructor_checks():
    expect_error(ValueError, "lanes must be a power of two in 2..32, not 3", lambda: Sfu(3, 16))
    expect_error(ValueError, "depth must be an int in 2..65536, not 1", lambda: Sfu(2, 1))
    expect_error(ValueError, "scale_depth must be an int in 1..65536, not 0", lambda: Sfu(2, 16, 0))


ALL_OPS = [SfuOp.ADD, SfuOp.MUL, SfuOp.REQUANT, SfuOp.SILU, SfuOp.GELU, SfuOp.ROPE, SfuOp.QSTATIC,
           SfuOp.SOFTMAX, SfuOp.RMSNORM, SfuOp.LAYERNORM, SfuOp.QUANTIZE, SfuOp.REQUANT_ROW, SfuOp.QUANTIZE]


def _random_command(rng, lanes, ops_=ALL_OPS):
    """A random command the gateware runs, with its operands placed in a 64-word VMEM."""
    op = ops_[rng.integers(len(ops_))]
    n = int(rng.integers(1, 4 * lanes + 1))
    if op == SfuOp.ROPE:
        n += n % 2
    rows = int(rng.integers(1, 4))
    w = row_words(n, lanes)
    kw = dict(dst=int(rng.choice([0, 32])), a=0, b=20, b_step=int(rng.choice([0, w])))
    if op == SfuOp.REQUANT:
        kw["shift"] = int(rng.integers(-2, 30))
    if op == SfuOp.QSTATIC:
        kw.update(mantissa=int(rng.integers(1, 1 << 20)), exponent=int(rng.integers(-8, 40)),
                  bits=int(rng.choice([4, 8])))
        kw["qmax"] = int(rng.choice([0, 1, (1 << (kw["bits"] - 1)) - 2]))
    if op == SfuOp.SOFTMAX:
        kw.update(causal=bool(rng.integers(2)), offset=int(rng.integers(0, 6)))
    if op in (SfuOp.RMSNORM, SfuOp.LAYERNORM):
        kw["eps_code"] = ops.norm_eps_code(float(rng.choice([0.0, 1e-5, 1e-12])), n)
    if op == SfuOp.REQUANT_ROW:          # row scalars from the mantissa area or any words; all shifts
        kw.update(shift=int(rng.integers(-63, 64)), scale_src=int(rng.choice([20, 48, 0])),
                  exp_src=int(rng.choice([56, 60, 8])))
        if kw["dst"] == 0:
            kw.update(scale_src=int(rng.choice([20, 48])), exp_src=int(rng.choice([56, 60])))
    if op == SfuOp.QUANTIZE:
        n = lanes * int(rng.integers(1, 4)) - int(rng.integers(0, 2))
        row_exponent = bool(rng.integers(2))
        units = [n] if n % lanes else [lanes, n]
        kw = dict(dst=int(rng.choice([0, 32])), a=0, unit=int(rng.choice(units)), scale_dst=48,
                  bits=int(rng.choice([4, 8])), mantissa_bits=int(rng.integers(2, 25)),
                  row_exponent=row_exponent, exp_dst=56 if row_exponent else 0)
    return SfuCommand(op, rows, n, **kw)


@pytest.mark.parametrize("seed", range(3))
def test_random_command_sequences(seed):
    """Random commands back to back on random VMEM contents (operands of every magnitude)."""
    rng = np.random.default_rng(100 + seed)
    lanes = [2, 4, 8][seed]
    init = rng.integers(-(1 << 24), 1 << 24, size=(DEPTH, lanes), dtype=np.int64)
    init[20:32] = rng.integers(0, 1 << 16, size=(12, lanes))           # mantissas / gains / tables
    cmds = [_random_command(rng, lanes) for _ in range(8)]
    _check(lanes, init, cmds)


@pytest.mark.parametrize("seed", range(2))
def test_random_row_scale_sequences(seed):
    """QUANTIZE (both modes, any per-token row length) and REQUANT_ROW back to back with the
    element-wise commands around them, REQUANT_ROW reading whatever the VMEM holds."""
    rng = np.random.default_rng(200 + seed)
    lanes = [2, 4][seed]
    init = rng.integers(-(1 << 24), 1 << 24, size=(DEPTH, lanes), dtype=np.int64)
    init[20:32] = rng.integers(0, 1 << 16, size=(12, lanes))
    init[56:64] = rng.integers(-70, 70, size=(8, lanes))               # exponents, some shifts clamped
    cmds = [_random_command(rng, lanes, [SfuOp.QUANTIZE, SfuOp.REQUANT_ROW, SfuOp.REQUANT_ROW, SfuOp.ADD])
            for _ in range(8)]
    _check(lanes, init, cmds)


def test_cli_verilog_writes_the_configs_sfu(tmp_path, capsys):
    """``sparsa verilog`` on a config with an ``sfu:`` section writes ``sfu.v`` (module ``sfu``,
    the section's geometry) next to the accelerator and names it in the JSON."""
    import json

    from sparsa.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: with-sfu\ndatapath: {rows: 4, cols: 4}\nsfu: {lanes: 2, vmem_words: 64}\n")
    out = tmp_path / "v"
    assert main(["verilog", str(cfg), "-o", str(out), "--json", str(tmp_path / "v.json")]) == 0
    text = (out / "sfu.v").read_text()
    assert "module sfu(" in text.replace(" (", "(")
    assert "host_wdata" in text
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["sfu"] == {"module": "sfu", "path": str(out / "sfu.v"), "lanes": 2, "vmem_words": 64,
                           "scale_words": 256}
