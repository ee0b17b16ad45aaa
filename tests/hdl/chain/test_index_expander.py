# amaranth: UnusedElaboratable=no
"""IndexExpander against the naive model (``expand_chain_compact_weight_beat`` and the per-lane
formula): bit-exact for every supported pattern, combinational (the beat leaves in the cycle it
arrives: INDEX_EXPANDER_CYCLES == 0), valid/ready passed through."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Shape
from amaranth.lib import wiring
from amaranth.sim import Simulator

from sparsa.chain_layout import (chain_compact_patterns, expand_chain_compact_weight_beat,
                                 pack_chain_compact_weight_beat, pack_chain_weight_beat)
from sparsa.chain_timing import INDEX_EXPANDER_CYCLES
from sparsa.datapath import matrix_datapath
from sparsa.errors import UnsupportedError
from sparsa.hdl.chain.index_expander import IndexExpander

from ...conftest import preset
from ..helpers import expect_error


def _configs():
    # the preset's geometry (16 slices, M = 16) with 2 chains instead of 128, and small chains
    return [("u280-flightllm/2", preset("u280-flightllm").with_overrides({"datapath.cols": 2})),
            ("chain-8x2-m16", preset("chain-8x2-m16")), ("chain-4x4-packed", preset("chain-4x4-packed"))]


def _naive_lane(cfg, n, m, value, local, i):
    """The expansion written out for one slice: sub-group (i mod n_hw) // n, then the local index."""
    n_hw = n * cfg.group_size // m
    return value, (i % n_hw) // n * m + local


@pytest.mark.parametrize("label, cfg", _configs(), ids=[c[0] for c in _configs()])
def test_expander_matches_naive_model(label, cfg):
    patterns = chain_compact_patterns(cfg)
    assert patterns, f"{label}: group_size {cfg.group_size} has no pattern with a shorter index (pick another config)"
    dut = IndexExpander(cfg)
    assert dut.patterns == patterns
    rng = np.random.default_rng(7)
    wb = cfg.weight_bits
    cases = []
    for k, p in enumerate(patterns):
        for _ in range(4):
            values = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(cfg.cols, cfg.rows))
            local = rng.integers(0, p.m, size=(cfg.cols, cfg.rows))
            hw_values, hw_index = np.vectorize(
                lambda v, loc, i: _naive_lane(cfg, p.n, p.m, v, loc, i))(values, local, np.arange(cfg.rows)[None, :])
            want = pack_chain_weight_beat(cfg, hw_values, hw_index)
            compact = pack_chain_compact_weight_beat(cfg, values, local, p.m)
            assert expand_chain_compact_weight_beat(cfg, compact, p.n, p.m) == want
            cases.append((k, compact, want))
    width = Shape.cast(dut.weights.payload.shape()).width

    async def tb(ctx):
        for k, compact, want in cases:
            ctx.set(dut.select, k)
            ctx.set(dut.compact.payload, compact)
            ctx.set(dut.compact.valid, 1)
            ctx.set(dut.weights.ready, 1)
            # same cycle: no register between the compact beat and the weight beat
            assert INDEX_EXPANDER_CYCLES == 0
            assert ctx.get(dut.weights.payload.as_value()) == want & ((1 << width) - 1)
            assert ctx.get(dut.weights.valid) == 1 and ctx.get(dut.compact.ready) == 1
            ctx.set(dut.weights.ready, 0)
            assert ctx.get(dut.compact.ready) == 0
            ctx.set(dut.compact.valid, 0)
            assert ctx.get(dut.weights.valid) == 0
            await ctx.delay(1e-9)

    sim = Simulator(dut)   # combinational: no clock domain at all
    sim.add_testbench(tb)
    sim.run()


def test_expander_examples_u280():
    """2:4 and 2:8 on the preset's 16-slice chain: the sub-groups of the slices."""
    cfg = preset("u280-flightllm").with_overrides({"datapath.cols": 1})
    from sparsa.chain_layout import chain_index_subgroups

    assert chain_index_subgroups(cfg, 2, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3] * 2
    assert chain_index_subgroups(cfg, 2, 8).tolist() == [0, 0, 1, 1] * 4


def test_expander_bad_arguments():
    cfg = preset("u280-flightllm").with_overrides({"datapath.cols": 1})
    expect_error(ValueError, "patterns 3:4 have no compact index on this chain", lambda: IndexExpander(cfg, ["3:4"]))
    expect_error(TypeError, "patterns must be a non-empty sequence", lambda: IndexExpander(cfg, "2:4"))
    expect_error(UnsupportedError, "needs datapath.kind='dsp_chain'", lambda: IndexExpander(preset("systolic-4x4-2of4")))


class _CompactFront(Elaboratable):
    """The chain's top level behind an IndexExpander: the weight stream carries compact beats."""

    def __init__(self, cfg, pattern):
        from sparsa.hdl.chain.top import SparseChainAccelerator

        self.config = cfg
        self.top = SparseChainAccelerator(cfg)
        self.expander = IndexExpander(cfg, [pattern])
        for name in ("instr", "acts", "results", "done", "cycles", "illegal", "controller"):
            setattr(self, name, getattr(self.top, name))
        self.weights = self.expander.compact

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = self.top
        m.submodules.expander = self.expander
        wiring.connect(m, self.expander.weights, self.top.weights)
        m.d.comb += self.expander.select.eq(0)
        return m


@pytest.mark.parametrize("config, pattern, shape", [
    ("chain-8x2-m16", "2:8", (3, 100, 5)),          # 2:8 on a 1-of-16 MUX: n_hw = 4 slots of 8 slices
    ("chain-8x2-m16", "1:4", (2, 40, 3)),
    ("chain-4x4-packed", "1:2", (4, 33, 9)),
])
@pytest.mark.parametrize("stall_seed", [None, 5])
def test_compact_stream_through_the_chain(config, pattern, shape, stall_seed):
    """A compiled GEMM whose weights stream compact through the expander into the chain: Y bit-exact
    with the NumPy reference, and the RTL's cycles equal the cycle model's (no stalls): 0 extra cycles."""
    from sparsa.compiler import compile_gemm
    from sparsa.sim import get_backend
    from sparsa.sim.backends.amaranth_backend import nominal_cycles, run_streams, unpack_outputs

    cfg = preset(config).with_overrides({"sparsity.metadata": "index"})     # auto never picks it (not in the top)
    m_rows, k, n = shape
    rng = np.random.default_rng(sum(shape))
    w = rng.integers(-8, 8, size=(k, n))
    w[rng.random((k, n)) < 0.3] = 0                  # zeros: groups short of n nonzeros
    a = rng.integers(-128, 128, size=(m_rows, k))
    program = compile_gemm(cfg, w, m_rows, pattern)
    assert program.metadata.encoding == "index"
    p = program.pattern
    words = [int(x) for x in program.instruction_words()]
    compact = [pack_chain_compact_weight_beat(cfg, v, i, p.m) for v, i in program.compact_weight_beats()]
    full = [pack_chain_weight_beat(cfg, v, i) for v, i in program.weight_beats()]
    assert [expand_chain_compact_weight_beat(cfg, c, p.n, p.m) for c in compact] == full
    acts = [matrix_datapath(cfg).pack_activation_beat(cfg, x) for x in program.activation_beats(a)]
    run = run_streams(_CompactFront(cfg, p), words, compact, acts, program.num_output_beats, stall_seed=stall_seed)
    y = program.collect_outputs(unpack_outputs(cfg, run.outputs))
    ref = get_backend("reference", cfg).run(program, {"A": a}).outputs["Y"]
    assert np.array_equal(y, ref)
    if stall_seed is None:
        assert run.cycles == nominal_cycles(cfg, words) == get_backend("cycle", cfg).run(program, {"A": a}).cycles


def test_expander_refuses_two_weight_lanes():
    cfg = preset("chain-4x4-packed").with_overrides({"datapath.chain.packing": "both"})
    expect_error(ValueError, "no N:M pattern has a compact index on this chain \\(chain.packing='both'",
                 lambda: IndexExpander(cfg))
