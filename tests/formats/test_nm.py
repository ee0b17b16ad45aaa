"""Property tests of the N:M format (prune, compress, decompress, index packing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import nm

PATTERNS = [(n, m) for m in (2, 4, 8, 16) for n in range(1, m + 1)]


@st.composite
def matrix_and_pattern(draw):
    n, m = draw(st.sampled_from(PATTERNS))
    k = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 6))
    # small value range on purpose: many ties and zeros
    w = draw(arrays(np.int64, (k, cols), elements=st.integers(-4, 4)))
    return w, n, m


@given(matrix_and_pattern())
@settings(max_examples=300, deadline=None)
def test_round_trip_and_counts(args):
    w, n, m = args
    pruned = nm.prune(w, n, m, axis=0)
    c = nm.compress(w, n, m, axis=0)
    assert c.values.shape == (-(-w.shape[0] // m) * n, w.shape[1])
    assert np.array_equal(nm.decompress(c), pruned)
    # compress of an already-pruned matrix is lossless, prune is idempotent
    assert np.array_equal(nm.decompress(nm.compress(pruned, n, m, axis=0)), pruned)
    assert np.array_equal(nm.prune(pruned, n, m, axis=0), pruned)
    assert nm.is_nm_sparse(pruned, n, m, axis=0)
    # exactly min(N, nonzeros in group) kept per group
    k = w.shape[0]
    for g0 in range(0, k, m):
        grp, kept = w[g0 : g0 + m], pruned[g0 : g0 + m]
        assert np.array_equal(np.count_nonzero(kept, axis=0), np.minimum(n, np.count_nonzero(grp, axis=0)))
        # kept values are taken unchanged from the group
        assert np.all((kept == 0) | (kept == grp))


@given(matrix_and_pattern())
@settings(max_examples=300, deadline=None)
def test_keeps_largest_magnitudes_with_low_index_tie_break(args):
    w, n, m = args
    c = nm.compress(w, n, m, axis=0)
    k = w.shape[0]
    for col in range(w.shape[1]):
        for g in range(-(-k // m)):
            grp = np.zeros(m, dtype=np.int64)
            part = w[g * m : (g + 1) * m, col]
            grp[: part.size] = part
            idx = c.indices[g * n : (g + 1) * n, col].astype(int)
            assert list(idx) == sorted(set(idx.tolist()))  # ascending, distinct
            expected = sorted(range(m), key=lambda i: (-abs(grp[i]), i))[:n]
            assert sorted(expected) == list(idx)
            assert np.array_equal(c.values[g * n : (g + 1) * n, col], grp[idx])


def test_axis_one_matches_transpose():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 19)).astype(np.float32)
    assert np.array_equal(nm.prune(w, 2, 4, axis=1), nm.prune(w.T, 2, 4, axis=0).T)


def test_documented_tie_break():
    w = np.array([5, -5, 5, 1])
    assert nm.prune(w, 2, 4).tolist() == [5, -5, 0, 0]
    assert nm.compress(w, 1, 4).indices.tolist() == [0]


@given(st.integers(1, 8).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, (1 << b) - 1),
                                                                              max_size=64))))
def test_index_packing_round_trip(args):
    bits, idx = args
    data = nm.pack_indices(np.array(idx, dtype=np.uint8), bits)
    assert len(data) == -(-len(idx) * bits // 8)
    assert nm.unpack_indices(data, bits, len(idx)).tolist() == idx


def test_index_packing_layout():
    # element 0 at bit 0 of byte 0 (little-endian bit order)
    assert nm.pack_indices(np.array([1, 2, 3, 0]), 2) == bytes([0b00111001])


def test_bad_input():
    with pytest.raises(FormatError, match="1 <= N <= M, got 5:4"):
        nm.prune(np.ones(8), 5, 4)
    with pytest.raises(FormatError, match="NaN or inf"):
        nm.prune(np.array([1.0, np.nan, 0, 0]), 2, 4)
    with pytest.raises(ShapeError, match="empty reduction axis"):
        nm.prune(np.zeros((0, 3)), 2, 4)
    with pytest.raises(FormatError, match="does not fit in 2 bits"):
        nm.pack_indices(np.array([4]), 2)
