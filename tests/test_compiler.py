"""Compiler: tiling of arbitrary shapes, schedules, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.compiler import compile_gemm, plan_tiling
from sparsa.errors import ConfigError, FormatError, ShapeError, UnsupportedError
from sparsa.isa import Opcode
from sparsa.formats import nm
from sparsa.sim.cycle import program_cycles
from sparsa.timing import compute_flush_cycles

from .conftest import preset


def _w(rng, k, n, bits=8):
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(k, n))


@given(m=st.integers(1, 700), k=st.integers(1, 300), n=st.integers(1, 40),
       pat=st.sampled_from(["1:2", "2:4", "1:4", "dense", "3:4"]))
@settings(max_examples=60, deadline=None)
def test_tiling_covers_everything(m, k, n, pat):
    cfg = preset("systolic-8x8-2of4").with_overrides({"buffers.accumulator_depth": 64})
    t = plan_tiling(cfg, m, k, n, pat)
    assert sum(t.chunk_rows) == m and max(t.chunk_rows) <= 64
    assert t.ktiles * cfg.rows >= t.slots > (t.ktiles - 1) * cfg.rows
    assert t.ntiles * cfg.cols >= n > (t.ntiles - 1) * cfg.cols
    steps = list(t.schedule())
    assert sum(1 for s in steps if s[0] == "load") == t.loads
    assert sum(1 for s in steps if s[0] == "compute") == t.ktiles * t.ntiles * t.chunks
    assert sum(s[2] for s in steps if s[0] == "drain") == m * t.ntiles


def test_program_structure_gemv(cfg8x8):
    rng = np.random.default_rng(0)
    p = compile_gemm(cfg8x8, _w(rng, 300, 45), 1, "2:4")
    assert p.shape.m == 1 and p.ktiles == -(-150 // 8) and p.ntiles == 6
    assert p.instructions[-1].op is Opcode.HALT
    assert p.num_weight_beats == p.ktiles * p.ntiles * 8
    # the first COMPUTE of every n-tile overwrites, the rest accumulate
    flags = [c.accumulate for c in p.computes]
    assert flags.count(False) == p.ntiles


def test_weights_stay_resident_across_chunks(cfg4x4):
    rng = np.random.default_rng(0)
    p = compile_gemm(cfg4x4, _w(rng, 8, 4), 1000, "2:4")   # one tile, 16 chunks of 64
    assert p.opcode_counts()["LOAD_W"] == 1 and p.opcode_counts()["COMPUTE"] == 16


def test_padding_rows_point_at_zero_group(cfg8x8):
    rng = np.random.default_rng(0)
    p = compile_gemm(cfg8x8, _w(rng, 10, 3), 2, "2:4")     # 3 groups -> 6 slots of 8 rows
    assert p.row_groups.tolist() == [[0, 0, 1, 1, 2, 2, -1, -1]]
    assert np.all(p.tile_values[0, 0, 6:] == 0)


def test_cycles_formula(cfg4x4):
    rng = np.random.default_rng(0)
    p = compile_gemm(cfg4x4, _w(rng, 8, 4), 5, "2:4")      # 1 load, 1 compute, 1 drain
    assert program_cycles(p) == (1 + 4) + (1 + 5 + compute_flush_cycles(cfg4x4)) + (1 + 5) + 1


def test_prune_false_requires_sparse_weights(cfg4x4):
    w = np.ones((8, 4), dtype=int)
    with pytest.raises(FormatError, match="not 2:4-sparse"):
        compile_gemm(cfg4x4, w, 1, "2:4", prune=False)
    p = compile_gemm(cfg4x4, nm.prune(w, 2, 4), 1, "2:4", prune=False)
    assert np.count_nonzero(p.weights) == 16


def test_refusals(cfg4x4):
    with pytest.raises(FormatError, match=r"weights value 128 at \(0, 1\) is not int8-representable"):
        compile_gemm(cfg4x4, np.array([[0, 128]]), 1)
    with pytest.raises(ShapeError, match="zero dimension"):
        compile_gemm(cfg4x4, np.zeros((0, 3), int), 1)
    with pytest.raises(ShapeError, match="m must be a positive integer, not 0"):
        compile_gemm(cfg4x4, np.zeros((4, 3), int), 0)
    with pytest.raises(UnsupportedError, match="1:8 needs groups of 8"):
        compile_gemm(cfg4x4, np.zeros((4, 3), int), 1, "1:8")
    with pytest.raises(FormatError, match="NaN or inf"):
        compile_gemm(cfg4x4, np.array([[np.nan]]), 1)


def test_accumulator_overflow_is_refused_unless_allowed():
    cfg = preset("systolic-4x4-2of4").with_overrides({"types.accumulator_bits": 20})
    w = np.full((200, 2), -128)
    # 2:4 of k=200 -> 100 slots; 100 * 2^14 needs 22 bits
    with pytest.raises(ConfigError, match=r"types\.accumulator_bits=20 cannot hold 100 int8 x int8 products"):
        compile_gemm(cfg, w, 1, "2:4")
    compile_gemm(cfg, w, 1, "2:4", allow_overflow=True)
