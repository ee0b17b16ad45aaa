"""Amaranth ``data`` layouts of the instruction word and the three stream beats.

Every layout is built from the one :class:`~sparsa.config.AcceleratorConfig` and, for the
instruction word, from :data:`sparsa.isa.FIELDS`, so the HDL never re-defines a bit position.
The bits equal what :mod:`sparsa.layout` packs in Python (lane 0 at the least significant
bits, like :class:`amaranth.lib.data.ArrayLayout`); ``tests/hdl/test_layouts.py`` checks it.

=====================  ==============================================================
layout                 contents
=====================  ==============================================================
instruction            the fields of :data:`sparsa.isa.FIELDS`, LSB first
weight beat            ``cols`` weight lanes (:func:`weight_lane_layout`; OVP-4 weights: pairs)
activation beat        ``rows`` activation lanes of ``group_size`` activations
output beat            ``cols`` signed accumulators
=====================  ==============================================================

The bit positions are not restated here: the instruction word's table in ``docs/isa.md`` and
the beats' tables in ``docs/streams.md`` are generated from :data:`sparsa.isa.FIELDS` and from
these functions by ``docs/generate.py`` (``make docs``).

Inside the array (after the OVP border decoders) the PEs use :func:`pe_weight_layout` and
:func:`pe_lane_layout`; for int8/int4 operands they equal the stream layouts above.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from sparsa.config import AcceleratorConfig
from sparsa.isa import FIELDS
from sparsa.layout import DECODED_EXP_BITS, DECODED_INT_BITS

__all__ = [
    "instruction_layout",
    "weight_lane_layout",
    "weight_beat_layout",
    "activation_lane_layout",
    "activation_beat_layout",
    "output_beat_layout",
    "decoded_layout",
    "pe_weight_layout",
    "pe_lane_layout",
    "check_config",
]


def check_config(config: object) -> AcceleratorConfig:
    """Return ``config`` if it is an :class:`AcceleratorConfig`, else raise :exc:`TypeError`.

    Every HDL constructor calls this first so a wrong argument fails with a clear message.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    return config


def instruction_layout() -> data.StructLayout:
    """The 32-bit instruction word, fields LSB first, built from :data:`sparsa.isa.FIELDS`."""
    return data.StructLayout({field.name: unsigned(field.width) for field in FIELDS})


def weight_lane_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One column's lane of a weight beat.

    int8/int4: one PE's weight, ``value`` (signed ``weight_bits``) at the LSBs, N:M ``index``
    above.  OVP-4 weights: ``pair`` (the OVP-4 byte of PE rows ``2b`` (low nibble) and
    ``2b+1``), then ``index0`` and ``index1`` (their N:M indices).
    """
    check_config(config)
    if config.weight_is_ovp:
        ib = unsigned(config.index_bits)
        return data.StructLayout({"pair": unsigned(8), "index0": ib, "index1": ib})
    return data.StructLayout({"value": signed(config.weight_bits), "index": unsigned(config.index_bits)})


def decoded_layout() -> data.StructLayout:
    """A decoded OVP-4 element: ``integer`` (signed) at the LSBs, ``exp`` above; value ``integer << exp``."""
    return data.StructLayout({"integer": signed(DECODED_INT_BITS), "exp": unsigned(DECODED_EXP_BITS)})


def pe_weight_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One PE's stationary weight register.

    int8/int4: :func:`weight_lane_layout` (``value``, ``index``).  OVP-4: the decoded
    ``integer`` and ``exp`` and the N:M ``index``.
    """
    check_config(config)
    if config.weight_is_ovp:
        return data.StructLayout({"integer": signed(DECODED_INT_BITS), "exp": unsigned(DECODED_EXP_BITS),
                                  "index": unsigned(config.index_bits)})
    return weight_lane_layout(config)


def pe_lane_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """The activation lane inside the array: :func:`activation_lane_layout`, or decoded OVP-4 elements."""
    check_config(config)
    if config.activation_is_ovp:
        return data.ArrayLayout(decoded_layout(), config.group_size)
    return activation_lane_layout(config)


def weight_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One weight-stream beat: the weights of one PE row, ``cols`` lanes."""
    return data.ArrayLayout(weight_lane_layout(config), config.cols)


def activation_lane_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One activation lane: the ``group_size`` signed activations a PE row's MUXes choose from.

    With OVP-4 activations the elements are unsigned 4-bit codes (aligned pairs = OVP-4 bytes).
    """
    check_config(config)
    if config.activation_is_ovp:
        return data.ArrayLayout(unsigned(config.activation_bits), config.group_size)
    return data.ArrayLayout(signed(config.activation_bits), config.group_size)


def activation_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One activation-stream beat: ``rows`` activation lanes (lane ``r`` feeds PE row ``r``)."""
    return data.ArrayLayout(activation_lane_layout(config), config.rows)


def output_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output-stream beat (and one accumulator row): ``cols`` signed accumulators."""
    check_config(config)
    return data.ArrayLayout(signed(config.accumulator_bits), config.cols)
