"""OVP-4 border decoders: a pair byte -> two (exponent, integer) elements.

The decoder is generated from the NumPy reference tables
(:func:`sparsa.formats.ovp.exp_int_tables` for ``ovp4-int4``), so it mirrors
:func:`sparsa.formats.ovp.decode_to_exp_int` by construction; ``tests/hdl/test_ovp.py``
checks all 256 bytes.  An element is an *outlier* when its partner's code is the victim code
``1000``, else *normal* (the victim code itself decodes to ``(0, 0)``)::

    pair[3:0] (even element) --+--> table(code = pair[3:0], outlier = pair[7:4] == 1000) --> even
    pair[7:4] (odd element)  --+--> table(code = pair[7:4], outlier = pair[3:0] == 1000) --> odd

Like the reference tables, the reserved codes get their natural abfloat value (no trap).
The accelerator puts these decoders only on the array's borders: one per column on the weight
load path (top border) and ``group_size / 2`` per PE row on the activation path (left border,
after the input skew).  The PEs hold / pass decoded ``(integer, exp)`` values.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.layouts import decoded_layout

__all__ = ["OVP4PairDecoder", "decode_element", "decode_pair", "VICTIM_CODE"]

#: OVP-4 victim identifier (the partner of an outlier).
VICTIM_CODE = 0b1000


def _tables():
    from sparsa.formats import ovp

    t = ovp.exp_int_tables(ovp.OVP4_INT4)
    return ([(int(e), int(i)) for e, i in zip(t.normal_exp, t.normal_int)],
            [(int(e), int(i)) for e, i in zip(t.outlier_exp, t.outlier_int)])


def decode_element(m: Module, code, partner, out) -> None:
    """Drive ``out`` (a :func:`decoded_layout` signal) with the decoded ``code`` given its ``partner``.

    One 16-way case on the code; each case selects the normal or the outlier table entry
    with one 2:1 mux on ``partner == VICTIM_CODE``.
    """
    normal, outlier = _tables()
    layout = decoded_layout()
    is_outlier = partner == VICTIM_CODE
    with m.Switch(code):
        for c in range(16):
            n_val = layout.const({"integer": normal[c][1], "exp": normal[c][0]}).as_value()
            o_val = layout.const({"integer": outlier[c][1], "exp": outlier[c][0]}).as_value()
            with m.Case(c):
                m.d.comb += out.as_value().eq(Mux(is_outlier, o_val, n_val))


def decode_pair(m: Module, pair, even, odd) -> None:
    """Drive ``even`` / ``odd`` (:func:`decoded_layout` signals) with the decoded 8-bit ``pair``,
    in the module ``m`` itself.

    The array inlines its border decoders this way instead of instantiating
    :class:`OVP4PairDecoder`: a module without a reset whose ``always @*`` blocks read only
    its inputs would rely on time-0 evaluation in SystemVerilog simulators
    (:func:`sparsa.hdl.export.reset_triggered`).
    """
    lo, hi = pair[0:4], pair[4:8]
    decode_element(m, lo, hi, even)
    decode_element(m, hi, lo, odd)


class OVP4PairDecoder(wiring.Component):
    """Combinational OVP-4 pair decoder (int4 normals, E2M1 bias-2 outliers).

    Attributes
    ----------
    pair : In(8)
        The OVP-4 byte: even element in bits 3:0, odd element in bits 7:4.
    even, odd : Out(decoded layout)
        ``(integer, exp)`` of each element; value ``integer << exp``.
    """

    def __init__(self) -> None:
        super().__init__({"pair": In(8), "even": Out(decoded_layout()), "odd": Out(decoded_layout())})

    def elaborate(self, platform) -> Module:
        m = Module()
        decode_pair(m, self.pair, self.even, self.odd)
        return m
