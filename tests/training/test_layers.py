"""Forward/backward of every layer against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from sparsa.models.training import (
    GELU,
    Conv2d,
    Flatten,
    LayerNorm,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    SparseSpec,
    softmax_cross_entropy,
)
from sparsa.models.training.layers import col2im, im2col

EPS = 1e-6


def _numeric(f, x):
    """Central differences of the scalar f() with respect to every element of x (in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + EPS
        hi = f()
        x[i] = old - EPS
        lo = f()
        x[i] = old
        g[i] = (hi - lo) / (2 * EPS)
    return g


def _check_layer(layer, x, rng, params=True):
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(layer.forward(x) * g))

    dx = layer.backward(g)
    analytic = {k: v.copy() for k, v in layer.grads().items()}
    np.testing.assert_allclose(dx, _numeric(loss, x), rtol=1e-6, atol=1e-7)
    if params:
        for key, p in layer.params().items():
            np.testing.assert_allclose(analytic[key], _numeric(loss, p), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{layer.name}.{key}")


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_linear(rng):
    _check_layer(Linear("fc", 7, 5, rng, dtype=np.float64), rng.standard_normal((4, 7)), rng)


@pytest.mark.parametrize("stride,padding,size", [(1, 1, (5, 5)), (2, 1, (6, 5)), (1, 0, (4, 6)), (2, 0, (7, 7))])
def test_conv2d(rng, stride, padding, size):
    conv = Conv2d("conv", 3, 4, 3, rng, stride=stride, padding=padding, dtype=np.float64)
    conv.build((*size, 3))
    _check_layer(conv, rng.standard_normal((2, *size, 3)), rng)


def test_conv_equals_direct_convolution(rng):
    conv = Conv2d("conv", 2, 3, 3, rng, padding=1, dtype=np.float64)
    x = rng.standard_normal((1, 4, 5, 2))
    y = conv.forward(x)
    w = conv.w.reshape(3, 3, 2, 3)           # kh, kw, cin, cout
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.zeros((1, 4, 5, 3))
    for i in range(4):
        for j in range(5):
            direct[0, i, j] = np.einsum("abc,abcd->d", xp[0, i:i + 3, j:j + 3], w) + conv.b
    np.testing.assert_allclose(y, direct, rtol=1e-12)


def test_col2im_is_adjoint_of_im2col(rng):
    x = rng.standard_normal((2, 5, 6, 3))
    cols = im2col(x, 3, 2, 1)                                   # B, Ho, Wo, kh, kw, C
    g = rng.standard_normal(cols.shape)
    g_t = g.transpose(3, 4, 5, 0, 1, 2).reshape(27, -1)        # [kh*kw*C, B*Ho*Wo]
    back = col2im(g_t, x.shape, 3, 2, 1)
    assert np.isclose(np.sum(cols * g), np.sum(x * back))


@pytest.mark.parametrize("layer", [ReLU("relu"), GELU("gelu")], ids=["relu", "gelu"])
def test_activations(rng, layer):
    _check_layer(layer, rng.standard_normal((3, 8)), rng, params=False)


def test_layernorm(rng):
    ln = LayerNorm("ln", 6, dtype=np.float64)
    ln.gamma[:] = rng.standard_normal(6)
    ln.beta[:] = rng.standard_normal(6)
    _check_layer(ln, rng.standard_normal((4, 6)), rng)


@pytest.mark.parametrize("size", [(4, 6), (5, 7)])
def test_maxpool(rng, size):
    pool = MaxPool2d("pool")
    pool.build((*size, 2))
    _check_layer(pool, rng.standard_normal((2, *size, 2)), rng, params=False)


def test_maxpool_ties_go_to_the_first_maximum():
    pool = MaxPool2d("pool")
    pool.build((2, 2, 1))
    pool.forward(np.zeros((1, 2, 2, 1)))
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    assert dx[0, :, :, 0].tolist() == [[1, 0], [0, 0]]


def test_flatten(rng):
    _check_layer(Flatten("flat"), rng.standard_normal((2, 3, 2, 2)), rng, params=False)


def test_softmax_cross_entropy(rng):
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    loss, d = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), labels])))
    np.testing.assert_allclose(d, _numeric(lambda: softmax_cross_entropy(logits, labels)[0], logits), atol=1e-8)


def test_whole_network_parameter_gradients(rng):
    """Dense CNN end to end: every parameter gradient equals finite differences of the loss."""
    layers = [Conv2d("conv", 1, 3, 3, rng, padding=1, dtype=np.float64), ReLU("r1"), MaxPool2d("pool"),
              Flatten("flat"), Linear("fc1", 12, 6, rng, dtype=np.float64), LayerNorm("ln", 6, dtype=np.float64),
              GELU("g"), Linear("fc2", 6, 3, rng, dtype=np.float64)]
    model = Sequential(layers, (4, 4, 1))
    x = rng.standard_normal((3, 4, 4, 1))
    y = np.array([0, 2, 1])

    def loss():
        return softmax_cross_entropy(model.forward(x), y)[0]

    _, d = softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    grads = {name: g.copy() for name, _, g in model.parameters()}
    for name, p, _ in model.parameters():
        np.testing.assert_allclose(grads[name], _numeric(loss, p), rtol=1e-5, atol=1e-8, err_msg=name)


# ---- the sparse methods' gradients


def test_srste_gradients(rng):
    """SR-STE: dX is the exact gradient of the masked layer; dW = X^T dY + lambda (1 - mask) W."""
    spec = SparseSpec("srste", 2, 4)
    layer = Linear("fc", 8, 6, rng, spec, dtype=np.float64)
    x = rng.standard_normal((3, 8))
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, _numeric(lambda: float(np.sum(layer.forward(x) * g)), x), rtol=1e-6)
    expect = x.T @ g + 2e-4 * (~layer.mask_f) * layer.w
    np.testing.assert_allclose(layer.dw, expect, rtol=1e-12)
    assert np.any(~layer.mask_f & (layer.w != 0))       # the extra term is really there


def test_bdwp_gradients(rng):
    """BDWP: dW is the exact gradient w.r.t. the forward weight W_f, dX uses W^T's own mask."""
    spec = SparseSpec("bdwp", 2, 4)
    layer = Linear("fc", 8, 8, rng, spec, dtype=np.float64)
    x = rng.standard_normal((3, 8))
    g = rng.standard_normal((3, 8))
    layer.forward(x)
    dx = layer.backward(g)
    w_f = layer.w_forward().copy()
    numeric_dw = _numeric(lambda: float(np.sum((x @ w_f + layer.b) * g)), w_f)
    np.testing.assert_allclose(layer.dw, numeric_dw, rtol=1e-6)
    np.testing.assert_allclose(dx, g @ (layer.w * layer.mask_b).T, rtol=1e-12)
    assert not np.array_equal(layer.mask_f, layer.mask_b)
    # with the backward mask equal to the forward one, dX is the true gradient
    layer.mask_b = layer.mask_f
    layer.forward(x)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, _numeric(lambda: float(np.sum(layer.forward(x) * g)), x), rtol=1e-6)


def test_conv_bdwp_input_gradient_uses_backward_mask(rng):
    spec = SparseSpec("bdwp", 2, 4)
    conv = Conv2d("conv", 4, 8, 3, rng, spec, padding=1, dtype=np.float64)
    conv.build((5, 5, 4))
    x = rng.standard_normal((2, 5, 5, 4))
    g = rng.standard_normal((2, 5, 5, 8))
    conv.forward(x)
    dx = conv.backward(g)
    # the same dX from a dense conv whose weight is W_b
    ref = Conv2d("ref", 4, 8, 3, rng, padding=1, dtype=np.float64)
    ref.build((5, 5, 4))
    ref.w[...] = conv.w * conv.mask_b
    ref.forward(x)
    np.testing.assert_allclose(dx, ref.backward(g), rtol=1e-12)
