"""The input gradient of a convolution, run as a convolution of the output gradient.

A conv layer ``Y = im2col(X) @ W`` (``W[kh*kw*Cin, Cout]``, patch order ``kh, kw, C``) has two
mappings of its input gradient onto the array (docs/training.md, "The input gradient of a
convolution"):

``gemm``
    ``dX_cols = dY @ W_b^T``: ``B*Ho*Wo x Cout x kh*kw*Cin``, the patch gradients, which col2im
    adds into the image.  The reduction is the layer's output channels only - often one k-tile or
    less, so a sparse ``W_b^T`` leaves PE rows idle and saves nothing.
``conv``
    ``dX = P(dY) @ R(W_b)``: ``B*H*W x kh*kw*Cout x Cin``, the image gradient directly (the
    transposed convolution).  ``R(W)[(a, b, co), ci] = W[(kh-1-a, kw-1-b, ci), co]`` is the kernel
    rotated by 180 degrees with its channel axes swapped, and ``P(dY)[(t, i, j), (a, b, co)]`` is
    ``dY[t, u, v, co]`` where ``u * s_h = i + p_h - (kh-1-a) * d_h`` (and likewise ``v``) has an
    integer solution inside the output, else 0.  Its reduction is ``kh * kw`` times longer.

BDWP's backward mask keeps N of every M consecutive output channels of one ``(kh, kw, ci)``; in
``R(W_b)`` those are M consecutive elements of the reduction axis inside one tap, so ``R(W_b)``
is N:M along its reduction axis whenever ``Cout`` is a multiple of the hardware's M (otherwise a
group would straddle two taps, and only the ``gemm`` form is offered).  Both forms compute the
same integers: ``P(dY) @ R(W_b)`` is ``col2im(dY @ W_b^T)`` reshaped to ``[B*H*W, Cin]``.

The form is chosen per layer by :func:`pick_input_grad_form` on the cycles of the timing contract
(the compiler compiles both, the estimator costs both with the same tiling); ties keep ``gemm``.
The compiler also drops the ``conv`` form when its longer reduction could overflow the
accumulator (the estimator, which never refuses a reduction, does not).
With ``groups > 1`` every function works on one group (``Cin / groups``, ``Cout / groups``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparsa.errors import ConfigError, ShapeError
from sparsa.models.workloads.graph import ConvGeometry

__all__ = ["INPUT_GRAD_FORMS", "conv_grad_patches", "input_grad_forms", "pick_input_grad_form",
           "rotate_conv_weight"]

#: Mappings of a layer's input gradient: ``gemm`` (``dY @ W_b^T``) and, for convolutions, ``conv``.
INPUT_GRAD_FORMS: tuple[str, ...] = ("gemm", "conv")


def _group_channels(conv: ConvGeometry) -> tuple[int, int]:
    return conv.in_channels // conv.groups, conv.out_channels // conv.groups


def input_grad_forms(m: int, k: int, n: int, conv: ConvGeometry | None = None,
                     group_m: int = 1) -> dict[str, tuple[int, int, int]]:
    """The ``(m, k, n)`` of each input-gradient mapping of a layer ``Y[m, n] = X[m, k] @ W[k, n]``.

    Parameters
    ----------
    m, k, n : int
        The forward GEMM of one instance (one group of a grouped conv).
    conv : ConvGeometry, optional
        The convolution the layer lowers; without it only ``gemm`` is possible.
    group_m : int
        M of the input-gradient weight's N:M groups on the hardware (1 when it runs dense): the
        ``conv`` form needs whole groups inside one tap, i.e. ``Cout / groups`` a multiple of it.

    Returns
    -------
    dict
        ``{"gemm": (m, n, k)}`` and, when possible, ``"conv": (B*H*W, kh*kw*Cout, Cin)`` (per group).

    Raises
    ------
    ShapeError
        ``(m, k, n)`` is not the im2col GEMM of ``conv``.
    """
    forms = {"gemm": (m, n, k)}
    if conv is None:
        return forms
    cin, cout = _group_channels(conv)
    kh, kw = conv.kernel
    pixels = conv.out_height * conv.out_width
    if k != kh * kw * cin or n != cout or m % pixels:
        raise ShapeError(f"GEMM {m}x{k}x{n} is not the im2col GEMM of a {kh}x{kw} conv {cin}->{cout} channels "
                         f"with {conv.out_height}x{conv.out_width} outputs (need k={kh * kw * cin}, n={cout}, "
                         f"m a multiple of {pixels})")
    if cout % group_m == 0:
        forms["conv"] = (m // pixels * conv.in_height * conv.in_width, kh * kw * cout, cin)
    return forms


def pick_input_grad_form(cycles: Mapping[str, float]) -> str:
    """The form with the fewest cycles (``gemm`` on a tie): the one rule the compiler and estimator share.

    Raises
    ------
    ConfigError
        An unknown form name, or no form at all.
    """
    unknown = [f for f in cycles if f not in INPUT_GRAD_FORMS]
    if unknown or not cycles:
        raise ConfigError(f"input-gradient forms must be some of {', '.join(INPUT_GRAD_FORMS)}, "
                          f"not {list(cycles)!r}")
    return min(cycles, key=lambda f: (cycles[f], INPUT_GRAD_FORMS.index(f)))


def rotate_conv_weight(w: np.ndarray, conv: ConvGeometry) -> np.ndarray:
    """``R(W)[kh*kw*Cout, Cin]``: the conv weight ``W[kh*kw*Cin, Cout]`` rotated by 180 degrees,
    channel axes swapped (module docstring), for one group.

    Raises
    ------
    ShapeError
        ``w`` is not ``[kh*kw*Cin, Cout]`` of ``conv`` (per group).
    """
    cin, cout = _group_channels(conv)
    kh, kw = conv.kernel
    w = np.asarray(w)
    if w.shape != (kh * kw * cin, cout):
        raise ShapeError(f"conv weight must be [kh*kw*Cin, Cout] = {(kh * kw * cin, cout)}, not {w.shape}")
    return np.ascontiguousarray(w.reshape(kh, kw, cin, cout)[::-1, ::-1].transpose(0, 1, 3, 2)
                                .reshape(kh * kw * cout, cin))


def _taps(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int):
    """For each rotated tap ``a`` and input position ``i``: the output position feeding it and whether it exists."""
    i = np.arange(size)[None, :]
    tap = (kernel - 1 - np.arange(kernel))[:, None]            # rotated tap a -> original tap kernel-1-a
    num = i + padding - tap * dilation
    u = np.floor_divide(num, stride)
    ok = (num % stride == 0) & (u >= 0) & (u < out)
    return np.where(ok, u, 0), ok                                # both [kernel, size]


def conv_grad_patches(dy: np.ndarray, conv: ConvGeometry) -> np.ndarray:
    """``P(dY)[B*H*W, kh*kw*Cout]``: the patches of the output gradient the ``conv`` form streams.

    Parameters
    ----------
    dy : np.ndarray
        ``dY[B*Ho*Wo, Cout]`` of one group, rows in ``(b, y, x)`` order (the im2col GEMM's rows).
    conv : ConvGeometry
        The layer.

    Returns
    -------
    np.ndarray
        Rows ``(b, i, j)`` over the input image, columns ``(a, b, co)`` over the rotated taps (the
        reduction axis of :func:`rotate_conv_weight`); missing positions are 0.

    Raises
    ------
    ShapeError
        ``dy`` is not ``[B*Ho*Wo, Cout]`` of ``conv``.
    """
    _, cout = _group_channels(conv)
    ho, wo = conv.out_height, conv.out_width
    dy = np.asarray(dy)
    if dy.ndim != 2 or dy.shape[1] != cout or dy.shape[0] % (ho * wo):
        raise ShapeError(f"dY must be [B*Ho*Wo, Cout] with Ho*Wo = {ho * wo} and Cout = {cout}, not {dy.shape}")
    img = dy.reshape(-1, ho, wo, cout)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    u, u_ok = _taps(conv.in_height, ho, kh, sh, ph, dh)          # [kh, H]
    v, v_ok = _taps(conv.in_width, wo, kw, sw, pw, dw)           # [kw, W]
    # out[t, i, j, a, b, co] = img[t, u[a, i], v[b, j], co] where both taps exist
    gathered = img[:, u.T[:, None, :, None], v.T[None, :, None, :], :]           # [B, H, W, kh, kw, Cout]
    keep = (u_ok.T[:, None, :, None] & v_ok.T[None, :, None, :])[None, ..., None]
    out = np.where(keep, gathered, np.zeros((), dtype=img.dtype))
    return np.ascontiguousarray(out.reshape(-1, kh * kw * cout))
