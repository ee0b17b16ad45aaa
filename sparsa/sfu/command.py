"""SFU commands: what one SFU instruction asks of the unit, independent of its encoding.

The SFU works on its **vector memory** (VMEM): ``depth`` words of ``L`` fx lanes.  A row of ``n``
elements occupies ``B = ceil(n / L)`` consecutive words (the tail lanes of the last word are
padding: never read into a result, written as 0).  A command runs over ``rows`` rows:

* operand ``a`` row ``r`` at ``a + r * B``, result row ``r`` at ``dst + r * B``;
* operand ``b`` row ``r`` at ``b + r * b_step``: ``b_step = B`` for a second tensor (residual,
  gate, RoPE tables), ``0`` for one vector shared by every row (a norm's gain, per-channel
  weight-scale mantissas).

=============  ==========================================================================
op             result row ``r`` (functions of :mod:`sparsa.sfu.ops` / :mod:`sparsa.sfu.lane`)
=============  ==========================================================================
ADD, MUL       ``add(a, b)``, ``mul(a, b)``
REQUANT        ``requantize(a, b, shift)`` (``a`` integer sums, ``b`` 16-bit mantissas)
REQUANT_ROW    ``requantize_rows(a, m, e, b, shift)``: ``a`` raw 32-bit sums, ``b`` per-channel
               mantissas, and row ``r``'s mantissa ``m[r]`` and exponent ``e[r]`` read from VMEM
               (element ``r`` of the rows from ``scale_src`` and ``exp_src``, ``L`` per word, as
               a per-token QUANTIZE with ``row_exponent`` writes them); mantissas are the low 16
               bits of their words, the shift ``shift + e[r]`` is clamped to ``[-64, 63]``
SILU, GELU     ``activation(a, kind)``
ROPE           adjacent pairs of ``a`` rotated by ``b`` = interleaved ``cos, sin`` (``b[2i]``,
               ``b[2i+1]``)
QSTATIC        ``quantize_static(a, mantissa, exponent, bits, qmax)`` codes (``qmax`` 0: ``2**(bits-1)-1``)
SOFTMAX        ``softmax(a, keep)``: keep ``j < n``, and ``j <= offset + r`` when ``causal``
RMSNORM        ``rmsnorm(a, b, eps)`` with ``eps_code = norm_eps_code(eps, n)``
LAYERNORM      ``layernorm(a, b, 0, eps)`` (the bias is a following ADD)
QUANTIZE       ``quantize(a rows, spec, bits)``: codes to ``dst``, one mantissa per scale unit to
               ``scale_dst`` (row-major, ``L`` per word), the exponent to the SFU's exponent
               register; with ``row_exponent``, :func:`sparsa.sfu.ops.quantize_rows`: each row
               its own exponent, written to ``exp_dst`` (element ``r`` for row ``r``, ``L``
               per word; the register keeps the last row's)
=============  ==========================================================================

A command must not write a word it reads in a *different* position (``dst == a`` in place is
fine: every pass reads a word before its result is written back).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sparsa.errors import ConfigError, FormatError

__all__ = ["SfuOp", "SfuCommand", "ELEMENTWISE", "ROW_OPS", "NEEDS_B", "WRITES", "MAX_ROW", "row_words"]

#: Longest row (elements) a command may name; rows of softmax stay below ``2**16`` elements.
MAX_ROW = (1 << 16) - 1


class SfuOp(IntEnum):
    """The SFU's operations."""

    ADD = 0
    MUL = 1
    REQUANT = 2
    SILU = 3
    GELU = 4
    ROPE = 5
    QSTATIC = 6
    SOFTMAX = 7
    RMSNORM = 8
    LAYERNORM = 9
    QUANTIZE = 10
    REQUANT_ROW = 11


#: One pass, beats stream across rows.
ELEMENTWISE = frozenset({SfuOp.ADD, SfuOp.MUL, SfuOp.REQUANT, SfuOp.SILU, SfuOp.GELU, SfuOp.ROPE, SfuOp.QSTATIC,
                         SfuOp.REQUANT_ROW})
#: Several passes per row with scalar steps between them.
ROW_OPS = frozenset({SfuOp.SOFTMAX, SfuOp.RMSNORM, SfuOp.LAYERNORM, SfuOp.QUANTIZE})
#: Operations that read operand ``b``.
NEEDS_B = frozenset({SfuOp.ADD, SfuOp.MUL, SfuOp.REQUANT, SfuOp.REQUANT_ROW, SfuOp.ROPE, SfuOp.RMSNORM,
                     SfuOp.LAYERNORM})
#: The ranges of :meth:`SfuCommand.ranges` a command writes.
WRITES = ("dst", "scale_dst", "exp_dst")


def row_words(n: int, lanes: int) -> int:
    """VMEM words of one row of ``n`` elements: ``ceil(n / lanes)``."""
    return -(-n // lanes)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise FormatError(f"SFU command {name} must be an int in {lo}..{hi}, not {value!r}")


@dataclass(frozen=True)
class SfuCommand:
    """One SFU operation over ``rows`` rows of ``n`` elements (see the module docstring).

    Parameters
    ----------
    op : SfuOp
        The operation.
    rows, n : int
        Rows and elements per row.
    dst, a, b : int
        VMEM word addresses of the result and the operands.
    b_step : int
        Words between the ``b`` rows of consecutive rows (0: one shared vector).
    shift : int
        REQUANT: right shift after the product (negative: left).
    mantissa, exponent : int
        QSTATIC: the scale ``mantissa * 2**-exponent``.
    bits : int
        QSTATIC / QUANTIZE: code width (8 or 4).
    eps_code : int
        Norms: :func:`sparsa.sfu.ops.norm_eps_code` of the model's epsilon and ``n``.
    causal : bool
        SOFTMAX: drop keys after the query's position.
    offset : int
        SOFTMAX with ``causal``: position of row 0 (the number of earlier tokens).
    unit : int
        QUANTIZE: elements per scale (``n`` for per-token scales, else the group size).
    mantissa_bits : int
        QUANTIZE: scale mantissa width.
    scale_dst : int
        QUANTIZE: VMEM word address of the mantissas.
    row_exponent : bool
        QUANTIZE: one exponent per row (each row quantized alone) instead of one shared.
    exp_dst : int
        QUANTIZE with ``row_exponent``: VMEM word address of the row exponents.
    scale_src, exp_src : int
        REQUANT_ROW: VMEM word addresses of the row mantissas and the row exponents.
    qmax : int
        QSTATIC: largest code magnitude, ``1 .. 2**(bits-1) - 1``; 0 (the default) is
        ``2**(bits-1) - 1`` (e.g. 119 for int8 K/V codes that a 4-bit weight port splits into
        two nibble planes, docs/block.md).
    """

    op: SfuOp
    rows: int
    n: int
    dst: int
    a: int
    b: int = 0
    b_step: int = 0
    shift: int = 0
    mantissa: int = 0
    exponent: int = 0
    bits: int = 8
    eps_code: int = 0
    causal: bool = False
    offset: int = 0
    unit: int = 0
    mantissa_bits: int = 16
    scale_dst: int = 0
    row_exponent: bool = False
    exp_dst: int = 0
    scale_src: int = 0
    exp_src: int = 0
    qmax: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.op, SfuOp):
            raise FormatError(f"SFU command op must be an SfuOp, not {self.op!r}")
        _check_int("rows", self.rows, 1, MAX_ROW)
        _check_int("n", self.n, 1, MAX_ROW)
        for name in ("dst", "a", "b", "b_step", "scale_dst", "offset", "exp_dst", "scale_src", "exp_src"):
            _check_int(name, getattr(self, name), 0, (1 << 24) - 1)
        _check_int("shift", self.shift, -63, 63)
        _check_int("exponent", self.exponent, -128, 127)
        _check_int("mantissa", self.mantissa, 0, (1 << 24) - 1)
        _check_int("eps_code", self.eps_code, 0, (1 << 47) - 1)  # plus a sum of squares < 2**46: RSQRT d < 2**48
        _check_int("mantissa_bits", self.mantissa_bits, 2, 24)
        if self.bits not in (4, 8):
            raise FormatError(f"SFU command bits must be 4 or 8, not {self.bits!r}")
        _check_int("qmax", self.qmax, 0, (1 << (self.bits - 1)) - 1)
        if self.qmax and self.op != SfuOp.QSTATIC:
            raise FormatError(f"SFU qmax belongs to QSTATIC, not {self.op.name} (qmax={self.qmax})")
        if self.op == SfuOp.QSTATIC and self.mantissa == 0:
            raise FormatError("SFU QSTATIC needs a positive scale mantissa, not 0")
        if self.op == SfuOp.QUANTIZE:
            _check_int("unit", self.unit, 1, MAX_ROW)
            if self.n % self.unit:
                raise FormatError(f"SFU QUANTIZE unit={self.unit} must divide the row length n={self.n}")
        if self.causal and self.op != SfuOp.SOFTMAX:
            raise FormatError(f"SFU causal masking belongs to SOFTMAX, not {self.op.name}")
        if not isinstance(self.row_exponent, bool):
            raise FormatError(f"SFU command row_exponent must be a bool, not {self.row_exponent!r}")
        if self.row_exponent and self.op != SfuOp.QUANTIZE:
            raise FormatError(f"SFU row_exponent belongs to QUANTIZE, not {self.op.name}")

    @property
    def code_max(self) -> int:
        """The largest code magnitude QSTATIC / QUANTIZE write: ``qmax`` or ``2**(bits-1) - 1``."""
        return self.qmax or (1 << (self.bits - 1)) - 1

    def words(self, lanes: int) -> int:
        """VMEM words per row."""
        return row_words(self.n, lanes)

    def scale_units(self) -> int:
        """QUANTIZE: scale units (mantissas) per row."""
        return self.n // self.unit if self.op == SfuOp.QUANTIZE else 0

    def ranges(self, lanes: int) -> dict[str, tuple[int, int]]:
        """Half-open VMEM word ranges ``{name: (start, end)}`` the command reads and writes."""
        w = self.words(lanes)
        out = {"a": (self.a, self.a + self.rows * w), "dst": (self.dst, self.dst + self.rows * w)}
        if self.op in NEEDS_B:
            span = (self.rows - 1) * self.b_step + w
            out["b"] = (self.b, self.b + span)
        if self.op == SfuOp.QUANTIZE:
            out["scale_dst"] = (self.scale_dst, self.scale_dst + row_words(self.rows * self.scale_units(), lanes))
        if self.row_exponent:
            out["exp_dst"] = (self.exp_dst, self.exp_dst + row_words(self.rows, lanes))
        if self.op == SfuOp.REQUANT_ROW:
            out["scale_src"] = (self.scale_src, self.scale_src + row_words(self.rows, lanes))
            out["exp_src"] = (self.exp_src, self.exp_src + row_words(self.rows, lanes))
        return out

    def check(self, lanes: int, depth: int) -> None:
        """Refuse a command this SFU (``lanes`` wide, ``depth`` VMEM words) cannot run, naming
        the field, the value and the limit.

        Raises
        ------
        ConfigError
            A range beyond the VMEM, an overlap the hardware cannot honour, or a QUANTIZE unit
            that is neither a whole number of words nor the whole row.
        """
        rng = self.ranges(lanes)
        for name, (lo, hi) in rng.items():
            if hi > depth:
                raise ConfigError(f"SFU {self.op.name} {name}={lo}: {hi - lo} words reach word {hi - 1}, "
                                  f"beyond sfu.vmem_words={depth}")
        d_lo, d_hi = rng["dst"]
        for name, (lo, hi) in rng.items():
            if name == "dst" or hi <= d_lo or lo >= d_hi:
                continue
            if not (name == "a" and lo == d_lo):
                raise ConfigError(f"SFU {self.op.name}: dst words {d_lo}..{d_hi - 1} overlap {name} words "
                                  f"{lo}..{hi - 1} (only dst == a, in place, is allowed)")
        for out in ("scale_dst", "exp_dst"):
            if out not in rng:
                continue
            s_lo, s_hi = rng[out]
            for name in ("a", "dst", "scale_dst"):
                lo, hi = rng[name]
                if name != out and s_lo < hi and lo < s_hi:
                    raise ConfigError(f"SFU QUANTIZE: {out} words {s_lo}..{s_hi - 1} overlap {name}")
        if self.op == SfuOp.QUANTIZE and self.unit % lanes and self.unit != self.n:
            raise ConfigError(f"SFU QUANTIZE unit={self.unit} must be a multiple of sfu.lanes={lanes} "
                              f"(a beat belongs to one scale unit) or the row length n={self.n}")
        if self.op == SfuOp.ROPE and lanes % 2:
            raise ConfigError(f"SFU ROPE needs an even sfu.lanes, not {lanes}")
        if self.op == SfuOp.ROPE and self.n % 2:
            raise ConfigError(f"SFU ROPE needs an even row length, not n={self.n}")
