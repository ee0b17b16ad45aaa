"""Amaranth ``data`` layouts of the instruction word and the three stream beats.

Every layout is built from the one :class:`~sparsa.config.AcceleratorConfig` and, for the
instruction word, from :data:`sparsa.isa.FIELDS`, so the HDL never re-defines a bit position.
The bits equal what :mod:`sparsa.layout` packs in Python (lane 0 at the least significant
bits, like :class:`amaranth.lib.data.ArrayLayout`); ``tests/hdl/test_layouts.py`` checks it.

=====================  ==============================================================
layout                 bits
=====================  ==============================================================
instruction            ``opcode[3:0] accumulate[4] count[20:5] reserved[31:21]``
weight lane            ``value`` (signed ``weight_bits``) at the LSBs, ``index`` above
weight beat            ``cols`` weight lanes
activation lane        ``group_size`` signed activations (one N:M group)
activation beat        ``rows`` activation lanes
output beat            ``cols`` signed accumulators
=====================  ==============================================================
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from sparsa.config import AcceleratorConfig
from sparsa.isa import FIELDS

__all__ = [
    "instruction_layout",
    "weight_lane_layout",
    "weight_beat_layout",
    "activation_lane_layout",
    "activation_beat_layout",
    "output_beat_layout",
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
    """One PE's weight: ``value`` (signed ``weight_bits``) at the LSBs, N:M ``index`` above."""
    check_config(config)
    return data.StructLayout({"value": signed(config.weight_bits), "index": unsigned(config.index_bits)})


def weight_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One weight-stream beat: the weights of one PE row, ``cols`` lanes."""
    return data.ArrayLayout(weight_lane_layout(config), config.cols)


def activation_lane_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One activation lane: the ``group_size`` signed activations a PE row's MUXes choose from."""
    check_config(config)
    return data.ArrayLayout(signed(config.activation_bits), config.group_size)


def activation_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One activation-stream beat: ``rows`` activation lanes (lane ``r`` feeds PE row ``r``)."""
    return data.ArrayLayout(activation_lane_layout(config), config.rows)


def output_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output-stream beat (and one accumulator row): ``cols`` signed accumulators."""
    check_config(config)
    return data.ArrayLayout(signed(config.accumulator_bits), config.cols)
