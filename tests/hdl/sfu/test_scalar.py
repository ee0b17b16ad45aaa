# amaranth: UnusedElaboratable=no
"""SfuScalar against scalar_reference: every operation over its whole domain and its edges
(hypothesis), ``done`` exactly ``SCALAR_CYCLES[op]`` cycles after ``start``, back-to-back
operations, a ``start`` while busy ignored, and the Verilog export lint-clean."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sparsa.errors import FormatError
from sparsa.hdl.sfu.scalar import SfuScalar
from sparsa.sfu.scalar import (
    DIV_NUM_RANGE,
    MANTISSA_BITS_RANGE,
    QMAX_RANGE,
    RECIP_D_RANGE,
    ROW_N_RANGE,
    RSQRT_D_RANGE,
    SCALE_E_RANGE,
    SCALE_TOP_RANGE,
    ScalarOp,
    scalar_reference,
)
from sparsa.sfu.timing import SCALAR_CYCLES

from ..helpers import simulate

MASK49 = (1 << 49) - 1


def run_ops(cases, *, gaps=None, busy_starts=False, seed=0):
    """Run ``cases`` (dicts of ``op`` and operands) back to back on one SfuScalar.

    The next ``start`` is raised in the ``done`` cycle of the previous operation (plus
    ``gaps[i]`` idle cycles).  With ``busy_starts`` a random ``start`` with random operands is
    raised in random busy cycles.  Returns ``[(m, e, q, cycles)]``.
    """
    dut = SfuScalar()
    rng = random.Random(seed)
    out = []

    def drive(ctx, case):
        ctx.set(dut.op, case["op"])
        ctx.set(dut.d, case.get("d", 0) & MASK49)
        ctx.set(dut.n, case.get("n", 1))
        ctx.set(dut.e_in, case.get("e", 0))
        ctx.set(dut.qmax, case.get("qmax", 127))
        ctx.set(dut.mantissa_bits, case.get("mantissa_bits", 16))

    async def tb(ctx):
        held = (0, 0, 0)
        for i, case in enumerate(cases):
            for _ in range(gaps[i] if gaps else 0):
                await ctx.tick()
            drive(ctx, case)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                assert (ctx.get(dut.m), ctx.get(dut.e), ctx.get(dut.q)) == held      # results hold
                if busy_starts:
                    noise = rng.random() < 0.2
                    if noise:
                        drive(ctx, {"op": rng.choice(list(ScalarOp)), "d": rng.getrandbits(49),
                                    "n": rng.getrandbits(17), "e": rng.randrange(-128, 128),
                                    "qmax": rng.getrandbits(8), "mantissa_bits": rng.getrandbits(5)})
                    ctx.set(dut.start, noise)
                await ctx.tick()
                cycles += 1
                assert cycles <= 200
            ctx.set(dut.start, 0)
            assert not ctx.get(dut.busy)
            out.append((ctx.get(dut.m), ctx.get(dut.e), ctx.get(dut.q), cycles))
            held = out[-1][:3]
        # the outputs hold after done
        if cases:
            last = out[-1][:3]
            for _ in range(3):
                await ctx.tick()
                assert (ctx.get(dut.m), ctx.get(dut.e), ctx.get(dut.q)) == last
                assert not ctx.get(dut.done) and not ctx.get(dut.busy)

    simulate(dut, tb)
    return out


def check(cases, **kwargs):
    results = run_ops(cases, **kwargs)
    for case, (m, e, q, cycles) in zip(cases, results):
        operands = {k: v for k, v in case.items() if k != "op"}
        assert (m, e, q) == tuple(scalar_reference(case["op"], **operands)), case
        assert cycles == SCALAR_CYCLES[case["op"]], case


# --- strategies: the whole domain of each operation, edges likely --------------------------

def _wide(lo, hi):
    """Integers in [lo, hi] with the ends, powers of two (and their neighbours) likely."""
    powers = [v for k in range(hi.bit_length() + 1) for v in ((1 << k) - 1, 1 << k, (1 << k) + 1)
              if lo <= v <= hi]
    negs = [-v for v in powers if lo <= -v <= hi]
    return st.one_of(st.sampled_from([lo, hi]), st.sampled_from(powers + negs),
                     st.integers(lo, hi),
                     st.integers(0, hi.bit_length()).flatmap(lambda b: st.integers(max(lo, 0), min(hi, (1 << b)))))


n_values = _wide(*ROW_N_RANGE)


@st.composite
def recip_case(draw):
    return {"op": ScalarOp.RECIP, "d": draw(_wide(*RECIP_D_RANGE))}


@st.composite
def rsqrt_case(draw):
    return {"op": ScalarOp.RSQRT, "d": draw(_wide(*RSQRT_D_RANGE)), "n": draw(n_values)}


@st.composite
def div_case(draw):
    n = draw(n_values)
    kind = draw(st.sampled_from(["any", "tie", "near"]))
    lo, hi = DIV_NUM_RANGE
    if kind == "any":
        num = draw(_wide(lo, hi))
    else:                                   # ties (n even) and their neighbours
        k = draw(st.integers((lo + n) // n, (hi - n) // n))
        num = k * n + n // 2 + (draw(st.sampled_from([-1, 0, 1])) if kind == "near" else 0)
        num = min(max(num, lo), hi)
    return {"op": ScalarOp.DIV, "d": num, "n": n}


qmax_values = st.one_of(st.sampled_from([1, 7, 127]), st.integers(*QMAX_RANGE))
mb_values = st.one_of(st.sampled_from([MANTISSA_BITS_RANGE[0], 8, 16, MANTISSA_BITS_RANGE[1]]),
                      st.integers(*MANTISSA_BITS_RANGE))
top_values = st.one_of(st.just(0), _wide(*SCALE_TOP_RANGE))


@st.composite
def expo_case(draw):
    return {"op": ScalarOp.EXPO, "d": draw(top_values), "qmax": draw(qmax_values), "mantissa_bits": draw(mb_values)}


@st.composite
def qmant_case(draw):
    """``e`` from EXPO of a tensor maximum ``top``, ``amax <= top`` a unit's maximum (the way the
    quantizer uses them, so ``m < 2**mantissa_bits``), or any ``e`` of the range with ``m < 2**24``."""
    qmax = draw(qmax_values)
    if draw(st.booleans()):
        top = draw(top_values)
        e = scalar_reference(ScalarOp.EXPO, d=top, qmax=qmax, mantissa_bits=draw(mb_values)).e
        amax = draw(st.one_of(st.just(top), st.integers(0, top)))
    else:
        e = draw(st.integers(*SCALE_E_RANGE))
        # m = ceil(amax * 2**(e-16) / qmax) < 2**24  <=>  amax <= (2**24 - 1) * qmax * 2**(16-e)
        limit = ((1 << 24) - 1) * qmax
        cap = (limit << (16 - e)) if e <= 16 else limit >> (e - 16)
        amax = draw(_wide(0, min(cap, SCALE_TOP_RANGE[1])))
    if e < SCALE_E_RANGE[0]:                # top = 0 gives e = 0: always in range
        e = SCALE_E_RANGE[0]
    return {"op": ScalarOp.QMANT, "d": amax, "e": e, "qmax": qmax}


any_case = st.one_of(recip_case(), rsqrt_case(), div_case(), expo_case(), qmant_case())


# --- tests ---------------------------------------------------------------------------------

EDGES = (
    [{"op": ScalarOp.RECIP, "d": d} for d in (1, 2, 3, 1 << 20, (1 << 20) + 1, (1 << 39), (1 << 40) - 1)]
    + [{"op": ScalarOp.RSQRT, "d": d, "n": n} for d in (0, 1, 2, 1 << 31, (1 << 47) + 1, (1 << 48) - 1)
       for n in (1, 2, 3, (1 << 16) - 1, 1 << 16)]
    + [{"op": ScalarOp.DIV, "d": num, "n": n}
       for num in (0, 1, -1, 2, -2, 3, -3, 5, -5, (1 << 48) - 1, -(1 << 48), -(1 << 48) + 1)
       for n in (1, 2, 3, 4, 1 << 16)]
    + [{"op": ScalarOp.DIV, "d": k * n + n // 2, "n": n} for n in (2, 4, 6, 1 << 16) for k in (-3, -2, -1, 0, 1, 2)]
    + [{"op": ScalarOp.EXPO, "d": top, "qmax": qmax, "mantissa_bits": mb}
       for top in (0, 1, 2, 7, 127, (1 << 31) - 1, 1 << 31) for qmax in (1, 7, 127) for mb in (2, 24)]
    + [{"op": ScalarOp.QMANT, "d": amax, "e": e, "qmax": qmax}
       for amax, e, qmax in ((0, 0, 127), (0, 46, 7), (1, 46, 127), (1, -14, 1), ((1 << 31) - 1, -14, 1),
                             ((1 << 31) - 1, -14, 127), (1 << 31, -14, 1), (1 << 31, 9, 127), (1 << 31, 15, 127),
                             (127, 16, 127), (128, 16, 127), (126, 16, 127),
                             ((1 << 31) - 1, 9, 127), ((1 << 24) - 1, 16, 1))]
)


def test_edges_back_to_back():
    """Every edge case of every operation in one simulation, each start in the previous done cycle."""
    check(EDGES)


# Simulations are the cost: no shrinking, a few dozen operations per simulation.
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(cases=st.lists(any_case, min_size=40, max_size=40),
       gaps=st.lists(st.sampled_from([0, 0, 0, 1, 3]), min_size=40, max_size=40))
def test_random_operations_match_the_reference(cases, gaps):
    check(cases, gaps=gaps)


@pytest.mark.parametrize("op", list(ScalarOp))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_each_operation_over_its_domain(op, data):
    strategy = {ScalarOp.RECIP: recip_case(), ScalarOp.RSQRT: rsqrt_case(), ScalarOp.DIV: div_case(),
                ScalarOp.EXPO: expo_case(), ScalarOp.QMANT: qmant_case()}[op]
    check(data.draw(st.lists(strategy, min_size=25, max_size=25), label="cases"))


def test_start_while_busy_is_ignored():
    cases = [{"op": ScalarOp.RSQRT, "d": 12345678901, "n": 768}, {"op": ScalarOp.DIV, "d": -987654321, "n": 768},
             {"op": ScalarOp.EXPO, "d": 99999, "qmax": 7, "mantissa_bits": 5},
             {"op": ScalarOp.QMANT, "d": 4321, "e": 20, "qmax": 7}, {"op": ScalarOp.RECIP, "d": 1 << 33}] * 3
    check(cases, busy_starts=True, seed=3)


def test_cycle_counts_are_the_documented_breakdown():
    assert SCALAR_CYCLES == {ScalarOp.RECIP: 58, ScalarOp.RSQRT: 113, ScalarOp.DIV: 53, ScalarOp.EXPO: 88,
                             ScalarOp.QMANT: 64}
    assert all(SfuScalar.cycles(op) == SCALAR_CYCLES[op] for op in ScalarOp)


def test_out_of_domain_qmant_is_refused_by_the_reference():
    with pytest.raises(FormatError, match=r"scalar QMANT: m=\d+"):
        scalar_reference(ScalarOp.QMANT, d=(1 << 31) - 1, e=46, qmax=1)


def test_ports():
    dut = SfuScalar()
    widths = {name: (member.flow.name, member.shape) for name, member in dut.signature.members.items()}
    assert {k: v[0] for k, v in widths.items()} == {
        "start": "In", "op": "In", "d": "In", "n": "In", "e_in": "In", "qmax": "In", "mantissa_bits": "In",
        "busy": "Out", "done": "Out", "m": "Out", "e": "Out", "q": "Out"}
    assert (len(dut.d), len(dut.n), len(dut.m), len(dut.e), len(dut.q)) == (49, 17, 24, 8, 49)
    assert dut.e.shape().signed and dut.q.shape().signed and dut.e_in.shape().signed


@pytest.mark.verilator
def test_verilog_export_is_lint_clean(tmp_path):
    from amaranth.back import verilog

    from sparsa.hdl.verilator import lint_verilog
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    problem = unavailable_reason()
    if problem and "verilator" in problem:
        pytest.skip(problem)
    dut = SfuScalar()
    path = tmp_path / "sfu_scalar.v"
    path.write_text(verilog.convert(dut, name="sfu_scalar", ports=None))
    text = path.read_text()
    for port, width in (("d", 49), ("q", 49), ("m", 24), ("e", 8), ("n", 17), ("op", 3)):
        assert f"[{width - 1}:0] {port};" in text, port
    assert lint_verilog(path) == ""
