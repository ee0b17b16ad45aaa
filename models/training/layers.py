"""Layers with forward and backward passes, vectorized NumPy (float32 for training, float64 for checks).

Tensors are batch-first; images are NHWC (``[batch, height, width, channels]``) so that a
convolution lowers to one GEMM without transposes: ``im2col(x)[B*Ho*Wo, kh*kw*C] @ W[kh*kw*C, Cout]``
with the patch axis ordered ``(kh, kw, C)``, channels fastest.  Weights are ``W[k, n]``,
reduction axis first, exactly the operand :func:`sparsa.compiler.compile_gemm` takes, so
N:M groups along axis 0 of a conv weight run along input channels (then kernel positions).

Every layer has ``forward(x)``, ``backward(dy) -> dx``, ``params()`` and ``grads()`` (dicts of
arrays updated in place by the optimizer).  :class:`Linear` and :class:`Conv2d` share the
sparse GEMM core :class:`WeightLayer` (forward with ``mask_f``, input gradient with
``mask_b``, dense weight gradient; see :mod:`.sparsity`).
"""

from __future__ import annotations

import math

import numpy as np

from sparsa.errors import ShapeError

from .sparsity import SparseSpec

__all__ = [
    "GELU",
    "Conv2d",
    "Flatten",
    "Layer",
    "LayerNorm",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "WeightLayer",
    "col2im",
    "im2col",
    "softmax_cross_entropy",
]

_DENSE = SparseSpec()


class Layer:
    """Base class: a named op with a forward and a backward pass.

    Attributes
    ----------
    name : str
        Unique name inside a model (used in error messages and parameter keys).
    in_shape, out_shape : tuple of int or None
        Per-sample shapes, set by :meth:`build`.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ShapeError(f"layer name must be a non-empty string, not {name!r}")
        self.name = name
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] | None = None

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Record the per-sample input shape and return the output shape."""
        self.in_shape = tuple(in_shape)
        self.out_shape = self._out_shape(self.in_shape)
        return self.out_shape

    def _out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> dict[str, np.ndarray]:
        """Trainable arrays by short name (``w``, ``b``, ``gamma``...)."""
        return {}

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the last backward pass, same keys as :meth:`params`."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.in_shape} -> {self.out_shape})"


class WeightLayer(Layer):
    """A layer whose work is one GEMM ``Y = X @ W + b`` with ``W[k, n]``, trained dense or N:M sparse.

    Parameters
    ----------
    name : str
        Layer name.
    k, n : int
        Reduction (input) and output sizes of the GEMM.
    rng : np.random.Generator
        Initialisation (He normal, ``std = sqrt(2 / k)``; zero bias).
    spec : SparseSpec
        Training method and N:M pattern.
    bias : bool
        Whether the layer has a bias.
    dtype : numpy dtype
        float32 for training, float64 for gradient checks.
    """

    def __init__(self, name: str, k: int, n: int, rng: np.random.Generator, spec: SparseSpec = _DENSE,
                 bias: bool = True, dtype=np.float32) -> None:
        super().__init__(name)
        for what, v in (("k (input size)", k), ("n (output size)", n)):
            if type(v) is not int or v < 1:
                raise ShapeError(f"layer {name!r}: {what} must be a positive integer, not {v!r}")
        spec.check_axis(name, "input size k (forward N:M axis)", k)
        if spec.method == "bdwp":
            spec.check_axis(name, "output size n (the N:M axis of W^T in the input-gradient GEMM)", n)
        self.k, self.n, self.spec = k, n, spec
        self.w = (rng.standard_normal((k, n)) * math.sqrt(2.0 / k)).astype(dtype)
        self.b = np.zeros(n, dtype=dtype) if bias else None
        self.dw = np.zeros_like(self.w)
        self.db = np.zeros_like(self.b) if bias else None
        self.mask_f: np.ndarray | None = None
        self.mask_b: np.ndarray | None = None
        self.need_input_grad = True
        self._x2d: np.ndarray | None = None
        self.update_masks()

    # ---- sparsity
    def update_masks(self) -> None:
        """Regenerate ``mask_f`` / ``mask_b`` from the dense weights' magnitudes."""
        self.mask_f, self.mask_b = self.spec.masks(self.w)

    def w_forward(self) -> np.ndarray:
        """The weight the forward GEMM uses (``W * mask_f``)."""
        return self.w if self.mask_f is None else self.w * self.mask_f

    def w_backward(self) -> np.ndarray:
        """The weight whose transpose the input-gradient GEMM uses (``W * mask_b``)."""
        return self.w if self.mask_b is None else self.w * self.mask_b

    # ---- the three GEMMs
    def _gemm_forward(self, x2d: np.ndarray) -> np.ndarray:
        self._x2d = x2d
        y = x2d @ self.w_forward()
        if self.b is not None:
            y += self.b
        return y

    def _gemm_backward(self, dy2d: np.ndarray, transposed: bool = False) -> np.ndarray | None:
        """Weight (and bias) gradient into :meth:`grads`; return ``dX = dY @ W_b^T``
        (``transposed``: its transpose ``W_b @ dY^T``, the same GEMM with the output stored
        k-major), or None when no input gradient is needed."""
        if self._x2d is None:
            raise ShapeError(f"layer {self.name!r}: backward before forward")
        np.matmul(self._x2d.T, dy2d, out=self.dw)                  # dense weight gradient
        if self.spec.method == "srste":
            # SR-STE: g + lambda * (1 - mask) * W  on the pruned weights
            self.dw += self.spec.srste_lambda * np.where(self.mask_f, 0, self.w).astype(self.w.dtype)
        if self.b is not None:
            np.sum(dy2d, axis=0, out=self.db)
        self._x2d = None
        if not self.need_input_grad:
            return None
        if transposed:
            return self.w_backward() @ dy2d.T
        return dy2d @ self.w_backward().T

    def params(self) -> dict[str, np.ndarray]:
        return {"w": self.w} if self.b is None else {"w": self.w, "b": self.b}

    def grads(self) -> dict[str, np.ndarray]:
        return {"w": self.dw} if self.b is None else {"w": self.dw, "b": self.db}

    def gemm_rows(self, batch: int) -> int:
        """Rows ``m`` of this layer's GEMM for a batch (``batch * Ho * Wo`` for a conv)."""
        return batch


class Linear(WeightLayer):
    """Fully connected layer on ``[batch, in_features]``."""

    def __init__(self, name: str, in_features: int, out_features: int, rng: np.random.Generator,
                 spec: SparseSpec = _DENSE, bias: bool = True, dtype=np.float32) -> None:
        super().__init__(name, in_features, out_features, rng, spec, bias, dtype)

    def _out_shape(self, in_shape):
        if in_shape != (self.k,):
            raise ShapeError(f"layer {self.name!r} takes {self.k} features, got per-sample shape {in_shape}")
        return (self.n,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.k:
            raise ShapeError(f"layer {self.name!r} expects [batch, {self.k}], got {x.shape}")
        return self._gemm_forward(x)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        return self._gemm_backward(dy)


def _out_len(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Patches of an NHWC batch as ``[B, Ho, Wo, kh, kw, C]`` (a copy, C fastest)."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))  # B,H',W',C,kh,kw
    win = win[:, ::stride, ::stride]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3))


def col2im(cols_t: np.ndarray, in_shape: tuple[int, int, int, int], kernel: int, stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add patch gradients back to an NHWC image.

    ``cols_t`` is ``[kh*kw*C, B*Ho*Wo]`` (the transposed patch matrix, which is what
    ``W @ dY^T`` produces): every kernel offset is then one contiguous ``[C, B, Ho, Wo]``
    block, added into a channels-first buffer, and the result is viewed back as NHWC.
    """
    b, h, w, c = in_shape
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    cols_t = cols_t.reshape(kernel, kernel, c, b, ho, wo)
    out = np.zeros((c, b, h + 2 * padding, w + 2 * padding), dtype=cols_t.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out[:, :, i: i + stride * (ho - 1) + 1: stride, j: j + stride * (wo - 1) + 1: stride] += cols_t[i, j]
    return out[:, :, padding: padding + h, padding: padding + w].transpose(1, 2, 3, 0)


class Conv2d(WeightLayer):
    """2-D convolution on NHWC, square kernel, lowered to one GEMM via im2col.

    The weight is ``W[kernel*kernel*in_channels, out_channels]`` (patch order ``kh, kw, C``).
    """

    def __init__(self, name: str, in_channels: int, out_channels: int, kernel: int, rng: np.random.Generator,
                 spec: SparseSpec = _DENSE, stride: int = 1, padding: int = 0, bias: bool = True,
                 dtype=np.float32) -> None:
        for what, v, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                             ("kernel", kernel, 1), ("stride", stride, 1), ("padding", padding, 0)):
            if type(v) is not int or v < low:
                raise ShapeError(f"conv {name!r}: {what} must be an integer >= {low}, not {v!r}")
        self.cin, self.cout, self.kernel, self.stride, self.padding = in_channels, out_channels, kernel, stride, padding
        super().__init__(name, kernel * kernel * in_channels, out_channels, rng, spec, bias, dtype)
        self._xshape: tuple[int, int, int, int] | None = None

    def _out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[2] != self.cin:
            raise ShapeError(f"conv {self.name!r} takes HxWx{self.cin} images, got per-sample shape {in_shape}")
        h, w = in_shape[:2]
        ho, wo = (_out_len(s, self.kernel, self.stride, self.padding) for s in (h, w))
        if ho < 1 or wo < 1:
            raise ShapeError(f"conv {self.name!r}: a {self.kernel}x{self.kernel} kernel does not fit {h}x{w}")
        return (ho, wo, self.cout)

    def gemm_rows(self, batch: int) -> int:
        assert self.out_shape is not None, "build() first"
        return batch * self.out_shape[0] * self.out_shape[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[3] != self.cin:
            raise ShapeError(f"conv {self.name!r} expects [batch, H, W, {self.cin}], got {x.shape}")
        cols = im2col(x, self.kernel, self.stride, self.padding)
        b, ho, wo = cols.shape[:3]
        self._xshape = x.shape
        y = self._gemm_forward(cols.reshape(b * ho * wo, self.k))
        return y.reshape(b, ho, wo, self.cout)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        b, ho, wo, _ = dy.shape
        dcols_t = self._gemm_backward(dy.reshape(b * ho * wo, self.cout), transposed=True)
        if dcols_t is None:
            return None
        return col2im(dcols_t, self._xshape, self.kernel, self.stride, self.padding)


class ReLU(Layer):
    """``max(x, 0)``; the gradient at 0 is 0."""

    def forward(self, x):
        self._pos = x > 0
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * self._pos


class GELU(Layer):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    _C = math.sqrt(2.0 / math.pi)

    def forward(self, x):
        self._x = x
        self._t = np.tanh(self._C * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + self._t)

    def backward(self, dy):
        x, t = self._x, self._t
        dt = (1 - t * t) * self._C * (1 + 3 * 0.044715 * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * dt)


class LayerNorm(Layer):
    """Normalise the last axis to zero mean, unit variance, then ``gamma * x + beta``."""

    def __init__(self, name: str, features: int, eps: float = 1e-5, dtype=np.float32) -> None:
        super().__init__(name)
        if type(features) is not int or features < 1:
            raise ShapeError(f"layernorm {name!r}: features must be a positive integer, not {features!r}")
        self.eps = eps
        self.gamma = np.ones(features, dtype=dtype)
        self.beta = np.zeros(features, dtype=dtype)
        self.dgamma = np.zeros_like(self.gamma)
        self.dbeta = np.zeros_like(self.beta)

    def forward(self, x):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        self._inv = 1.0 / np.sqrt(var + self.eps)
        self._xhat = xc * self._inv
        return self._xhat * self.gamma + self.beta

    def backward(self, dy):
        xhat, inv = self._xhat, self._inv
        lead = tuple(range(dy.ndim - 1))
        self.dgamma[...] = (dy * xhat).sum(axis=lead)
        self.dbeta[...] = dy.sum(axis=lead)
        g = dy * self.gamma
        return inv * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))

    def params(self):
        return {"gamma": self.gamma, "beta": self.beta}

    def grads(self):
        return {"gamma": self.dgamma, "beta": self.dbeta}


class MaxPool2d(Layer):
    """2x2 max pooling, stride 2, on NHWC (an odd last row/column is dropped, PyTorch's floor rule).

    The gradient goes to the first maximum of each window (row-major), like PyTorch.
    """

    def _out_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] < 2 or in_shape[1] < 2:
            raise ShapeError(f"maxpool {self.name!r} needs HxWxC images with H, W >= 2, got {in_shape}")
        return (in_shape[0] // 2, in_shape[1] // 2, in_shape[2])

    def forward(self, x):
        h2, w2 = x.shape[1] // 2, x.shape[2] // 2
        self._xshape = x.shape
        v = [x[:, i: 2 * h2: 2, j: 2 * w2: 2] for i in (0, 1) for j in (0, 1)]   # row-major window order
        y = np.maximum(np.maximum(v[0], v[1]), np.maximum(v[2], v[3]))
        # route the gradient to the first maximum of each window (row-major), like PyTorch
        first = []
        taken = np.zeros(y.shape, dtype=bool)
        for vi in v[:3]:
            f = (vi == y) & ~taken
            first.append(f)
            taken |= f
        first.append(~taken)
        self._first = first
        return y

    def backward(self, dy):
        b, h, w, c = self._xshape
        h2, w2 = dy.shape[1], dy.shape[2]
        win = np.empty((b, h2, 2, w2, 2, c), dtype=dy.dtype)
        for (i, j), f in zip(((0, 0), (0, 1), (1, 0), (1, 1)), self._first, strict=True):
            np.multiply(dy, f, out=win[:, :, i, :, j])
        if h == 2 * h2 and w == 2 * w2:
            return win.reshape(self._xshape)
        dx = np.zeros(self._xshape, dtype=dy.dtype)
        dx[:, : 2 * h2, : 2 * w2] = win.reshape(b, 2 * h2, 2 * w2, c)
        return dx


class Flatten(Layer):
    """``[batch, ...] -> [batch, prod(...)]`` (NHWC order)."""

    def _out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        self._xshape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._xshape)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels`` and its gradient.

    Returns
    -------
    loss : float
        ``mean(-log softmax(logits)[i, labels[i]])`` (NaN if the logits are not finite).
    dlogits : np.ndarray
        ``(softmax(logits) - onehot(labels)) / batch``, same dtype as ``logits``.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ShapeError(f"cross-entropy needs logits [batch, classes] and labels [batch], got "
                         f"{logits.shape} and {labels.shape}")
    z = logits - logits.max(axis=1, keepdims=True)
    ez = np.exp(z)
    s = ez.sum(axis=1, keepdims=True)
    rows = np.arange(logits.shape[0])
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, labels]))
    p = ez / s
    p[rows, labels] -= 1
    p /= logits.shape[0]
    return loss, p.astype(logits.dtype, copy=False)
