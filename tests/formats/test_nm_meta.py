"""Property tests of the N:M metadata encodings (slot, index, bitmask, block_n)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import nm, nm_meta

#: (n, m, m_hw) with m dividing m_hw, sparse patterns only
SPARSE = [(n, m, mh) for mh in (2, 4, 8, 16) for m in (2, 4, 8, 16) if mh % m == 0 for n in range(1, m)]


@st.composite
def compressed(draw):
    n, m, m_hw = draw(st.sampled_from(SPARSE))
    k = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 5))
    w = draw(arrays(np.int64, (k, cols), elements=st.integers(-3, 3)))
    return nm.compress(w, n, m, axis=0), m_hw


@given(compressed(), st.sampled_from(["slot", "index", "bitmask"]))
@settings(max_examples=300, deadline=None)
def test_round_trip_and_exact_size(args, encoding):
    c, m_hw = args
    k, cols = c.length, c.values.shape[1]
    data = nm_meta.encode(c, encoding, m_hw)
    assert len(data) == nm_meta.metadata_bytes(encoding, k, cols, c.n, c.m, m_hw)
    slots = nm_meta.decode(data, encoding, k, cols, c.n, c.m, m_hw)
    # the decoded slot indices are the compressed form at the hardware's group size: same dense tensor
    assert slots.shape == (nm_meta.hw_slots(k, c.n, c.m, m_hw), cols)
    assert np.array_equal(slots, nm_meta.expand_indices(nm_meta.slot_local_indices(c, m_hw), c.n, c.m, m_hw))
    n_hw = c.n * m_hw // c.m
    values = np.zeros(slots.shape, dtype=c.values.dtype)
    values[: c.values.shape[0]] = c.values
    hw = nm.NMCompressed(values=values, indices=slots, n=n_hw, m=m_hw, axis=0, length=k)
    assert np.array_equal(nm.decompress(hw), nm.decompress(c))


@given(compressed())
@settings(max_examples=200, deadline=None)
def test_sizes_formula(args):
    c, m_hw = args
    k, cols, n, m = c.length, c.values.shape[1], c.n, c.m
    slots = -(-k // m_hw) * n * (m_hw // m)
    assert nm_meta.metadata_bytes("slot", k, cols, n, m, m_hw) == -(-cols * slots * (m_hw.bit_length() - 1) // 8)
    assert nm_meta.metadata_bytes("index", k, cols, n, m, m_hw) == -(-cols * slots * (m.bit_length() - 1) // 8)
    assert nm_meta.metadata_bytes("bitmask", k, cols, n, m, m_hw) == -(-cols * -(-k // m_hw) * m_hw // 8)
    # the compact index never needs more than the slot index
    assert nm_meta.metadata_bytes("index", k, cols, n, m, m_hw) <= nm_meta.metadata_bytes("slot", k, cols, n, m, m_hw)


def test_dense_has_no_metadata():
    c = nm.compress(np.ones((8, 3)), 4, 4)
    assert nm_meta.encode(c, "index", 16) == b""
    assert nm_meta.metadata_bytes("bitmask", 8, 3, 4, 4, 16) == 0


def test_expand_examples():
    # 2:4 on a 1-of-16 MUX: slots 0,1 in sub-group 0, 2,3 in sub-group 1, ...
    local = np.array([0, 3, 1, 2, 0, 1, 2, 3])
    assert nm_meta.expand_indices(local, 2, 4, 16).tolist() == [0, 3, 5, 6, 8, 9, 14, 15]
    # 2:8 on 16: 4 slots per group
    assert nm_meta.expand_indices(np.array([1, 7, 0, 5]), 2, 8, 16).tolist() == [1, 7, 8, 13]


@pytest.mark.parametrize("encoding", ["slot", "index", "bitmask"])
def test_bad_streams_refused(encoding):
    c = nm.compress(np.arange(1, 33).reshape(16, 2), 2, 4)
    data = nm_meta.encode(c, encoding, 16)
    with pytest.raises(FormatError, match="bytes, not"):
        nm_meta.decode(data + b"\0", encoding, 16, 2, 2, 4, 16)
    broken = b"\xff" + data[1:]
    with pytest.raises(FormatError):
        nm_meta.decode(broken, encoding, 16, 2, 2, 4, 16)


def test_bad_arguments():
    with pytest.raises(FormatError, match="metadata encoding must be one of slot, index, bitmask, block_n, not 'rle'"):
        nm_meta.metadata_bytes("rle", 16, 1, 2, 4, 16)
    with pytest.raises(FormatError, match="M=8 does not divide the hardware group size 4"):
        nm_meta.metadata_bytes("index", 16, 1, 2, 8, 4)
    with pytest.raises(FormatError, match="block_n"):
        nm_meta.metadata_bits("block_n", 16, 2, 4, 16)
    with pytest.raises(FormatError, match="sub-group index must be in 0..3"):
        nm_meta.expand_indices(np.array([0, 4, 0, 1, 0, 1, 0, 1]), 2, 4, 16)
    with pytest.raises(ShapeError):
        nm_meta.encode(nm.compress(np.ones((4, 2, 2)), 2, 4), "index", 16)


@st.composite
def block_weights(draw):
    k = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 40))
    w = draw(arrays(np.float64, (k, cols), elements=st.floats(-4, 4, allow_nan=False, width=32)))
    return w, draw(st.floats(0, 1))


@given(block_weights())
@settings(max_examples=100, deadline=None)
def test_block_n_round_trip(args):
    w, thr = args
    ns = nm_meta.choose_block_n(w, thr)
    assert set(np.unique(ns)) <= set(nm_meta.BLOCK_NS)
    data = nm_meta.encode_block_n(w, ns)
    got_ns, mask = nm_meta.decode_block_n(data, *w.shape)
    assert np.array_equal(got_ns, ns)
    assert np.array_equal(mask, nm_meta.block_n_mask(w, ns))
    sizes = nm_meta.block_n_bytes(ns, w.shape[1], 4)
    assert len(data) == sizes["metadata"]
    # the criterion: each block's pruning error is under the threshold, and the next smaller N is not
    pruned = np.where(mask, w, 0.0)
    for i in range(ns.shape[0]):
        for j in range(ns.shape[1]):
            blk = (slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16))
            tot = float(np.sum(w[blk] ** 2))
            assert float(np.sum((w[blk] - pruned[blk]) ** 2)) <= thr * tot + 1e-9


def test_block_n_criterion_examples():
    w = np.zeros((16, 16))
    w[0] = 1.0                                   # one value per column: 2:16 is lossless
    assert nm_meta.choose_block_n(w, 0.0).tolist() == [[2]]
    w = np.ones((16, 16))
    assert nm_meta.choose_block_n(w, 0.0).tolist() == [[16]]
    assert nm_meta.choose_block_n(w, 0.5).tolist() == [[8]]
    assert nm_meta.block_n_bytes(np.array([[8]]), 16, 4) == {"values": 64, "metadata": 1 + 64}


def test_block_n_bad_input():
    w = np.ones((16, 16))
    with pytest.raises(FormatError, match="block N must be one of 2, 4, 8, 16, not 3"):
        nm_meta.encode_block_n(w, np.array([[3]]))
    with pytest.raises(FormatError, match="threshold must be a number in"):
        nm_meta.choose_block_n(w, 2.0)
    data = nm_meta.encode_block_n(w, np.array([[4]]))
    with pytest.raises(FormatError, match="bytes, not"):
        nm_meta.decode_block_n(data[:-1], 16, 16)
    with pytest.raises(FormatError, match="block N must be"):
        nm_meta.decode_block_n(b"\x05" + data[1:], 16, 16)


def test_calibrated_threshold_meets_the_density():
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((64, 48)) * rng.uniform(0.2, 3.0, size=(1, 48)), rng.standard_t(3, (32, 40))]
    errors = [(nm_meta.block_errors(w), w.shape[1]) for w in mats]
    for target in (0.2, 1 / 3, 0.6):
        thr = nm_meta.calibrate_block_threshold(errors, target)
        dens = [nm_meta.block_n_density(nm_meta.choose_block_n(w, thr), w.shape[1]) for w in mats]
        assert float(np.average(dens, weights=[w.size for w in mats])) >= target - 1e-9
        # choose_block_n from precomputed errors is the same choice
        assert np.array_equal(nm_meta.choose_block_n(mats[0], thr), nm_meta.choose_block_n(mats[0], thr, errors[0][0]))
    with pytest.raises(FormatError, match=r"target density must be in \(0, 1\], not 0"):
        nm_meta.calibrate_block_threshold(errors, 0)
