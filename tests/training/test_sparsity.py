"""N:M masks of BDWP and SR-STE, the sparse spec, ragged axes, the mask schedule."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.formats import nm
from sparsa.models.training import Linear, SparseSpec, nm_mask, parse_spec
from sparsa.models.training.model import build_mlp

from sparsa.errors import ConfigError, FormatError, ShapeError


def _groups(mask, m, axis):
    """True counts per group of m along axis (the axis length must divide by m)."""
    moved = np.moveaxis(mask, axis, -1)
    return moved.reshape(moved.shape[:-1] + (-1, m)).sum(-1)


@pytest.mark.parametrize("shape", [(64, 24), (16, 40), (9, 16), (10, 13), (3, 5, 8)])
@pytest.mark.parametrize("n,m", [(2, 8), (1, 8), (4, 8), (2, 4), (1, 2), (3, 16)])
@pytest.mark.parametrize("axis", [0, 1])
def test_nm_mask_matches_the_format_pruner(shape, n, m, axis):
    rng = np.random.default_rng(hash((shape, n, m, axis)) % 2**32)
    for w in (rng.standard_normal(shape), rng.integers(-2, 3, shape).astype(np.float32)):   # ties too
        mask = nm_mask(w, n, m, axis)
        assert mask.shape == w.shape and mask.dtype == bool
        np.testing.assert_array_equal(np.where(mask, w, 0), nm.prune(w, n, m, axis))


@pytest.mark.parametrize("length", [16, 13, 1, 7])
def test_exactly_min_n_per_group(length):
    w = np.random.default_rng(length).standard_normal((length, 5))
    mask = nm_mask(w, 2, 8, axis=0)
    for start in range(0, length, 8):
        size = min(8, length - start)
        assert np.all(mask[start:start + 8].sum(axis=0) == min(2, size))


def test_tie_break_lower_index_wins():
    w = np.array([[1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0]]).T
    assert np.flatnonzero(nm_mask(w, 2, 8, 0)).tolist() == [0, 1]
    assert np.flatnonzero(nm_mask(np.zeros((8, 1)), 2, 8, 0)).tolist() == [0, 1]


def test_bdwp_masks_forward_along_k_backward_along_n():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 24))
    mask_f, mask_b = SparseSpec("bdwp", 2, 8).masks(w)
    assert np.all(_groups(mask_f, 8, axis=0) == 2)     # groups of 8 consecutive k, every column
    assert np.all(_groups(mask_b, 8, axis=1) == 2)     # groups of 8 consecutive n, every row
    wt = (w * mask_b).T                                 # W_b^T[n, k]: N:M along its reduction axis
    assert nm.is_nm_sparse(wt, 2, 8, axis=0)
    assert not nm.is_nm_sparse((w * mask_f).T, 2, 8, axis=0)   # the forward mask would not do
    assert not np.array_equal(mask_f, mask_b)


def test_srste_uses_one_mask_along_the_input_dimension():
    w = np.random.default_rng(1).standard_normal((16, 8))
    mask_f, mask_b = SparseSpec("srste", 2, 4).masks(w)
    assert mask_f is mask_b and np.all(_groups(mask_f, 4, axis=0) == 2)
    assert SparseSpec().masks(w) == (None, None)


def test_srste_update_rule():
    """One SGD step (no momentum) of SR-STE: W -= lr * (X^T dY + 2e-4 * (1 - mask) * W)."""
    from sparsa.models.training import SGD

    rng = np.random.default_rng(3)
    layer = Linear("fc", 8, 4, rng, SparseSpec("srste", 1, 4), dtype=np.float64)
    w0, mask = layer.w.copy(), layer.mask_f.copy()
    x, g = rng.standard_normal((5, 8)), rng.standard_normal((5, 4))
    layer.forward(x)
    layer.backward(g)
    SGD([("fc.w", layer.w, layer.dw)], lr=0.1, momentum=0.0).step()
    np.testing.assert_allclose(layer.w, w0 - 0.1 * (x.T @ g + 2e-4 * (1 - mask) * w0), rtol=1e-12)


def test_ragged_pad_and_refuse():
    rng = np.random.default_rng(0)
    layer = Linear("fc3", 512, 10, rng, SparseSpec("bdwp", 2, 8))     # n = 10: groups of 8 and 2
    assert layer.mask_b[:, :8].sum(axis=1).tolist() == [2] * 512
    assert layer.mask_b[:, 8:].all()                                  # the short group keeps min(2, 2)
    with pytest.raises(ShapeError, match=r"layer 'fc3': output size n .* = 10 is not a multiple of M = 8"):
        Linear("fc3", 512, 10, rng, SparseSpec("bdwp", 2, 8, ragged="refuse"))
    with pytest.raises(ShapeError, match=r"layer 'fc1': input size k .* = 9 is not a multiple of M = 4"):
        Linear("fc1", 9, 8, rng, SparseSpec("srste", 2, 4, ragged="refuse"))
    Linear("fc3", 512, 10, rng, SparseSpec("srste", 2, 8, ragged="refuse"))   # SR-STE has no mask along n


def test_spec_validation_messages():
    with pytest.raises(ConfigError, match="training method must be one of dense, bdwp, srste, not 'rigl'"):
        SparseSpec("rigl", 2, 4)
    with pytest.raises(ConfigError, match="method 'bdwp' needs an N:M sparsity such as 2:8, not 'dense'"):
        parse_spec("bdwp", "dense")
    with pytest.raises(FormatError, match="sparsity '2:5'"):
        parse_spec("bdwp", "2:5")
    with pytest.raises(ConfigError, match="mask_interval must be a positive integer, not 0"):
        parse_spec("bdwp", "2:8", mask_interval=0)
    with pytest.raises(ConfigError, match="ragged must be 'pad' or 'refuse', not 'crop'"):
        parse_spec("bdwp", "2:8", ragged="crop")
    assert parse_spec("dense", "2:8").pattern == "dense"


def test_masks_follow_the_weights():
    """Masks are regenerated from the dense weights: a weight that grows enters the mask."""
    rng = np.random.default_rng(5)
    model = build_mlp((16,), 4, SparseSpec("bdwp", 1, 8), hidden=(8,), seed=0)
    fc = model.weight_layers()[0]
    col = 0
    out_idx = int(np.flatnonzero(~fc.mask_f[:8, col])[0])
    fc.w[out_idx, col] = 100.0
    assert not fc.mask_f[out_idx, col]
    model.update_masks()
    assert fc.mask_f[out_idx, col] and fc.mask_f[:8, col].sum() == 1
    assert rng is not None
