"""One MAC slice of a DSP chain: the sparse MUX, the (packed) multiplier and the cascade adder.

::

    weight (value, index) --------------------> wval    <= value
    word (P tokens x group_size) --MUX[index]--> operand <= a0            (P = 1)
                                                operand <= (a1 << 18) + a0 (P = 2, packed)
                                                prod    <= wval * operand
    cascade_in ---------------------------------> cascade_out <= cascade_in + prod

With ``chain.packing: both`` the slice has a ``pack_outputs`` input (latched by LOAD_A,
constant during a COMPUTE): when set, the wide operand is the weight pair
``(value1 << 18) + value`` and the narrow one token 0's activation (two output columns
share one activation, docs/chain.md#packing-for-gemv-chainpacking-both); the MUX in front of the DSP's A/B
registers swaps the roles, the product and the reduction node's split are the same.

Three register stages, all advancing only while ``en``: the operand registers (the DSP48E2's
A/B input registers: the MUX output and the weight value), the product (MREG) and the
cascade sum (PREG).  The slice sees its weight and its activation word in the same cycle
(the chain skews them, :class:`~sparsa.hdl.chain.chain.SparseChain`); their product reaches
``cascade_out`` :data:`SLICE_LATENCY` enabled cycles later.  The first slice of a DSP group
has no ``cascade_in`` (``cascade_out <= prod``).

With ``chain.packing`` the multiplier is one wide (27 x 18 on a DSP48E2) product
``w * ((a1 << 18) + a0)`` of the weight and two tokens' activations, and ``cascade_out`` is
the :data:`~sparsa.hdl.chain.layouts.PACKED_SUM_BITS`-bit packed sum (the DSP group's
reduction node splits it, :class:`~sparsa.hdl.chain.group.DspGroup`); without packing it is
a signed ``accumulator_bits`` sum.  Sums wrap (two's complement).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import PACK_SHIFT, weight_values
from sparsa.config import AcceleratorConfig
from sparsa.hdl.chain.layouts import (PACKED_SUM_BITS, chain_act_word_layout, chain_weight_lane_layout,
                                      check_chain_config)

__all__ = ["ChainSlice", "chain_slice", "SLICE_LATENCY", "cascade_shape", "operand_shape", "narrow_shape"]

#: Enabled cycles from a slice's inputs (weight, activation word) to its ``cascade_out``.
SLICE_LATENCY = 3


def cascade_shape(config: AcceleratorConfig) -> Shape:
    """Shape of a product and of the in-group cascade: packed ``signed(48)``, else ``signed(accumulator_bits)``."""
    return signed(PACKED_SUM_BITS if config.token_lanes == 2 else config.accumulator_bits)


def operand_shape(config: AcceleratorConfig) -> Shape:
    """Shape of the wide operand register (DSP port A): packed ``signed(18 + bits + 1)`` with
    ``bits`` the packed operand's width (the wider of both with ``packing: both``), else
    ``signed(activation_bits)``."""
    if config.token_lanes == 2:
        return signed(PACK_SHIFT + _packed_bits(config) + 1)
    return signed(config.activation_bits)


def narrow_shape(config: AcceleratorConfig) -> Shape:
    """Shape of the narrow operand register (DSP port B): the weight, or with ``packing: both``
    the wider of weight and activation."""
    return signed(_packed_bits(config) if weight_values(config) == 2 else config.weight_bits)


def _packed_bits(config: AcceleratorConfig) -> int:
    if weight_values(config) == 2:
        return max(config.weight_bits, config.activation_bits)
    return config.activation_bits


class ChainSlice(wiring.Component):
    """A sparse MUX, one (packed) multiplier and one cascade adder, pipelined like a DSP48E2.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.  Widths: ``weight_bits``, ``index_bits``,
        ``activation_bits``, ``group_size``, ``accumulator_bits``; ``chain.packing``.
    cascade : bool
        Whether the slice adds a ``cascade_in`` (every slice of a DSP group but the first).

    Attributes
    ----------
    en : In(1)
        Advance the three register stages.
    weight : In(chain weight lane layout)
        ``value`` (signed ``weight_bits``) and N:M ``index``.
    word : In(chain activation word layout)
        ``P`` tokens x ``group_size`` signed activations; the MUX picks ``word[p][index]``.
    cascade_in : In(cascade shape)
        The previous slice's ``cascade_out`` (only when ``cascade``).
    cascade_out : Out(cascade shape)
        ``cascade_in + weight.value * operand``, registered, wrapping: the product of the
        inputs seen :data:`SLICE_LATENCY` enabled cycles earlier (``cascade_in`` one earlier).
    pack_outputs : In(1)
        Only with ``chain.packing: both``: multiply the weight pair by token 0's activation.
    """

    def __init__(self, config: AcceleratorConfig, *, cascade: bool) -> None:
        check_chain_config(self, config)
        if not isinstance(cascade, bool):
            self._MustUse__silence = True
            raise TypeError(f"cascade must be a bool, not {cascade!r}")
        self._config = config
        self._cascade = cascade
        members = {
            "en": In(1),
            "weight": In(chain_weight_lane_layout(config)),
            "word": In(chain_act_word_layout(config)),
            "cascade_out": Out(cascade_shape(config)),
        }
        if weight_values(config) == 2:
            members["pack_outputs"] = In(1)
        if cascade:
            members["cascade_in"] = In(cascade_shape(config))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the slice was built for."""
        return self._config

    @property
    def cascade(self) -> bool:
        """Whether the slice has a ``cascade_in``."""
        return self._cascade

    def elaborate(self, platform) -> Module:
        m = Module()
        chain_slice(m, self._config, en=self.en, weight=self.weight, word=self.word,
                    cascade_in=self.cascade_in if self._cascade else None, cascade_out=self.cascade_out,
                    pack_outputs=self.pack_outputs if weight_values(self._config) == 2 else None)
        return m


def chain_slice(m: Module, config: AcceleratorConfig, *, en, weight, word, cascade_in, cascade_out,
                prefix: str = "", pack_outputs=None) -> None:
    """Add the logic of one slice to module ``m`` (shared by :class:`ChainSlice` and the DSP group).

    Parameters
    ----------
    m : Module
        Module to add the operand, product and cascade registers to.
    config : AcceleratorConfig
        Widths.
    en, weight, word : value-like
        Inputs, as the ports of :class:`ChainSlice` (``word`` may be the activation word's plain bits).
    cascade_in : value-like or None
        The previous slice's sum; ``None`` for the first slice of a group.
    cascade_out : Signal(cascade shape)
        Register driven with ``cascade_in + prod`` (or ``prod``) while ``en``.
    prefix : str
        Prefix of the internal registers' names (``opnd``, ``wval``, ``prod``).
    pack_outputs : value-like or None
        ``chain.packing: both`` only: select output packing (the weight pair on the wide port).
    """
    tokens = config.token_lanes
    word = data.View(chain_act_word_layout(config), word)
    picked = [word[p][weight.index] for p in range(tokens)]
    # Operand register (the DSP's A/B input registers): MUX output (packed: the
    # 27-bit (a1 << 18) + a0) and the weight value, one stage before the multiply.
    operand = Signal(operand_shape(config), name=f"{prefix}opnd")
    value = (picked[1] << PACK_SHIFT) + picked[0] if tokens == 2 else picked[0]
    narrow = weight.value
    if pack_outputs is not None:
        # Output packing: the weight pair on the wide port, token 0's activation on the narrow one.
        value = Mux(pack_outputs, (weight.value1 << PACK_SHIFT) + weight.value, value)
        narrow = Mux(pack_outputs, picked[0], weight.value)
    wval = Signal(narrow_shape(config), name=f"{prefix}wval")
    prod = Signal(cascade_shape(config), name=f"{prefix}prod")
    with m.If(en):
        m.d.sync += [
            operand.eq(value),
            wval.eq(narrow),
            prod.eq(wval * operand),
            cascade_out.eq(prod if cascade_in is None else cascade_in + prod),
        ]
