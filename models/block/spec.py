"""A transformer block in integer form: its structure, its linear layers and its static scales.

Everything here is data checked on construction; the arithmetic that uses it is
:mod:`sparsa.models.block.reference` (the dataflow is specified there and in docs/block.md).

* :class:`BlockSpec` - the structure: sizes, norm and activation kind, gated MLP or not, causal
  or bidirectional attention, RoPE pairing, norm placement, the norms' epsilon.
* :class:`IntLinear` - one linear layer: integer weight codes ``[out, in]`` (int8 or int4, zeros
  where pruned), per-output-channel weight-scale mantissas sharing one exponent (the SFU's
  ``requantize`` format: ``w[o, :] ~ codes[o, :] * mantissa[o] * 2**-exponent``) and an fx bias.
* :class:`StaticScale` - one scale per KV head, ``mantissa[h] * 2**-exponent[h]``, mantissas in
  ``[1, 2**16)`` (the K/V cache scales and the attention scores' requantization scale).
* :class:`BlockWeights` - all of it for one block, with the fx norm parameters and RoPE tables.

Every check raises a one-line :class:`~sparsa.errors.ShapeError`, :class:`~sparsa.errors.FormatError`
or :class:`~sparsa.errors.ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats import intq
from sparsa.sfu.fixed import as_fx
from sparsa.sfu.ops import SCALE_MANT_BITS

__all__ = ["NORMS", "ACTIVATIONS", "ROPE_PAIRS", "WEIGHT_BITS", "EXPONENT_RANGE", "BlockSpec", "IntLinear",
           "StaticScale", "BlockWeights", "check_fx"]

#: Norm kinds (``rmsnorm``: LLaMA; ``layernorm``: BERT, with a bias).
NORMS = ("rmsnorm", "layernorm")
#: Activation kinds of the MLP (:func:`sparsa.sfu.ops.activation`).
ACTIVATIONS = ("silu", "gelu")
#: RoPE pairings a block may use: the SFU's ROPE command rotates adjacent pairs only (GGUF LLaMA);
#: a Hugging Face ``rotate_half`` model permutes the rows of its Q and K weights into adjacent
#: pairs first, as llama.cpp's converter does.  ``None`` in :class:`BlockSpec` means no RoPE.
ROPE_PAIRS = ("adjacent",)
#: Weight code widths.
WEIGHT_BITS = (4, 8)
#: Range of a scale exponent (the SFU command's signed 8-bit exponent field).
EXPONENT_RANGE = (-128, 127)


def _int(name: str, value: object, lo: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
        raise ConfigError(f"{name} must be an int >= {lo}, not {value!r}")
    return int(value)


def check_fx(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as an int64 array of fx codes of ``shape`` (ShapeError / FormatError otherwise)."""
    if np.shape(value) != shape:
        raise ShapeError(f"{name}: shape {np.shape(value)}, expected {shape}")
    return as_fx(value, name)


def _exponent(name: str, value: object) -> int:
    lo, hi = EXPONENT_RANGE
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise FormatError(f"{name} must be an int in {lo}..{hi}, not {value!r}")
    return int(value)


def _mantissas(name: str, value: object, shape: tuple[int, ...], lo: int) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise FormatError(f"{name}: mantissas must be integers, not dtype {a.dtype}")
    if a.shape != shape:
        raise ShapeError(f"{name}: shape {a.shape}, expected {shape}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() >= 1 << SCALE_MANT_BITS):
        raise FormatError(f"{name}: mantissas must be in [{lo}, 2**{SCALE_MANT_BITS}), got [{a.min()}, {a.max()}]")
    return a


@dataclass(frozen=True)
class BlockSpec:
    """The structure of one transformer block.

    Parameters
    ----------
    hidden : int
        Model width ``d``.
    heads, kv_heads : int
        Query heads and key/value heads (``heads`` a multiple of ``kv_heads``: query head ``j``
        reads KV head ``j // (heads // kv_heads)``).
    head_dim : int
        Elements per head (even with RoPE).
    ffn : int
        MLP width.
    norm : {"rmsnorm", "layernorm"}
    activation : {"silu", "gelu"}
    gated : bool
        SwiGLU-style MLP ``down(act(gate(h)) * up(h))`` (else ``down(act(up(h)))``).
    causal : bool
        Causal attention (a decoder; one-token decode is defined) or bidirectional.
    rope : {"adjacent"} or None
        RoPE pairing of Q and K (:data:`ROPE_PAIRS`), or no RoPE.
    prenorm : bool
        Norm before each sub-layer (LLaMA) or after each residual add (BERT).
    eps : float
        The norms' epsilon.
    """

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    norm: str = "rmsnorm"
    activation: str = "silu"
    gated: bool = True
    causal: bool = True
    rope: str | None = "adjacent"
    prenorm: bool = True
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("hidden", "heads", "kv_heads", "head_dim", "ffn"):
            _int(f"block {name}", getattr(self, name))
        if self.heads % self.kv_heads:
            raise ConfigError(f"block heads={self.heads} must be a multiple of kv_heads={self.kv_heads}")
        if self.norm not in NORMS:
            raise ConfigError(f"block norm must be one of {', '.join(NORMS)}, not {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"block activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}")
        if self.rope is not None and self.rope not in ROPE_PAIRS:
            raise ConfigError(f"block rope must be None or one of {', '.join(ROPE_PAIRS)}, not {self.rope!r}")
        if self.rope is not None and self.head_dim % 2:
            raise ConfigError(f"block head_dim={self.head_dim} must be even with RoPE")
        for name in ("gated", "causal", "prenorm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"block {name} must be a bool, not {getattr(self, name)!r}")
        if not (isinstance(self.eps, (int, float)) and np.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"block eps must be a finite number >= 0, not {self.eps!r}")

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def q_width(self) -> int:
        """``heads * head_dim``."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """``kv_heads * head_dim``."""
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``name -> (out, in)`` of every linear layer of the block, in execution order."""
        d, f = self.hidden, self.ffn
        shapes = {"q": (self.q_width, d), "k": (self.kv_width, d), "v": (self.kv_width, d), "o": (d, self.q_width)}
        if self.gated:
            shapes["gate"] = (f, d)
        shapes.update({"up": (f, d), "down": (d, f)})
        return shapes


@dataclass(frozen=True, eq=False)
class IntLinear:
    """One linear layer ``y = x @ W.T + b`` in integer form.

    Attributes
    ----------
    codes : np.ndarray
        int64 ``[out, in]`` weight codes in the symmetric ``bits`` range (int4: -7..7, int8:
        -127..127), zeros where pruned.
    mantissa : np.ndarray
        int64 ``[out]`` weight-scale mantissas in ``[0, 2**16)``.
    exponent : int
        Shared exponent: ``w[o, :] ~ codes[o, :] * mantissa[o] * 2**-exponent``.
    bits : int
        4 or 8.
    bias : np.ndarray or None
        int64 ``[out]`` fx bias.
    name : str
        For messages.
    """

    codes: np.ndarray
    mantissa: np.ndarray
    exponent: int
    bits: int = 8
    bias: np.ndarray | None = None
    name: str = "linear"

    def __post_init__(self) -> None:
        if self.bits not in WEIGHT_BITS:
            raise FormatError(f"{self.name} bits must be one of {WEIGHT_BITS}, not {self.bits!r}")
        c = np.asarray(self.codes)
        if c.ndim != 2 or 0 in c.shape:
            raise ShapeError(f"{self.name} codes must be a non-empty [out, in] matrix, not shape {c.shape}")
        if c.dtype.kind not in "iu":
            raise FormatError(f"{self.name} codes must be integers, not dtype {c.dtype}")
        c = c.astype(np.int64)
        lo, hi = intq.int_range(self.bits)
        bad = (c < lo) | (c > hi)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise FormatError(f"{self.name} codes: value {int(c[pos])} at {pos} is outside int{self.bits} {lo}..{hi}")
        object.__setattr__(self, "codes", c)
        object.__setattr__(self, "mantissa", _mantissas(f"{self.name} mantissa", self.mantissa, c.shape[:1], 0))
        object.__setattr__(self, "exponent", _exponent(f"{self.name} exponent", self.exponent))
        if self.bias is not None:
            object.__setattr__(self, "bias", check_fx(f"{self.name} bias", self.bias, c.shape[:1]))

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)``."""
        return self.codes.shape  # type: ignore[return-value]

    def dequantized(self) -> np.ndarray:
        """float64 ``[out, in]`` weights the integer layer computes with."""
        return self.codes * np.ldexp(self.mantissa.astype(np.float64), -self.exponent)[:, None]


@dataclass(frozen=True, eq=False)
class StaticScale:
    """One static scale per KV head: ``mantissa[h] * 2**-exponent[h]``, mantissas in ``[1, 2**16)``."""

    mantissa: np.ndarray
    exponent: np.ndarray
    name: str = "scale"

    def __post_init__(self) -> None:
        m = np.asarray(self.mantissa)
        if m.ndim != 1 or m.size == 0:
            raise ShapeError(f"{self.name} mantissa must be a non-empty vector, not shape {m.shape}")
        object.__setattr__(self, "mantissa", _mantissas(f"{self.name} mantissa", m, m.shape, 1))
        e = np.asarray(self.exponent)
        if e.shape != m.shape or e.dtype.kind not in "iu":
            raise ShapeError(f"{self.name} exponent must be an int vector of shape {m.shape}, not {e.shape} {e.dtype}")
        for v in e.tolist():
            _exponent(f"{self.name} exponent", v)
        object.__setattr__(self, "exponent", e.astype(np.int64))

    @property
    def value(self) -> np.ndarray:
        """float64 scales ``[heads]``."""
        return np.ldexp(self.mantissa.astype(np.float64), -self.exponent)


@dataclass(frozen=True, eq=False)
class BlockWeights:
    """One transformer block in integer form (checked against ``spec`` on construction).

    Attributes
    ----------
    spec : BlockSpec
        The structure.
    linear : dict of str to IntLinear
        The layers of :meth:`BlockSpec.linear_shapes` (``q, k, v, o, [gate,] up, down``).
    norm1, norm2 : np.ndarray
        fx gains ``[hidden]`` of the attention and MLP norms.
    norm1_bias, norm2_bias : np.ndarray or None
        fx biases ``[hidden]`` (LayerNorm only; None for RMSNorm).
    k_scale, v_scale : StaticScale
        Static per-KV-head scales of the cached K and V codes (int8).
    score_scale : StaticScale
        Per KV head ``k_scale / sqrt(head_dim)`` as a 16-bit mantissa: the attention scores'
        requantization scale.
    rope_cos, rope_sin : np.ndarray or None
        fx tables ``[max_positions, head_dim / 2]`` (None without RoPE).
    max_positions : int
        Longest context (the KV cache's capacity; the RoPE tables' length with RoPE).
    act_group : int or None
        Activation scales of the linear layers' inputs: None, one per token; an int, one per
        ``act_group`` elements of a token (all sharing the token's exponent).  Attention's Q and
        P are always per token.
    kv_qmax : int
        Largest K/V code magnitude, 1..127 (default 127): 119 for a datapath whose 4-bit weight
        port takes the cache as two nibble planes (:data:`sparsa.compiler.attention.NIBBLE_QMAX`).
    """

    spec: BlockSpec
    linear: dict
    norm1: np.ndarray
    norm2: np.ndarray
    k_scale: StaticScale
    v_scale: StaticScale
    score_scale: StaticScale
    max_positions: int
    norm1_bias: np.ndarray | None = None
    norm2_bias: np.ndarray | None = None
    rope_cos: np.ndarray | None = None
    rope_sin: np.ndarray | None = None
    act_group: int | None = None
    kv_qmax: int = 127

    def __post_init__(self) -> None:
        s = self.spec
        if isinstance(self.kv_qmax, bool) or not isinstance(self.kv_qmax, int) or not 1 <= self.kv_qmax <= 127:
            raise ConfigError(f"block kv_qmax must be an int in 1..127, not {self.kv_qmax!r}")
        if not isinstance(s, BlockSpec):
            raise ConfigError(f"block spec must be a BlockSpec, not {type(s).__name__}")
        want = s.linear_shapes()
        have = set(self.linear)
        if have != set(want):
            raise ConfigError(f"block linear layers must be {', '.join(want)}, not {', '.join(sorted(have))}")
        for name, shape in want.items():
            lin = self.linear[name]
            if not isinstance(lin, IntLinear):
                raise ConfigError(f"block layer {name!r} must be an IntLinear, not {type(lin).__name__}")
            if lin.shape != shape:
                raise ShapeError(f"block layer {name!r}: codes {lin.shape}, expected (out, in) = {shape}")
        d = (s.hidden,)
        ln = s.norm == "layernorm"
        for i in (1, 2):
            object.__setattr__(self, f"norm{i}", check_fx(f"norm{i} gain", getattr(self, f"norm{i}"), d))
            bias = getattr(self, f"norm{i}_bias")
            if ln != (bias is not None):
                raise ConfigError(f"norm{i}_bias must be {'given' if ln else 'None'} with norm={s.norm!r}")
            if ln:
                object.__setattr__(self, f"norm{i}_bias", check_fx(f"norm{i} bias", bias, d))
        for name in ("k_scale", "v_scale", "score_scale"):
            sc = getattr(self, name)
            if not isinstance(sc, StaticScale) or sc.mantissa.shape != (s.kv_heads,):
                raise ShapeError(f"{name} must be a StaticScale of {s.kv_heads} KV heads, not {sc!r}")
        _int("block max_positions", self.max_positions)
        if self.act_group is not None:
            _int("block act_group", self.act_group)
        if (s.rope is None) != (self.rope_cos is None) or (self.rope_cos is None) != (self.rope_sin is None):
            raise ConfigError(f"rope_cos/rope_sin must be {'given' if s.rope else 'None'} with rope={s.rope!r}")
        if s.rope is not None:
            shape = (self.max_positions, s.head_dim // 2)
            object.__setattr__(self, "rope_cos", check_fx("rope_cos", self.rope_cos, shape))
            object.__setattr__(self, "rope_sin", check_fx("rope_sin", self.rope_sin, shape))
