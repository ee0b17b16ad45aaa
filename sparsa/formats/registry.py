"""The one registry of operand number formats: name -> :class:`FormatInfo`.

Every other list of formats is derived from :data:`FORMATS`: the config's ``TYPE_BITS`` /
``TYPE_MAX_MAGNITUDE`` / ``OVP_TYPES`` / ``OperandType``, the compiler's quantizer formats,
the workload IR's ``NumberFormat.bits``, the compression schemes' weight, activation and QAT
formats.  The numbers come from the format definitions (:mod:`sparsa.formats.intq`,
:mod:`sparsa.formats.ovp`), never typed twice: an ``intN`` value lies in the full
two's-complement range ``[-2^(N-1), 2^(N-1) - 1]`` (what the hardware's multipliers accept),
an OVP value in ``[-outlier_max, outlier_max]`` of its codec (``ovp4`` is OVP-4 with int4
normals, :data:`sparsa.formats.ovp.OVP4_INT4`, largest outlier 96; ``ovp8``: 31744).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sparsa.errors import FormatError

from .ovp import OVP4_INT4, OVP8, OVPFormat

__all__ = ["FormatKind", "FormatInfo", "FORMATS", "QUANTIZED", "get_info"]

FormatKind = Literal["int", "ovp", "float"]


@dataclass(frozen=True)
class FormatInfo:
    """One operand format.

    Attributes
    ----------
    name : str
        The spelling in configs, workload files and CLI options (``int8``, ``ovp4``, ``fp16``...).
    kind : {"int", "ovp", "float"}
        Symmetric two's-complement integer codes, outlier-victim pairs, or IEEE floats.
    bits : int
        Storage bits per element.
    codec : OVPFormat or None
        The OVP codec of an ``ovp`` format (the one the hardware decodes).
    """

    name: str
    kind: FormatKind
    bits: int
    codec: "OVPFormat | None" = None

    def __post_init__(self) -> None:
        if (self.kind == "ovp") != (self.codec is not None):
            raise FormatError(f"format {self.name!r}: an ovp format needs its codec, others none")
        if self.codec is not None and self.codec.bits != self.bits:
            raise FormatError(f"format {self.name!r}: {self.bits} bits, but its codec {self.codec.name} has "
                              f"{self.codec.bits}")

    @property
    def quantized(self) -> bool:
        """Integer codes times a scale (``int`` and ``ovp``), what the accelerator multiplies."""
        return self.kind != "float"

    @property
    def value_range(self) -> "tuple[int, int] | None":
        """Smallest and largest value in integer units of the scale (None for floats).

        ``intN``: ``(-2^(N-1), 2^(N-1) - 1)``; OVP: ``(-outlier_max, outlier_max)``.
        """
        if self.kind == "int":
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        if self.codec is not None:
            return -self.codec.outlier_max, self.codec.outlier_max
        return None

    @property
    def max_magnitude(self) -> "int | None":
        """Largest ``|value|`` in integer units (``2^(N-1)`` for ``intN``, the largest OVP outlier);
        worst-case products and accumulator widths use it.  None for floats."""
        rng = self.value_range
        return None if rng is None else max(-rng[0], rng[1])

    @property
    def elements_per_byte(self) -> float:
        """Elements one byte holds (2 for 4-bit formats; OVP-4 packs one pair per byte)."""
        return 8 / self.bits

    @property
    def pair_bytes(self) -> "int | None":
        """Bytes of one OVP pair (the unit OVP encodes; None for other kinds)."""
        return None if self.codec is None else self.codec.pair_bytes


#: Every operand format, by name: floats first, then the quantized formats in table order.
FORMATS: dict[str, FormatInfo] = {f.name: f for f in (
    FormatInfo("fp32", "float", 32),
    FormatInfo("fp16", "float", 16),
    FormatInfo("int8", "int", 8),
    FormatInfo("int4", "int", 4),
    FormatInfo("ovp4", "ovp", 4, OVP4_INT4),
    FormatInfo("ovp8", "ovp", 8, OVP8),
)}

#: Names of the quantized formats (integer codes with a scale), in registry order.
QUANTIZED: tuple[str, ...] = tuple(f.name for f in FORMATS.values() if f.quantized)


def get_info(name: str) -> FormatInfo:
    """The :class:`FormatInfo` of ``name`` (FormatError naming the known formats otherwise)."""
    if isinstance(name, str) and name in FORMATS:
        return FORMATS[name]
    raise FormatError(f"unknown number format {name!r}; expected one of {', '.join(FORMATS)}")
