"""Block-sparse prefill attention in SmolLM2's forward pass and its held-out perplexity.

Fast tests (a tiny random SmolLM2): ``attention_mask_policy=None`` and the policy ``dense`` give
the plain causal logits bit for bit; a sparse policy leaves the first query block's rows alone
(they see the same keys) and changes later ones; the attention-mass recorder sums to one per
query row; a calibrated ``topk`` with ``keep=1`` is the dense model; bad policies are refused.

Real-model test (marked ``models``): golden perplexities of a small setting (256-token held-out
chunks, blocks of 32), measured with :func:`evaluate_block_attention`; the full tables are the
``accuracy-block-attention-*`` blocks of docs/accuracy.md.
"""

from __future__ import annotations


import numpy as np
import pytest

from sparsa.errors import FormatError
from sparsa.formats.attention_blocks import BlockPolicy, calibrate_topk
from sparsa.models.compression.block_attention import BlockSetting, attention_mass, evaluate_block_attention
from sparsa.models.real import smollm2 as smollm2_mod

from .test_sfu_accuracy import _tiny_smollm2

from ..conftest import load_or_skip

# ---------------------------------------------------------------- golden values (real model)

#: The setting: first 2 held-out 256-token chunks (510 predicted tokens), blocks of 32 (8 x 8 blocks);
#: topk calibrated on the first 2 background chunks of 256 tokens.
GOLDEN = BlockSetting(256, 32, 2, 2, (BlockPolicy("local+strided", 32, window=2, stride=4),
                                      BlockPolicy("topk", 32, keep=0.5)))
#: Plain causal attention (the same as ``SMOLLM2_PPL_FLOAT`` of test_sfu_accuracy.py).
PPL_CAUSAL = 32.604
#: local+strided, window 2, stride 4: 59.5 % of the causal pairs.
PPL_LOCAL_STRIDED = 34.142
#: calibrated topk, keep 0.5: 50.2 % of the causal pairs.
PPL_TOPK = 45.985
#: Relative bound on each perplexity: float32 summation order only (~1e-6 of a logit).  The kept
#: blocks move perplexity by percent (docs/accuracy.md: one window/stride step is 3..13 %), so a
#: changed window, stride, budget rounding, topk tie-break or calibration text crosses it.
PPL_RTOL = 1e-3


@pytest.mark.models
def test_smollm2_block_attention_golden():
    m = load_or_skip(smollm2_mod.load)
    rows = load_or_skip(lambda: evaluate_block_attention(m, [GOLDEN]))
    ppl = {r["policy"]: r["ppl"] for r in rows}
    assert ppl["causal"] == pytest.approx(PPL_CAUSAL, rel=PPL_RTOL)
    assert ppl["local+strided window=2 stride=4 block=32"] == pytest.approx(PPL_LOCAL_STRIDED, rel=PPL_RTOL)
    assert ppl["topk keep=0.5 block=32"] == pytest.approx(PPL_TOPK, rel=PPL_RTOL)
    kept = {r["policy"]: r["kept"] for r in rows}
    assert kept["local+strided window=2 stride=4 block=32"] == pytest.approx(0.5953, abs=1e-4)


# ---------------------------------------------------------------- tiny random model

IDS = np.random.default_rng(3).integers(0, 40, size=24)


def test_no_policy_and_dense_are_plain_causal():
    m = _tiny_smollm2()
    plain = m.logits(IDS)
    assert np.array_equal(m.logits(IDS, attention_mask_policy=None), plain)
    assert np.array_equal(m.logits(IDS, attention_mask_policy=BlockPolicy("dense", 4)), plain)
    assert np.array_equal(m.logits(IDS, attention_mask_policy=BlockPolicy("local", 32, window=1)), plain)


def test_sparse_policy_changes_only_later_blocks():
    m = _tiny_smollm2()
    plain = m.logits(IDS)
    sparse = m.logits(IDS, attention_mask_policy=BlockPolicy("local", 4, window=1))
    assert np.array_equal(sparse[:4], plain[:4])  # query block 0 sees the same keys
    assert not np.allclose(sparse[8:], plain[8:])
    batch = m.logits(np.stack([IDS, IDS[::-1]]), attention_mask_policy=BlockPolicy("local", 4, window=1))
    assert np.allclose(batch[0], sparse, atol=1e-5)


def test_attention_mass_and_calibrated_topk():
    m = _tiny_smollm2()
    chunks = [IDS, IDS[::-1]]
    mass = attention_mass(m, chunks, 4)
    assert mass.shape == (2, 2, 6, 6)
    # every query row's probabilities sum to one: a row of blocks holds 4 rows x 2 chunks
    assert np.allclose(mass.sum(axis=-1), 8.0)
    assert np.all(np.triu(mass, 1) == 0)
    full = calibrate_topk(BlockPolicy("topk", 4, keep=1.0), mass, 24)
    assert np.array_equal(m.logits(IDS, attention_mask_policy=full), m.logits(IDS))
    half = calibrate_topk(BlockPolicy("topk", 4, keep=0.5), mass, 24)
    short = m.logits(IDS[:10], attention_mask_policy=half)  # a shorter prefill uses the leading blocks
    assert short.shape == (10, 40)


def test_bad_policy_is_refused():
    m = _tiny_smollm2()
    with pytest.raises(FormatError, match="attention_mask_policy must be a BlockPolicy, CalibratedBlocks or None, "
                                          "not 'local'"):
        m.logits(IDS, attention_mask_policy="local")
    with pytest.raises(FormatError, match="needs calibrated block masks"):
        m.logits(IDS, attention_mask_policy=BlockPolicy("topk", 4, keep=0.5))
    with pytest.raises(FormatError, match="chunks of one length"):
        attention_mass(m, [IDS, IDS[:5]], 4)
    with pytest.raises(FormatError, match="has block 8, the setting block 4"):
        BlockSetting(24, 4, 1, 1, (BlockPolicy("dense", 8),))
