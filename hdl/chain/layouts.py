"""Amaranth ``data`` layouts of the DSP chain's streams, buffer words and output bank.

Built from the one :class:`~sparsa.config.AcceleratorConfig`; the bits equal what
:mod:`sparsa.chain_layout` packs in Python (lane 0 at the least significant bits, like
:class:`amaranth.lib.data.ArrayLayout`).

========================  ================================================================
layout                    bits
========================  ================================================================
weight lane               one slice's weight: ``value`` (signed ``weight_bits``) at the
                          LSBs, N:M ``index`` above; ``chain.packing: both``: ``value1``
                          (the second output column's weight) above the index
weight beat               ``cols`` chains x ``rows`` slices of weight lanes
activation word           one slice lane of the buffer: ``P`` tokens x ``group_size``
                          signed activations
activation beat           ``rows`` activation words (one LOAD_A beat)
word bus                  ``n`` activation words as opaque bit vectors (inside the chain)
output beat               ``P * cols`` signed accumulators, lane ``p * cols + c``
bank row                  ``chain.max_segments`` output beats (one slot per tap)
tap results               one chain's taps: ``chain.max_segments`` x ``P`` accumulators
========================  ================================================================

``P`` is :attr:`~sparsa.config.AcceleratorConfig.token_lanes` (2 with ``chain.packing``).
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from sparsa.chain_layout import weight_values
from sparsa.config import AcceleratorConfig
from sparsa.errors import UnsupportedError
from sparsa.hdl.layouts import check_config

__all__ = [
    "PACKED_SUM_BITS",
    "check_chain_config",
    "chain_weight_lane_layout",
    "chain_weight_beat_layout",
    "chain_act_word_layout",
    "chain_act_beat_layout",
    "chain_word_bus_layout",
    "chain_output_beat_layout",
    "chain_bank_row_layout",
    "chain_token_layout",
    "chain_taps_layout",
    "chain_tag_layout",
]

#: Width of the packed group sum (the DSP48E2's P register).
PACKED_SUM_BITS = 48


def check_chain_config(component: object, config: object) -> AcceleratorConfig:
    """Check the ``config`` argument of a chain component's constructor.

    Parameters
    ----------
    component : object
        The component being constructed (its class name goes into the message; a refused
        :class:`~amaranth.hdl.Elaboratable` is marked so that it does not warn as unused).
    config : object
        The argument to check.

    Returns
    -------
    AcceleratorConfig
        ``config``.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`AcceleratorConfig`.
    sparsa.errors.UnsupportedError
        ``datapath.kind`` is not ``'dsp_chain'``, or the number formats are not implemented by
        the chain (:meth:`~sparsa.config.AcceleratorConfig.require_supported`).
    """
    try:
        check_config(config)
        if config.datapath.kind != "dsp_chain":
            raise UnsupportedError(f"{type(component).__name__} needs datapath.kind='dsp_chain', "
                                   f"not {config.datapath.kind!r}")
        config.require_supported()
    except (TypeError, UnsupportedError):
        component._MustUse__silence = True     # no UnusedElaboratable warning for a refused design
        raise
    return config


def chain_weight_lane_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One slice's weight: ``value`` (signed) at the LSBs, N:M ``index`` above (and ``value1``
    above that when the lane holds two weights, :func:`~sparsa.chain_layout.weight_values`)."""
    check_config(config)
    fields = {"value": signed(config.weight_bits), "index": unsigned(config.index_bits)}
    if weight_values(config) == 2:
        fields["value1"] = signed(config.weight_bits)
    return data.StructLayout(fields)


def chain_weight_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """``cols`` chains x ``rows`` slices of weight lanes (lane ``c * rows + i``)."""
    return data.ArrayLayout(data.ArrayLayout(chain_weight_lane_layout(config), config.rows), config.cols)


def chain_act_word_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One slice lane of an activation-buffer word: ``P`` tokens x ``group_size`` activations."""
    check_config(config)
    return data.ArrayLayout(data.ArrayLayout(signed(config.activation_bits), config.group_size),
                            config.token_lanes)


def chain_act_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One LOAD_A beat: ``rows`` slice lanes."""
    return data.ArrayLayout(chain_act_word_layout(config), config.rows)


def chain_word_bus_layout(config: AcceleratorConfig, words: int) -> data.ArrayLayout:
    """``words`` activation words as opaque bit vectors (one per slice), for the buses inside the chain.

    Same bits as ``ArrayLayout(chain_act_word_layout(config), words)``; a component views a word
    with :func:`chain_act_word_layout` where it picks activations (the slice's MUX).  Keeping the
    buses opaque keeps the generated Verilog small: every field of a structured port is one
    more named wire in every module it passes through (``P * group_size`` per word).
    """
    return data.ArrayLayout(unsigned(Shape.cast(chain_act_word_layout(config)).width), words)


def chain_output_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output beat: ``P * cols`` accumulators, lane ``p * cols + c``."""
    check_config(config)
    return data.ArrayLayout(signed(config.accumulator_bits), config.token_lanes * config.cols)


def chain_bank_row_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output-bank row: ``chain.max_segments`` slots (one per tap) of an output beat."""
    return data.ArrayLayout(chain_output_beat_layout(config), config.chain.max_segments)


def chain_token_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One accumulator per token lane: a reduction node's output, the link between nodes."""
    check_config(config)
    return data.ArrayLayout(signed(config.accumulator_bits), config.token_lanes)


def chain_taps_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One chain's tap results: ``chain.max_segments`` taps of :func:`chain_token_layout`."""
    return data.ArrayLayout(chain_token_layout(config), config.chain.max_segments)


def chain_tag_layout() -> data.StructLayout:
    """The tag travelling with a weight beat: ``valid``, first / last k-tile of its output tile."""
    return data.StructLayout({"valid": 1, "first": 1, "last": 1})
