"""The SFU interpreter runs every command as the operation it names, on rows laid out in VMEM,
and refuses a command that does not fit (one line naming the field and the limit)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import ConfigError, FormatError
from sparsa.formats.actscale import ActScaleSpec
from sparsa.sfu import ops
from sparsa.sfu.command import SfuCommand, SfuOp, row_words
from sparsa.sfu.fixed import FX_MAX, FX_MIN, to_fx
from sparsa.sim.sfu import SfuState, execute

DEPTH = 512


def fx(shape, lo=-(1 << 22), hi=1 << 22):
    return arrays(np.int64, shape, elements=st.integers(lo, hi))


def _state(lanes, a, b=None):
    s = SfuState(lanes, DEPTH)
    s.write_rows(0, a)
    if b is not None:
        s.write_rows(200, b)
    return s


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.integers(1, 4), st.integers(1, 21), st.data())
def test_elementwise_commands(L, rows, n, data):
    a = data.draw(fx((rows, n), FX_MIN, FX_MAX))
    b = data.draw(fx((rows, n), FX_MIN, FX_MAX))
    w = row_words(n, L)
    for op, want in [(SfuOp.ADD, ops.add(a, b)), (SfuOp.MUL, ops.mul(a, b)),
                     (SfuOp.SILU, ops.activation(a, "silu")), (SfuOp.GELU, ops.activation(a, "gelu"))]:
        s = _state(L, a, b)
        execute(s, SfuCommand(op, rows, n, dst=100, a=0, b=200, b_step=w))
        assert np.array_equal(s.read_rows(100, rows, n), want), op
        # the padding of the last word is written as zero
        assert not s.vmem[100: 100 + rows * w].reshape(rows, -1)[:, n:].any()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4]), st.integers(1, 3), st.integers(1, 9), st.data())
def test_requant_shares_one_mantissa_vector_across_rows(L, rows, n, data):
    acc = data.draw(fx((rows, n), -(1 << 30), 1 << 30))
    mant = data.draw(fx((1, n), 0, (1 << 16) - 1))
    s = _state(L, acc, mant)
    execute(s, SfuCommand(SfuOp.REQUANT, rows, n, dst=0, a=0, b=200, b_step=0, shift=13))
    assert np.array_equal(s.read_rows(0, rows, n), ops.requantize(acc, mant[0], 13))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4]), st.integers(1, 3), st.integers(1, 6), st.data())
def test_rope_takes_interleaved_cos_sin(L, rows, half, data):
    n = 2 * half
    x = data.draw(fx((rows, n)))
    ang = data.draw(arrays(np.float64, (rows, half), elements=st.floats(-50, 50)))
    c, sn = to_fx(np.cos(ang)), to_fx(np.sin(ang))
    table = np.empty((rows, n), np.int64)
    table[:, 0::2], table[:, 1::2] = c, sn
    s = _state(L, x, table)
    execute(s, SfuCommand(SfuOp.ROPE, rows, n, dst=100, a=0, b=200, b_step=row_words(n, L)))
    assert np.array_equal(s.read_rows(100, rows, n), ops.rope(x, c, sn, "adjacent"))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.integers(1, 5), st.integers(1, 40), st.integers(0, 9), st.booleans(), st.data())
def test_softmax_command(L, rows, n, offset, causal, data):
    x = data.draw(fx((rows, n)))
    s = _state(L, x)
    execute(s, SfuCommand(SfuOp.SOFTMAX, rows, n, dst=0, a=0, causal=causal, offset=offset))
    keep = ops.causal_mask(rows, n, offset) if causal else None
    assert np.array_equal(s.read_rows(0, rows, n), ops.softmax(x, keep))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.integers(1, 4), st.integers(1, 40), st.data())
def test_norm_commands(L, rows, n, data):
    x = data.draw(fx((rows, n)))
    g = data.draw(fx((1, n)))
    eps = ops.norm_eps_code(1e-5, n)
    for op, want in [(SfuOp.RMSNORM, ops.rmsnorm(x, g[0], 1e-5)),
                     (SfuOp.LAYERNORM, ops.layernorm(x, g[0], np.zeros(n, np.int64), 1e-5))]:
        s = _state(L, x, g)
        execute(s, SfuCommand(op, rows, n, dst=100, a=0, b=200, eps_code=eps))
        assert np.array_equal(s.read_rows(100, rows, n), want), op


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4]), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.sampled_from([4, 8]), st.data())
def test_quantize_command_writes_codes_mantissas_and_exponent(L, rows, units, per_token, bits, data):
    unit = 2 * L
    n = unit * units
    x = data.draw(fx((rows, n), -(1 << 26), 1 << 26))
    s = _state(L, x)
    cmd = SfuCommand(SfuOp.QUANTIZE, rows, n, dst=0, a=0, unit=n if per_token else unit, bits=bits, scale_dst=300)
    execute(s, cmd)
    spec = ActScaleSpec("token") if per_token else ActScaleSpec("group", group=unit)
    want = ops.quantize(x, spec, bits)
    assert np.array_equal(s.read_rows(0, rows, n), want.codes)
    assert np.array_equal(s.read_rows(300, 1, want.mantissa.size)[0], want.mantissa.reshape(-1))
    assert s.exponent == want.exponent


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.integers(1, 5), st.integers(1, 30), st.sampled_from([4, 8]), st.data())
def test_quantize_row_exponent_then_requant_row_is_the_row_by_row_reference(L, rows, n, bits, data):
    """QUANTIZE with row_exponent writes ops.quantize_rows' codes, mantissas and exponents (any
    row length: per-token units need not be whole words); REQUANT_ROW reads them back."""
    x = data.draw(fx((rows, n), -(1 << 28), 1 << 28))
    s = _state(L, x)
    execute(s, SfuCommand(SfuOp.QUANTIZE, rows, n, dst=100, a=0, unit=n, bits=bits, scale_dst=300,
                          row_exponent=True, exp_dst=320))
    codes, mant, expo = ops.quantize_rows(x, ActScaleSpec("token"), bits)
    assert np.array_equal(s.read_rows(100, rows, n), codes)
    assert np.array_equal(s.elements(300, rows), mant[:, 0]) and np.array_equal(s.elements(320, rows), expo)
    assert s.exponent == expo[-1]
    dot = data.draw(fx((rows, 6), FX_MIN, FX_MAX))
    wm = data.draw(fx((1, 6), 0, (1 << 16) - 1))
    s.write_rows(0, dot)
    s.write_rows(200, wm)
    execute(s, SfuCommand(SfuOp.REQUANT_ROW, rows, 6, dst=150, a=0, b=200, shift=-9, scale_src=300, exp_src=320))
    assert np.array_equal(s.read_rows(150, rows, 6), ops.requantize_rows(dot, mant[:, 0], expo, wm[0], -9))


def test_qstatic_command():
    s = _state(4, np.array([[65536, -65536, 3 * 65536, 0, 100]]))
    execute(s, SfuCommand(SfuOp.QSTATIC, 1, 5, dst=0, a=0, mantissa=1, exponent=2, bits=4))
    assert s.read_rows(0, 1, 5).tolist() == [[4, -4, 7, 0, 0]]
    s = _state(4, np.array([[65536, -65536, 3 * 65536, 0, 100]]))
    execute(s, SfuCommand(SfuOp.QSTATIC, 1, 5, dst=0, a=0, mantissa=1, exponent=2, bits=4, qmax=5))
    assert s.read_rows(0, 1, 5).tolist() == [[4, -4, 5, 0, 0]]         # 7 now saturates at 5


@pytest.mark.parametrize("cmd, message", [
    (dict(op=SfuOp.ADD, rows=10, n=64, dst=400, a=0, b=100, b_step=16), "dst=400: 160 words reach word 559, beyond sfu.vmem_words=512"),
    (dict(op=SfuOp.ADD, rows=2, n=8, dst=1, a=0, b=100, b_step=2), "dst words 1..4 overlap a words 0..3"),
    (dict(op=SfuOp.MUL, rows=2, n=8, dst=0, a=0, b=2, b_step=2), "overlap b words 2..5"),
    (dict(op=SfuOp.QUANTIZE, rows=1, n=12, dst=0, a=0, unit=6, scale_dst=100), "unit=6 must be a multiple of sfu.lanes=4"),
])
def test_commands_that_do_not_fit_are_refused_before_any_write(cmd, message):
    s = SfuState(4, DEPTH)
    s.vmem[:] = 7
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        execute(s, SfuCommand(**cmd))
    assert (s.vmem == 7).all()


@pytest.mark.parametrize("field, value, message", [
    ("rows", 0, "rows must be an int in 1..65535, not 0"),
    ("n", True, "n must be an int in 1..65535, not True"),
    ("shift", 64, "shift must be an int in -63..63, not 64"),
    ("bits", 2, "bits must be 4 or 8, not 2"),
    ("causal", True, "causal masking belongs to SOFTMAX, not ADD"),
])
def test_bad_command_fields(field, value, message):
    kw = dict(op=SfuOp.ADD, rows=1, n=4, dst=0, a=0)
    kw[field] = value
    with pytest.raises(FormatError, match=message):
        SfuCommand(**kw)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([2, 4, 8]), st.integers(1, 3), st.integers(1, 30), st.integers(0, 5), st.data())
def test_microcode_equals_the_interpreter(L, rows, n, offset, data):
    """The sequencer's passes and scalar steps (sparsa.sfu.schedule) compute the operations."""
    from sparsa.sim.sfu import run_microcode

    w = row_words(n, L)
    vm = data.draw(arrays(np.int64, (DEPTH, L), elements=st.integers(-(1 << 22), 1 << 22)))
    vm[300:300 + rows * w] = data.draw(arrays(np.int64, (rows * w, L), elements=st.integers(0, (1 << 16) - 1)))
    eps = ops.norm_eps_code(data.draw(st.sampled_from([0.0, 1e-5, 1e-12])), n)
    cmds = [SfuCommand(op, rows, n, dst=100, a=0, b=200, b_step=w) for op in (SfuOp.ADD, SfuOp.MUL)]
    cmds += [SfuCommand(op, rows, n, dst=100, a=0) for op in (SfuOp.SILU, SfuOp.GELU)]
    cmds += [SfuCommand(SfuOp.REQUANT, rows, n, dst=100, a=0, b=300, b_step=w, shift=data.draw(st.integers(-3, 40))),
             SfuCommand(SfuOp.QSTATIC, rows, n, dst=0, a=0, mantissa=data.draw(st.integers(1, 1 << 20)),
                        exponent=data.draw(st.integers(-10, 40)), bits=data.draw(st.sampled_from([4, 8]))),
             SfuCommand(SfuOp.QSTATIC, rows, n, dst=0, a=0, mantissa=data.draw(st.integers(1, 1 << 20)),
                        exponent=data.draw(st.integers(-10, 40)), bits=8, qmax=data.draw(st.integers(1, 127))),
             SfuCommand(SfuOp.SOFTMAX, rows, n, dst=100, a=0, causal=data.draw(st.booleans()), offset=offset),
             SfuCommand(SfuOp.SOFTMAX, rows, n, dst=0, a=0),
             SfuCommand(SfuOp.RMSNORM, rows, n, dst=100, a=0, b=200, eps_code=eps),
             SfuCommand(SfuOp.LAYERNORM, rows, n, dst=0, a=0, b=200, b_step=w, eps_code=eps)]
    if n % 2 == 0 and L % 2 == 0:
        cmds.append(SfuCommand(SfuOp.ROPE, rows, n, dst=100, a=0, b=200, b_step=w))
    for row_exponent in (False, True):
        unit = data.draw(st.sampled_from([L, n])) if n % L == 0 else n     # per token: any row length
        cmds.append(SfuCommand(SfuOp.QUANTIZE, rows, n, dst=data.draw(st.sampled_from([0, 100])), a=0, unit=unit,
                               bits=data.draw(st.sampled_from([4, 8])), mantissa_bits=data.draw(st.integers(2, 24)),
                               scale_dst=400, row_exponent=row_exponent, exp_dst=440))
    # REQUANT_ROW: row mantissas at 300 (any 32-bit words: the low 16 bits count), exponents at 460
    vm[460:460 + rows] = data.draw(arrays(np.int64, (rows, L), elements=st.integers(-80, 80)
                                          | st.sampled_from([-(1 << 31), (1 << 31) - 1])))
    cmds.append(SfuCommand(SfuOp.REQUANT_ROW, rows, n, dst=100, a=0, b=data.draw(st.sampled_from([200, 300])),
                           b_step=data.draw(st.sampled_from([0, w])), shift=data.draw(st.integers(-63, 63)),
                           scale_src=data.draw(st.sampled_from([300, 200])), exp_src=460))
    for cmd in cmds:
        s1, s2 = SfuState(L, DEPTH), SfuState(L, DEPTH)
        s1.vmem[:] = vm
        s2.vmem[:] = vm
        execute(s1, cmd)
        run_microcode(s2, cmd)
        assert np.array_equal(s1.vmem, s2.vmem) and s1.exponent == s2.exponent, cmd
