"""Block-sparse attention masks (:mod:`sparsa.formats.attention_blocks`) against naive loops.

Properties (hypothesis): the diagonal block is always kept; causal blocks above the diagonal
never are; the element mask is the block mask expanded (and causal-clipped); the kept counts of
:func:`kept_pairs` / :func:`block_rows` match loops over the element and block masks; the SFU's
own expansion (:func:`sparsa.sfu.ops.block_mask`) agrees.  Plus each policy's rule on a small
grid written out by hand, and the argument checks with their messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import BlockPolicy, attention_masks
from sparsa.formats.attention_blocks import (CalibratedBlocks, block_grid, block_rows, calibrate_topk, kept_pairs,
                                             row_budget)
from sparsa.sfu import ops as sfu_ops


@st.composite
def policies(draw) -> BlockPolicy:
    kind = draw(st.sampled_from(["dense", "local", "local+strided", "topk"]))
    block = draw(st.integers(1, 9))
    if kind == "local":
        return BlockPolicy(kind, block, window=draw(st.integers(1, 6)))
    if kind == "local+strided":
        return BlockPolicy(kind, block, window=draw(st.integers(1, 6)), stride=draw(st.integers(1, 6)))
    if kind == "topk":
        return BlockPolicy(kind, block, keep=draw(st.floats(0.01, 1.0)))
    return BlockPolicy(kind, block)


@st.composite
def cases(draw):
    policy = draw(policies())
    causal = draw(st.booleans())
    queries = draw(st.integers(1, 40))
    keys = queries if causal else draw(st.integers(1, 40))
    scores = None
    if policy.kind == "topk":
        nq, nk = block_grid(queries, keys, policy.block)
        heads = draw(st.integers(1, 3))
        seed = draw(st.integers(0, 2**31))
        scores = np.random.default_rng(seed).random((heads, nq, nk))
    return policy, queries, keys, causal, scores


def _naive_visible(i: int, j: int, causal: bool) -> bool:
    return not causal or j <= i


@given(cases())
@settings(max_examples=300, deadline=None)
def test_mask_properties(case):
    policy, queries, keys, causal, scores = case
    blocks, elements = attention_masks(policy, queries, keys, causal, scores)
    nq, nk = block_grid(queries, keys, policy.block)
    assert blocks.shape[-2:] == (nq, nk) and elements.shape[-2:] == (queries, keys)
    b = policy.block
    for i in range(nq):
        if i < nk:
            assert blocks[..., i, i].all(), "the diagonal block is always kept"
        for j in range(nk):
            if causal and j > i:
                assert not blocks[..., i, j].any(), "a causal block above the diagonal is never kept"
    # element mask == block mask expanded (naive loop), intersected with the causal triangle
    for t in range(queries):
        for s in range(keys):
            want = blocks[..., t // b, s // b] & _naive_visible(t, s, causal)
            assert np.array_equal(elements[..., t, s], want)
    # the SFU's block expansion agrees with ours
    if scores is None:
        expanded = sfu_ops.block_mask(blocks, b, queries, keys)
        if causal:
            expanded &= sfu_ops.causal_mask(queries, keys)
        assert np.array_equal(expanded, elements)


@given(cases())
@settings(max_examples=300, deadline=None)
def test_kept_counts_match_a_naive_loop(case):
    policy, queries, keys, causal, scores = case
    blocks, elements = attention_masks(policy, queries, keys, causal, scores)
    b = policy.block
    # per query block: rows and kept key width, by a loop over the block mask (every mask of a
    # topk calibration keeps the same count in a causal prefill)
    for masks, els in zip(blocks.reshape(-1, *blocks.shape[-2:]), elements.reshape(-1, queries, keys), strict=True):
        rows = []
        for i in range(masks.shape[0]):
            width = sum(min(b, keys - j * b) for j in range(masks.shape[1]) if masks[i, j])
            rows.append((min(b, queries - i * b), width))
        if policy.kind != "topk" or causal:
            assert block_rows(policy, queries, keys, causal) == tuple(rows)
            assert kept_pairs(policy, queries, keys, causal) == int(els.sum())
        count = sum(1 for t in range(queries) for s in range(keys) if els[t, s])
        assert count == int(els.sum())


@given(policies(), st.integers(1, 48))
@settings(max_examples=200, deadline=None)
def test_dense_policy_is_the_causal_triangle(policy, length):
    dense = BlockPolicy("dense", policy.block)
    assert np.array_equal(dense.keep_mask(length), np.tril(np.ones((length, length), bool)))
    assert kept_pairs(dense, length, length) == length * (length + 1) // 2
    if policy.kind != "topk":
        assert kept_pairs(policy, length, length) <= kept_pairs(dense, length, length)


def test_local_strided_by_hand():
    p = BlockPolicy("local+strided", block=2, window=2, stride=3)
    blocks, _ = attention_masks(p, 12, 12)
    assert blocks.astype(int).tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 0, 1, 1, 0, 0],
        [1, 0, 0, 1, 1, 0],
        [1, 0, 0, 1, 1, 1],
    ]
    local = BlockPolicy("local", block=2, window=1)
    assert np.array_equal(attention_masks(local, 12, 12)[0], np.eye(6, dtype=bool))


def test_topk_keeps_the_budget_of_highest_mass():
    p = BlockPolicy("topk", block=1, keep=0.5)
    mass = np.array([[9, 0, 0, 0], [5, 9, 0, 0], [1, 7, 9, 0], [3, 2, 8, 9]], dtype=float)
    blocks, _ = attention_masks(p, 4, 4, True, mass)
    # budgets ceil(0.5 * (i + 1)) = 1, 1, 2, 2: the diagonal, then the largest visible mass
    assert blocks.astype(int).tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert [row_budget(p, v) for v in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert row_budget(BlockPolicy("topk", keep=0.1), 30) == 3  # 0.1 * 30 is 3.0000000000000004
    # ties go to the lower key block
    tie = attention_masks(p, 4, 4, True, np.ones((4, 4)))[0]
    assert tie[3].astype(int).tolist() == [1, 0, 0, 1]


def test_calibrated_blocks_serve_shorter_prefills():
    p = BlockPolicy("topk", block=4, keep=0.5)
    rng = np.random.default_rng(1)
    cal = calibrate_topk(p, rng.random((2, 3, 5, 5)), 20)
    full = cal.keep_mask(20, layer=1)
    assert full.shape == (3, 20, 20)
    short = cal.keep_mask(11, layer=1)
    assert np.array_equal(short, full[:, :11, :11])
    shared = calibrate_topk(p, rng.random((5, 5)), 20)
    assert shared.keep_mask(20, layer=7).shape == (1, 20, 20)
    with pytest.raises(ShapeError, match="up to 20 tokens, not 21"):
        cal.keep_mask(21)
    with pytest.raises(ShapeError, match=r"layer must be in 0..1, not 2"):
        cal.keep_mask(8, layer=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "sliding"}, "attention policy must be one of dense, local, local\\+strided, topk, not 'sliding'"),
    ({"kind": "dense", "block": 0}, "attention block must be a positive integer, not 0"),
    ({"kind": "local"}, "attention policy 'local' needs window"),
    ({"kind": "local", "window": 2, "stride": 3}, "attention policy 'local' takes no stride"),
    ({"kind": "local+strided", "window": 0, "stride": 3}, "attention window must be a positive integer"),
    ({"kind": "topk", "keep": 0.0}, "attention keep must be a number in \\(0, 1\\], not 0.0"),
    ({"kind": "topk", "keep": 1.5}, "not 1.5"),
    ({"kind": "dense", "keep": 0.5}, "attention policy 'dense' takes no keep"),
])
def test_bad_policies_are_named(kwargs, message):
    with pytest.raises(FormatError, match=message):
        BlockPolicy(**kwargs)


def test_bad_geometry_and_scores():
    p = BlockPolicy("dense", block=4)
    with pytest.raises(ShapeError, match="queries == keys"):
        attention_masks(p, 4, 8, True)
    with pytest.raises(ShapeError, match="positive integer queries and keys, not 0 and 8"):
        attention_masks(p, 0, 8, False)
    with pytest.raises(FormatError, match="block scores apply to topk policies only"):
        attention_masks(p, 8, 8, True, np.ones((2, 2)))
    t = BlockPolicy("topk", block=4, keep=0.5)
    with pytest.raises(FormatError, match="needs block scores"):
        attention_masks(t, 8, 8)
    with pytest.raises(ShapeError, match=r"shape \[\.\.\., 2, 2\], not \(3, 3\)"):
        attention_masks(t, 8, 8, True, np.ones((3, 3)))
    with pytest.raises(FormatError, match="needs calibrated block masks"):
        t.keep_mask(8)
    with pytest.raises(FormatError, match="needs a topk BlockPolicy"):
        CalibratedBlocks(p, np.ones((1, 1, 2, 2), bool), 8)
