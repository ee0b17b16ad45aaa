"""The sparse processing element: one stationary N:M weight, a sparse MUX and a MAC.

::

               lane_in (group_size activations)
                  |
        +---------+---------------------------+
        |   sparse MUX: a = lane_in[index]    |---> lane_out (registered, to the right)
        |   psum_out <= psum_in + value * a   |
        +---------+---------------------------+
                  |
               psum_out (registered, down)

The weight register (``value`` + ``index``) is written while ``load`` is high; it does not
depend on ``en``.  Every other register advances only while ``en`` is high, so a stall of the
activation stream freezes the whole array.  The accumulation wraps modulo
``2**accumulator_bits`` (two's complement), like the NumPy reference.

With OVP-4 weights the register holds the weight already decoded by the array's top-border
decoder, ``(integer, exp, index)``, and the MAC is a small multiply and a shift::

    psum_out <= psum_in + ((integer_w * a) << exp_w)                       (int8/int4 activations)
    psum_out <= psum_in + ((integer_w * a.integer) << (exp_w + a.exp))    (OVP-4 activations)

where ``a = lane_in[index]`` and OVP-4 activation lanes arrive decoded from the left border.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.layouts import check_config, pe_lane_layout, pe_weight_layout

__all__ = ["SparsePE", "sparse_mac"]


class SparsePE(wiring.Component):
    """One weight-stationary PE with a ``group_size``-to-1 sparse activation MUX.

    Parameters
    ----------
    config : AcceleratorConfig
        Widths: ``weight_bits``, ``index_bits``, ``activation_bits``, ``group_size``,
        ``accumulator_bits``.
    forward : bool
        Whether the PE registers its activation lane and passes it on (``lane_out``).  The
        last column of an array has nobody to pass it to, so it omits the register.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline registers (``lane_out``, ``psum_out``).
    load : In(1)
        Write ``weight_in`` into the stationary weight register.
    weight_in : In(PE weight layout)
        ``value`` (signed ``weight_bits``) and N:M ``index``; OVP-4 weights: decoded
        ``integer``, ``exp`` and ``index`` (:func:`~sparsa.hdl.layouts.pe_weight_layout`).
    lane_in : In(PE lane layout)
        ``group_size`` signed activations: the whole group the weight's index points into
        (OVP-4: decoded ``(integer, exp)`` elements, :func:`~sparsa.hdl.layouts.pe_lane_layout`).
    psum_in : In(signed(accumulator_bits))
        Partial sum from the PE above (0 for the top row).
    lane_out : Out(activation lane layout)
        ``lane_in`` delayed one enabled cycle (only when ``forward``).
    psum_out : Out(signed(accumulator_bits))
        ``psum_in + value * lane_in[index]``, registered, wrapping.
    """

    def __init__(self, config: AcceleratorConfig, *, forward: bool = True) -> None:
        check_config(config)
        if not isinstance(forward, bool):
            raise TypeError(f"forward must be a bool, not {forward!r}")
        self._config = config
        self._forward = forward
        members = {
            "en": In(1),
            "load": In(1),
            "weight_in": In(pe_weight_layout(config)),
            "lane_in": In(pe_lane_layout(config)),
            "psum_in": In(signed(config.accumulator_bits)),
            "psum_out": Out(signed(config.accumulator_bits)),
        }
        if forward:
            members["lane_out"] = Out(pe_lane_layout(config))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the PE was built for."""
        return self._config

    @property
    def forward(self) -> bool:
        """Whether the PE forwards its activation lane (has ``lane_out``)."""
        return self._forward

    def elaborate(self, platform) -> Module:
        m = Module()
        sparse_mac(m, self._config, en=self.en, load=self.load, weight_in=self.weight_in,
                   lane_in=self.lane_in, psum_in=self.psum_in, psum_out=self.psum_out,
                   lane_out=self.lane_out if self._forward else None)
        return m


def sparse_mac(m: Module, config: AcceleratorConfig, *, en, load, weight_in, lane_in, psum_in, psum_out,
               lane_out=None, prefix: str = "") -> None:
    """Add the logic of one PE to module ``m`` (shared by :class:`SparsePE` and the flat array).

    Parameters
    ----------
    m : Module
        Module to add the weight register, the sparse MUX and the MAC to.
    config : AcceleratorConfig
        Widths.
    en, load, weight_in, lane_in, psum_in : value-like
        Inputs, as the ports of :class:`SparsePE`.
    psum_out : Signal(signed(accumulator_bits))
        Register driven with ``psum_in + value * lane_in[index]`` while ``en``.
    lane_out : Signal(activation lane layout), optional
        Register driven with ``lane_in`` while ``en`` (omitted when ``None``).
    prefix : str
        Prefix of the internal weight register's name.
    """
    weight = Signal(pe_weight_layout(config), name=f"{prefix}weight")
    with m.If(load):
        m.d.sync += weight.eq(weight_in)
    # The sparse MUX picks the one activation of the group this weight belongs to; the
    # product is signed(weight_bits + activation_bits).  No intermediate signals: they only
    # add work for the simulator; synthesis sees the same netlist.
    if not config.weight_is_ovp:
        product = weight.value * lane_in[weight.index]
    elif not config.activation_is_ovp:
        # OVP-4 weight x int activation: 4-bit x activation_bits multiply, then shift by exp_w.
        product = (weight.integer * lane_in[weight.index]) << weight.exp
    else:
        # OVP-4 x OVP-4: 4-bit x 4-bit multiply, shifted by the sum of the exponents.
        act = lane_in[weight.index]
        product = (weight.integer * act.integer) << (weight.exp + act.exp)
    with m.If(en):
        # Truncating assignment = wrap modulo 2**accumulator_bits.
        m.d.sync += psum_out.eq(psum_in + product)
        if lane_out is not None:
            m.d.sync += lane_out.eq(lane_in)
