"""The differentiable Llama-style decoder used by SmolLM2 fine-tuning: exact gradients, same forward as SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.models.training.decoder import (
    LINEAR_SUFFIXES,
    DecoderConfig,
    decoder_backward,
    decoder_forward,
    head_backward,
    head_forward,
    rope_tables,
)

from sparsa.errors import ShapeError

D, HEADS, KV, FFN, LAYERS, VOCAB = 16, 4, 2, 24, 2, 11
CFG = DecoderConfig(HEADS, KV, 100.0, 1e-5)


def _params(rng):
    hd = D // HEADS
    shapes = {"q": (D, D), "k": (KV * hd, D), "v": (KV * hd, D), "o": (D, D), "gate": (FFN, D), "up": (FFN, D),
              "down": (D, FFN)}
    linear = {f"layer{i}.{s}": rng.standard_normal(shapes[s]) * 0.4 for i in range(LAYERS) for s in LINEAR_SUFFIXES}
    norms = {f"blk.{i}.{n}.weight": 1 + 0.2 * rng.standard_normal(D) for i in range(LAYERS)
             for n in ("attn_norm", "ffn_norm")}
    norms["output_norm.weight"] = 1 + 0.2 * rng.standard_normal(D)
    norms["token_embd.weight"] = rng.standard_normal((VOCAB, D))
    return linear, norms


def _loss(x, linear, norms, targets, t_logits):
    """A loss reading every block's output and the logits (all linear in them)."""
    hidden, _ = decoder_forward(x, linear, norms, LAYERS, CFG, cache=False)
    logits, _ = head_forward(hidden[-1], norms["output_norm.weight"], norms["token_embd.weight"], CFG.eps)
    return sum(float(np.sum(h * t)) for h, t in zip(hidden, targets, strict=True)) + float(np.sum(logits * t_logits))


def _central(f, arr, idx, eps=1e-6):
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


@pytest.mark.parametrize("seed", [0, 1])
def test_decoder_gradients_match_finite_differences(seed):
    """Every projection of both blocks and the input, through RMSNorm, RoPE, GQA, SwiGLU and the head."""
    rng = np.random.default_rng(seed)
    linear, norms = _params(rng)
    x = rng.standard_normal((2, 6, D))
    targets = [rng.standard_normal((2, 6, D)) for _ in range(LAYERS)]
    t_logits = rng.standard_normal((2, 6, VOCAB))
    hidden, caches = decoder_forward(x, linear, norms, LAYERS, CFG)
    logits, hc = head_forward(hidden[-1], norms["output_norm.weight"], norms["token_embd.weight"], CFG.eps)
    d_hidden = list(targets)
    d_hidden[-1] = d_hidden[-1] + head_backward(t_logits, hc, norms["output_norm.weight"], norms["token_embd.weight"])
    grads, dx = decoder_backward(d_hidden, caches, linear, norms, CFG)
    assert set(grads) == set(linear)

    def f():
        return _loss(x, linear, norms, targets, t_logits)

    for name, w in linear.items():
        assert grads[name].shape == w.shape
        for idx in [tuple(int(rng.integers(0, s)) for s in w.shape) for _ in range(5)]:
            assert grads[name][idx] == pytest.approx(_central(f, w, idx), rel=1e-6, abs=1e-8), (name, idx)
    for idx in [(0, 0, 3), (0, 5, 15), (1, 2, 0), (1, 3, 7), (1, 5, 9)]:
        assert dx[idx] == pytest.approx(_central(f, x, idx), rel=1e-6, abs=1e-8), idx


def test_causal_and_loss_on_one_block():
    """A later token never influences an earlier one; a block the loss does not read passes gradients through."""
    rng = np.random.default_rng(3)
    linear, norms = _params(rng)
    x = rng.standard_normal((1, 5, D))
    hidden, caches = decoder_forward(x, linear, norms, LAYERS, CFG)
    x2 = x.copy()
    x2[0, 4] += 1.0
    hidden2, _ = decoder_forward(x2, linear, norms, LAYERS, CFG, cache=False)
    np.testing.assert_array_equal(hidden2[-1][0, :4], hidden[-1][0, :4])
    d_last = np.zeros_like(hidden[-1])
    d_last[0, 2] = 1.0
    grads, dx = decoder_backward([None, d_last], caches, linear, norms, CFG)
    assert np.abs(grads["layer0.q"]).sum() > 0
    assert np.all(dx[0, 3:] == 0)                          # tokens after position 2 do not reach it


def test_rope_is_a_rotation_of_adjacent_pairs():
    cos, sin = rope_tables(3, 4, 100.0, np.float64)
    assert cos.shape == (3, 2)
    np.testing.assert_allclose(cos[0], 1.0)
    np.testing.assert_allclose(cos[2, 0], np.cos(2.0))     # pair 0 turns by 1 rad per position
    np.testing.assert_allclose(sin[1, 1], np.sin(100.0 ** -0.5))


def test_bad_shapes():
    rng = np.random.default_rng(0)
    linear, norms = _params(rng)
    with pytest.raises(ShapeError, match=r"needs x \[n, T, d\], got shape \(5, 16\)"):
        decoder_forward(np.zeros((5, D)), linear, norms, LAYERS, CFG)
    with pytest.raises(ShapeError, match="n_heads=4 is not a multiple of n_kv_heads=3"):
        DecoderConfig(4, 3, 1e4, 1e-5)
    with pytest.raises(ShapeError, match="n_kv_heads must be a positive integer, not 0"):
        DecoderConfig(4, 0, 1e4, 1e-5)
    _, caches = decoder_forward(rng.standard_normal((1, 3, D)), linear, norms, LAYERS, CFG)
    with pytest.raises(ShapeError, match="1 hidden-state gradients for 2 blocks"):
        decoder_backward([None], caches, linear, norms, CFG)


@pytest.mark.models
def test_matches_smollm2_forward():
    """On the real weights the decoder + head reproduce SmolLM2.logits up to float32 rounding."""
    from sparsa.errors import MissingToolError

    try:
        from sparsa.models.real import smollm2

        model = smollm2.load()
    except MissingToolError as exc:
        pytest.skip(f"SmolLM2 is not installed ({exc}); `make models` installs it")
    ids = model.tokenize("The capital of France is Paris. The capital of Italy is Rome, and the capital of")
    ref = model.logits(ids)
    t = model.tensors
    hidden, _ = decoder_forward(t["token_embd.weight"][ids][None], model.linear, t, model.n_layers,
                                DecoderConfig.of(model), cache=False)
    logits, _ = head_forward(hidden[-1], t["output_norm.weight"], t["token_embd.weight"], model.eps)
    # same ops in the same order: bitwise equal with this machine's OpenBLAS (max |diff| 0.0 for
    # logits up to 27.6); the slack allows a BLAS whose batched (per-head) and 2-D matmul kernels
    # round differently - float32 rounding amplified through 30 blocks, not a different formula
    np.testing.assert_allclose(logits[0], ref, atol=1e-3, rtol=0)
    assert np.array_equal(logits[0].argmax(-1), ref.argmax(-1))
