"""The differentiable BERT encoder used by sparse fine-tuning: exact gradients, same forward as MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.models.training.encoder import LINEAR_SUFFIXES, encoder_backward, encoder_forward, gelu_erf, gelu_erf_grad

D, HEADS, FFN, LAYERS = 8, 2, 12, 2


def _params(rng):
    linear, norms = {}, {}
    shapes = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "up": (FFN, D), "down": (D, FFN)}
    for i in range(LAYERS):
        for s in LINEAR_SUFFIXES:
            linear[f"layer{i}.{s}"] = (rng.standard_normal(shapes[s]) * 0.5, rng.standard_normal(shapes[s][0]) * 0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            norms[f"encoder.layer.{i}.{ln}.weight"] = 1 + 0.1 * rng.standard_normal(D)
            norms[f"encoder.layer.{i}.{ln}.bias"] = 0.1 * rng.standard_normal(D)
    return linear, norms


def _loss(x, mask, linear, norms, targets):
    hidden, _ = encoder_forward(x, mask, linear, norms, LAYERS, HEADS, 1e-12)
    return sum(float(np.sum(h * t)) for h, t in zip(hidden, targets, strict=True))


def test_gelu_grad_matches_finite_differences():
    x = np.linspace(-5, 5, 101)
    eps = 1e-6
    num = (gelu_erf(x + eps) - gelu_erf(x - eps)) / (2 * eps)
    np.testing.assert_allclose(gelu_erf_grad(x), num, atol=2e-6)   # erf approximation error is < 1.5e-7


@pytest.mark.parametrize("seed", [0, 1])
def test_encoder_gradients_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    linear, norms = _params(rng)
    x = rng.standard_normal((2, 5, D))
    mask = np.ones((2, 5))
    mask[1, 3:] = 0                                   # padding: its keys get no attention
    targets = [rng.standard_normal((2, 5, D)) for _ in range(LAYERS)]
    hidden, caches = encoder_forward(x, mask, linear, norms, LAYERS, HEADS, 1e-12)
    grads, dx = encoder_backward(targets, caches, linear, norms, HEADS)
    eps = 1e-6
    for name in ("layer0.q", "layer0.k", "layer0.v", "layer0.o", "layer1.up", "layer1.down", "layer0.down"):
        w, b = linear[name]
        for arr, g in ((w, grads[name][0]), (b, grads[name][1])):
            for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(4)]:
                old = arr[idx]
                arr[idx] = old + eps
                up = _loss(x, mask, linear, norms, targets)
                arr[idx] = old - eps
                down = _loss(x, mask, linear, norms, targets)
                arr[idx] = old
                assert g[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7), (name, idx)
    for idx in [(0, 1, 2), (1, 4, 0), (1, 0, 7)]:
        old = x[idx]
        x[idx] = old + eps
        up = _loss(x, mask, linear, norms, targets)
        x[idx] = old - eps
        down = _loss(x, mask, linear, norms, targets)
        x[idx] = old
        assert dx[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7), idx


def test_loss_on_one_layer_only():
    """A layer the loss does not read (None) still passes the later layers' gradient through."""
    rng = np.random.default_rng(3)
    linear, norms = _params(rng)
    x = rng.standard_normal((1, 4, D))
    mask = np.ones((1, 4))
    hidden, caches = encoder_forward(x, mask, linear, norms, LAYERS, HEADS, 1e-12)
    grads, _ = encoder_backward([None, np.ones_like(hidden[1])], caches, linear, norms, HEADS)
    assert set(grads) == {f"layer{i}.{s}" for i in range(LAYERS) for s in LINEAR_SUFFIXES}
    assert np.abs(grads["layer0.q"][0]).sum() > 0


def test_matches_minilm_forward():
    from sparsa.errors import MissingToolError

    try:
        from sparsa.models.real import minilm

        model = minilm.load()
    except MissingToolError as exc:
        pytest.skip(f"MiniLM is not installed ({exc}); `make models` installs it")
    from sparsa.models.compression.finetune import _embed_input

    ids, mask = model.tokenize(["A man is eating food.", "The spacecraft entered orbit around Mars."])
    hidden, _ = encoder_forward(_embed_input(model, ids), mask, model.linear, model.tensors, 6, 12, 1e-12)
    ref = model.hidden_states(ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(hidden[-1][real], ref[real], atol=2e-4)
