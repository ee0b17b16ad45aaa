"""Vector-op backends of the real models: float32 NumPy, or the special-function unit's fixed point.

The forward passes of :mod:`~sparsa.models.real.smollm2` and :mod:`~sparsa.models.real.minilm`
run every *vector* operation - RMSNorm / LayerNorm, softmax (with its mask), SiLU / GELU, RoPE,
the residual adds and the SwiGLU product - through one backend object, while the GEMMs stay
float32.  Two backends exist:

* :class:`FloatOps` - the models' original float32 formulas (bit-identical logits and embeddings
  to the code before backends existed); the default everywhere.
* :class:`SfuOps` - each operation converts its float32 inputs to fx codes
  (:func:`sparsa.sfu.to_fx`, Q15.16, saturating at ``+-32768``), applies the SFU's bit-exact
  operation from :mod:`sparsa.sfu.ops` and converts back (:func:`sparsa.sfu.from_fx`), so the
  model sees exactly the SFU's arithmetic at every vector op.

A model method selects a backend with its ``vector_ops`` keyword: ``None`` or ``"float"`` (the
default), ``"sfu"``, or a backend instance (:func:`resolve`).  Both backends can record, per
operation, the largest magnitude of its activations and where it occurred, and how many values
would saturate (``record=True``; :attr:`VectorOps.stats`), which is how
:mod:`sparsa.models.sfu_accuracy` finds the fx range the real models need.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from sparsa.errors import FormatError
from sparsa.sfu import FX_FRAC, from_fx, to_fx
from sparsa.sfu import ops as sfu
from sparsa.sfu.fixed import FX_MAX, FX_MIN

__all__ = ["OPS", "FX_LIMIT", "OpStats", "VectorOps", "FloatOps", "SfuOps", "resolve", "gelu"]

#: The vector operations every backend implements (and records under these names).
OPS = ("rmsnorm", "layernorm", "softmax", "silu", "gelu", "rope", "add", "mul")
#: Largest magnitude an fx number holds (``2**15``; codes saturate at ``[-2**15, 2**15 - 2**-16]``).
FX_LIMIT = float(1 << (32 - 1 - FX_FRAC))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf via Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution of GELU)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(
        -a * a
    )
    return (s * y).astype(np.float32)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float32, as BERT's ``hidden_act = "gelu"``."""
    return (0.5 * x * (1.0 + _erf(x * np.float32(1 / np.sqrt(2))))).astype(np.float32)


@dataclass
class OpStats:
    """What one vector operation saw over a run (see :attr:`VectorOps.stats`).

    Attributes
    ----------
    calls : int
        Number of calls.
    max_in, max_out : float
        Largest ``|x|`` of the activation inputs (parameters such as norm gains not included)
        and of the outputs.
    max_in_site, max_out_site : str
        The call site (``"layer3.ffn_norm"`` ...) where each maximum occurred.
    max_in_index, max_out_index : tuple of int
        Where in that call's array (for an input, the input that held it): e.g. ``(token,
        channel)`` of a ``[T, d]`` activation.
    saturated : int
        Values outside the fx range: activation inputs and parameters with ``|x| >= FX_LIMIT``
        (a float backend counts what *would* clip) plus, for :class:`SfuOps`, output codes at the
        fx limits (saturation inside the operation).
    saturated_sites : dict of str to int
        ``site -> count`` of those values.
    """

    calls: int = 0
    max_in: float = 0.0
    max_in_site: str = ""
    max_out: float = 0.0
    max_out_site: str = ""
    max_in_index: tuple[int, ...] = ()
    max_out_index: tuple[int, ...] = ()
    saturated: int = 0
    saturated_sites: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return {"calls": self.calls, "max_in": self.max_in, "max_in_site": self.max_in_site,
                "max_in_index": list(self.max_in_index), "max_out": self.max_out, "max_out_site": self.max_out_site,
                "max_out_index": list(self.max_out_index),
                "saturated": self.saturated, "saturated_sites": dict(self.saturated_sites)}


def _amax(x: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """``max |x|`` and its index (0 and ``()`` for an empty array)."""
    a = np.asarray(x)
    if not a.size:
        return 0.0, ()
    i = int(np.abs(a).argmax())
    return float(np.abs(a.flat[i])), tuple(int(j) for j in np.unravel_index(i, a.shape))


class VectorOps(abc.ABC):
    """The vector operations a model's forward pass calls (an abstract base; see the module docstring).

    Every method takes float32 arrays and returns a float32 array of the activation's shape; the
    keyword ``site`` names the call site for :attr:`stats` (``""`` when not recorded).

    Parameters
    ----------
    record : bool
        Keep per-operation statistics in :attr:`stats` (costs one ``max |x|`` per array).
    """

    #: Backend name (``"float"`` or ``"sfu"``).
    name = "abstract"

    def __init__(self, *, record: bool = False) -> None:
        if not isinstance(record, bool):
            raise FormatError(f"record must be a bool, not {record!r}")
        self.record = record
        #: ``op name -> OpStats`` (only when recording).
        self.stats: dict[str, OpStats] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(record={self.record})"

    # ---------------------------------------------------------------- statistics

    def _note(self, op: str, site: str, inputs: tuple[np.ndarray, ...], out: np.ndarray,
              saturated: int = 0) -> None:
        """Record one call: activation ``inputs``, the output, and ``saturated`` values found by the backend."""
        if not self.record:
            return
        st = self.stats.setdefault(op, OpStats())
        st.calls += 1
        m_in, i_in = max((_amax(x) for x in inputs), key=lambda t: t[0], default=(0.0, ()))
        m_out, i_out = _amax(out)
        if m_in > st.max_in or st.calls == 1:
            st.max_in, st.max_in_site, st.max_in_index = m_in, site, i_in
        if m_out > st.max_out or st.calls == 1:
            st.max_out, st.max_out_site, st.max_out_index = m_out, site, i_out
        if saturated:
            st.saturated += saturated
            st.saturated_sites[site] = st.saturated_sites.get(site, 0) + saturated

    def stats_dict(self) -> dict[str, dict[str, object]]:
        """:attr:`stats` as plain JSON, in :data:`OPS` order."""
        return {op: self.stats[op].as_dict() for op in OPS if op in self.stats}

    # ---------------------------------------------------------------- the operations

    @abc.abstractmethod
    def rmsnorm(self, x: np.ndarray, gain: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        """``x / sqrt(mean(x**2) + eps) * gain`` over the last axis."""

    @abc.abstractmethod
    def layernorm(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        """``(x - mean) / sqrt(var + eps) * gain + bias`` over the last axis."""

    @abc.abstractmethod
    def softmax(self, x: np.ndarray, keep: np.ndarray | None = None, *, site: str = "") -> np.ndarray:
        """Softmax over the last axis of the elements where ``keep`` (broadcast to ``x``) is true."""

    @abc.abstractmethod
    def silu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        """``x * sigmoid(x)``."""

    @abc.abstractmethod
    def gelu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        """``x * Phi(x)`` (erf GELU)."""

    @abc.abstractmethod
    def rope_tables(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cos / sin tables ``[T, hd/2]`` of float64 rotation ``angles`` in this backend's format."""

    @abc.abstractmethod
    def rope(self, x: np.ndarray, tables: tuple[np.ndarray, np.ndarray], *, site: str = "") -> np.ndarray:
        """Rotate the adjacent pairs ``(x[2i], x[2i+1])`` of ``x [..., T, hd]`` by :meth:`rope_tables`."""

    @abc.abstractmethod
    def add(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        """Element-wise sum (residual add)."""

    @abc.abstractmethod
    def mul(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        """Element-wise product (SwiGLU)."""


class FloatOps(VectorOps):
    """The models' float32 formulas (bit-identical to the forward passes before backends existed).

    :attr:`~VectorOps.stats` count as ``saturated`` the activations that an fx number could not
    hold (``|x| >= FX_LIMIT``), so a float run shows where the SFU would clip.
    """

    name = "float"

    def _over(self, *arrays: np.ndarray) -> int:
        return sum(int(np.count_nonzero(np.abs(a) >= FX_LIMIT)) for a in arrays) if self.record else 0

    def rmsnorm(self, x: np.ndarray, gain: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        y = (x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + np.float32(eps)) * gain).astype(np.float32)
        self._note("rmsnorm", site, (x,), y, self._over(x, gain))
        return y

    def layernorm(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        mu = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mu).mean(axis=-1, keepdims=True)
        y = ((x - mu) / np.sqrt(var + np.float32(eps)) * gain + bias).astype(np.float32)
        self._note("layernorm", site, (x,), y, self._over(x, gain, bias))
        return y

    def softmax(self, x: np.ndarray, keep: np.ndarray | None = None, *, site: str = "") -> np.ndarray:
        s = x if keep is None else np.where(keep, x, np.float32(-np.inf))
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        self._note("softmax", site, (x,), s, self._over(x))
        return s

    def silu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        y = x / (1 + np.exp(-x))
        self._note("silu", site, (x,), y, self._over(x))
        return y

    def gelu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        y = gelu(x)
        self._note("gelu", site, (x,), y, self._over(x))
        return y

    def rope_tables(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ang = np.asarray(angles, dtype=np.float64)
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    def rope(self, x: np.ndarray, tables: tuple[np.ndarray, np.ndarray], *, site: str = "") -> np.ndarray:
        cos, sin = tables
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        self._note("rope", site, (x,), out, self._over(x))
        return out

    def add(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        y = a + b
        self._note("add", site, (a, b), y, self._over(a, b))
        return y

    def mul(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        y = a * b
        self._note("mul", site, (a, b), y, self._over(a, b))
        return y


class SfuOps(VectorOps):
    """Every vector op in the SFU's fixed point: ``from_fx(sparsa.sfu.ops.<op>(to_fx(inputs)))``.

    Inputs are rounded to fx (Q15.16, step ``2**-16``) and saturate at ``+-FX_LIMIT``; outputs are
    the fx results as float32 (the next GEMM's input; exact below ``2**8``, 24 bits above), except
    :meth:`add`'s, float64, so that the residual stream is exactly the SFU's between operations.
    :attr:`~VectorOps.stats` count every input or parameter value that clipped on conversion and
    every output code at the fx limits.
    """

    name = "sfu"

    def _fx(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """fx codes of ``x`` and how many of them clipped."""
        a = np.asarray(x, dtype=np.float64)
        clipped = int(np.count_nonzero(np.abs(a) >= FX_LIMIT)) if self.record else 0
        return to_fx(a), clipped

    def _out(self, op: str, site: str, inputs: tuple[np.ndarray, ...], codes: np.ndarray, clipped: int,
             dtype: type = np.float32) -> np.ndarray:
        y = from_fx(codes).astype(dtype)
        if self.record:
            clipped += int(np.count_nonzero((codes == FX_MAX) | (codes == FX_MIN)))
            self._note(op, site, inputs, y, clipped)
        return y

    def rmsnorm(self, x: np.ndarray, gain: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        (cx, nx), (cg, ng) = self._fx(x), self._fx(gain)
        return self._out("rmsnorm", site, (x,), sfu.rmsnorm(cx, cg, float(eps)), nx + ng)

    def layernorm(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float, *, site: str = "") -> np.ndarray:
        (cx, nx), (cg, ng), (cb, nb) = self._fx(x), self._fx(gain), self._fx(bias)
        return self._out("layernorm", site, (x,), sfu.layernorm(cx, cg, cb, float(eps)), nx + ng + nb)

    def softmax(self, x: np.ndarray, keep: np.ndarray | None = None, *, site: str = "") -> np.ndarray:
        cx, nx = self._fx(x)
        return self._out("softmax", site, (x,), sfu.softmax(cx, keep), nx)

    def silu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        cx, nx = self._fx(x)
        return self._out("silu", site, (x,), sfu.activation(cx, "silu"), nx)

    def gelu(self, x: np.ndarray, *, site: str = "") -> np.ndarray:
        cx, nx = self._fx(x)
        return self._out("gelu", site, (x,), sfu.activation(cx, "gelu"), nx)

    def rope_tables(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ang = np.asarray(angles, dtype=np.float64)
        return to_fx(np.cos(ang)), to_fx(np.sin(ang))

    def rope(self, x: np.ndarray, tables: tuple[np.ndarray, np.ndarray], *, site: str = "") -> np.ndarray:
        cos, sin = tables
        if np.asarray(cos).dtype.kind not in "iu":
            raise FormatError(f"SfuOps.rope needs fx tables from SfuOps.rope_tables, not dtype {np.asarray(cos).dtype}")
        cx, nx = self._fx(x)
        return self._out("rope", site, (x,), sfu.rope(cx, cos, sin, pairs="adjacent"), nx)

    def add(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        (ca, na), (cb, nb) = self._fx(a), self._fx(b)
        # float64 holds every fx value exactly: the residual stream stays the SFU's fx numbers
        # from add to add (float32 would round values above 2**8 between two SFU operations).
        return self._out("add", site, (a, b), sfu.add(ca, cb), na + nb, np.float64)

    def mul(self, a: np.ndarray, b: np.ndarray, *, site: str = "") -> np.ndarray:
        (ca, na), (cb, nb) = self._fx(a), self._fx(b)
        return self._out("mul", site, (a, b), sfu.mul(ca, cb), na + nb)


#: Backends by name.
BACKENDS: dict[str, type[VectorOps]] = {"float": FloatOps, "sfu": SfuOps}
#: The default backend (stateless: it never records).
_DEFAULT = FloatOps()


def resolve(vector_ops: VectorOps | str | None) -> VectorOps:
    """The backend a model method was given: ``None`` / ``"float"`` -> float32, ``"sfu"`` -> fx.

    Parameters
    ----------
    vector_ops : VectorOps, str or None
        A backend instance (used as is, e.g. one that records), a name in :data:`BACKENDS`, or
        None for the float default.
    """
    if vector_ops is None:
        return _DEFAULT
    if isinstance(vector_ops, VectorOps):
        return vector_ops
    if isinstance(vector_ops, str) and vector_ops in BACKENDS:
        return _DEFAULT if vector_ops == "float" else BACKENDS[vector_ops]()
    raise FormatError(f"vector_ops must be None, a VectorOps or one of {', '.join(map(repr, BACKENDS))}, "
                     f"not {vector_ops!r}")
