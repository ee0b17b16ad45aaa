"""SmolLM2 batched forward ([B, T] ids) and batched pruning calibration, on a tiny random decoder.

The real model is not needed: the same class with random weights (2 layers, d=16, 4/2 heads).
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.models.compression import pruning as P
from sparsa.errors import FormatError, ShapeError
from sparsa.models import compression as accuracy
from sparsa.models.real.smollm2 import SmolLM2

VOCAB, D, FFN, LAYERS, HEADS, KV = 50, 16, 40, 2, 4, 2


def _tiny(seed: int = 0) -> SmolLM2:
    rng = np.random.default_rng(seed)
    hd = D // HEADS
    f32 = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    tensors = {"token_embd.weight": f32(VOCAB, D), "output_norm.weight": 1 + f32(D)}
    linear = {}
    for i in range(LAYERS):
        tensors[f"blk.{i}.attn_norm.weight"] = 1 + f32(D)
        tensors[f"blk.{i}.ffn_norm.weight"] = 1 + f32(D)
        linear.update({f"layer{i}.q": f32(D, D), f"layer{i}.k": f32(KV * hd, D), f"layer{i}.v": f32(KV * hd, D),
                       f"layer{i}.o": f32(D, D), f"layer{i}.gate": f32(FFN, D), f"layer{i}.up": f32(FFN, D),
                       f"layer{i}.down": f32(D, FFN)})
    return SmolLM2(tensors=tensors, linear=linear, tokenizer=None, n_layers=LAYERS, n_heads=HEADS,
                   n_kv_heads=KV, rope_base=1e4, eps=1e-5)


@pytest.fixture(scope="module")
def tiny() -> SmolLM2:
    return _tiny()


def _chunks(n: int, length: int = 12, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, length) for _ in range(n)]


def test_batched_logits_match_one_sequence_at_a_time(tiny):
    chunks = _chunks(5)
    batch = tiny.logits(np.stack(chunks))
    assert batch.shape == (5, 12, VOCAB) and batch.dtype == np.float32
    one = np.stack([tiny.logits(c) for c in chunks])
    # float32 BLAS sums in a different order for a different row count: not bit-identical
    np.testing.assert_allclose(batch, one, rtol=1e-5, atol=1e-5 * float(np.abs(one).max()))


def test_batched_logits_are_causal_and_independent(tiny):
    a, b = _chunks(2)
    out = tiny.logits(np.stack([a, b]))
    b2 = b.copy()
    b2[-1] = (b2[-1] + 1) % VOCAB  # change the last token of sequence 1 only
    out2 = tiny.logits(np.stack([a, b2]))
    assert np.array_equal(out[0], out2[0])           # the other sequence does not see it
    assert np.array_equal(out[1, :-1], out2[1, :-1])  # earlier positions do not see it
    assert not np.array_equal(out[1, -1], out2[1, -1])


def test_hook_sees_token_rows(tiny):
    seen = {}

    def hook(name, x):
        seen[name] = x.shape
        return x

    tiny.logits(np.stack(_chunks(3)), hook)
    assert seen["layer0.q"] == (36, D) and seen["layer1.down"] == (36, FFN)


@pytest.mark.parametrize("ids", [np.zeros((0,), np.int64), np.zeros((2, 3, 4), np.int64)])
def test_bad_id_shapes(tiny, ids):
    with pytest.raises(ShapeError, match=r"expects a non-empty \[T\] or \[B, T\] id array, got shape"):
        tiny.logits(ids)


def test_calibration_batches_bound_the_threads():
    chunks = _chunks(70)
    few = accuracy.smollm2_calibration(chunks[:32])
    assert len(few) == 32 and all(s.ndim == 1 for s in few)  # up to the limit: one chunk per thread
    many = accuracy.smollm2_calibration(chunks, max_threads=32)
    assert len(many) <= 32 and all(s.ndim == 2 for s in many)
    assert np.array_equal(np.concatenate(many), np.stack(chunks))  # every chunk once, in order
    with pytest.raises(FormatError, match="max_threads must be a positive int, not 0"):
        accuracy.smollm2_calibration(chunks, max_threads=0)
    with pytest.raises(ShapeError, match=r"one length to be batched, got \[5, 12\]"):
        accuracy.smollm2_calibration(chunks[:3] + [np.zeros(5, np.int64)], max_threads=2)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_batched_calibration_prunes_like_one_chunk_per_thread(tiny, method):
    chunks = _chunks(12)
    run = lambda model, ids, hook: model.logits(ids, hook)  # noqa: E731
    one = P.prune_model(tiny, method, "2:4", samples=chunks, run_one=run)
    batched = P.prune_model(tiny, method, "2:4", samples=accuracy.smollm2_calibration(chunks, max_threads=3),
                            run_one=run)
    assert one.summary()["calib_tokens"] == batched.summary()["calib_tokens"] == 12 * 12
    for name in tiny.linear_names:
        assert np.array_equal(one.layers[name].mask, batched.layers[name].mask), name
        np.testing.assert_allclose(batched.layers[name].weight, one.layers[name].weight, rtol=1e-4, atol=1e-5)
