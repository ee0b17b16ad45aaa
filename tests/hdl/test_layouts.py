"""The Amaranth layouts produce exactly the bits of the Python packers in sparsa.layout / sparsa.isa."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Const

from sparsa.hdl.layouts import (activation_beat_layout, instruction_layout, output_beat_layout,
                                weight_beat_layout)
from sparsa.isa import FIELDS, INSTRUCTION_BITS, Instruction, Opcode, encode
from sparsa.layout import pack_activation_beat, pack_lanes, pack_weight_beat, unpack_output_beat

from ..conftest import preset

PRESETS = ["systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4", "systolic-8x8-2of4"]
OVP_PRESETS = ["systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"]


def _bits(const) -> int:
    return Const.cast(const).value & ((1 << len(Const.cast(const))) - 1)


def test_instruction_layout_from_isa_fields():
    layout = instruction_layout()
    assert layout.size == INSTRUCTION_BITS
    assert [(name, field.offset, field.width) for name, field in layout] == \
        [(f.name, sum(g.width for g in FIELDS[:i]), f.width) for i, f in enumerate(FIELDS)]
    for ins in (Instruction(Opcode.COMPUTE, 1234, True), Instruction(Opcode.DRAIN, 65535), Instruction(Opcode.HALT)):
        const = layout.const({"opcode": int(ins.op), "accumulate": int(ins.accumulate), "count": ins.count})
        assert _bits(const) == encode(ins)


@pytest.mark.parametrize("name", PRESETS)
def test_weight_beat_bits(name):
    cfg = preset(name)
    layout = weight_beat_layout(cfg)
    assert layout.size == cfg.weight_beat_bits
    rng = np.random.default_rng(1)
    lo, hi = -(1 << (cfg.weight_bits - 1)), 1 << (cfg.weight_bits - 1)
    for _ in range(20):
        values = rng.integers(lo, hi, cfg.cols)
        values[0] = lo                                   # most negative weight
        indices = rng.integers(0, cfg.group_size, cfg.cols)
        const = layout.const([{"value": int(v), "index": int(i)} for v, i in zip(values, indices)])
        assert _bits(const) == pack_weight_beat(cfg, values, indices)


@pytest.mark.parametrize("name", OVP_PRESETS)
def test_ovp_weight_beat_bits(name):
    cfg = preset(name)
    layout = weight_beat_layout(cfg)
    assert layout.size == cfg.weight_beat_bits == cfg.cols * (8 + 2 * cfg.index_bits)
    rng = np.random.default_rng(4)
    for _ in range(20):
        pairs = rng.integers(0, 256, cfg.cols)
        indices = rng.integers(0, cfg.group_size, (2, cfg.cols))
        const = layout.const([{"pair": int(p), "index0": int(i0), "index1": int(i1)}
                              for p, i0, i1 in zip(pairs, indices[0], indices[1])])
        assert _bits(const) == pack_weight_beat(cfg, pairs, indices)


@pytest.mark.parametrize("name", OVP_PRESETS)
def test_ovp_activation_beat_is_ovp4_bytes(name):
    cfg = preset(name)
    layout = activation_beat_layout(cfg)
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 16, (cfg.rows, cfg.group_size))
    if cfg.activation_is_ovp:
        const = layout.const([[int(x) for x in lane] for lane in codes])
        word = pack_activation_beat(cfg, codes)
        assert _bits(const) == word
        # lane r, pair j = one OVP-4 byte, even element in the low nibble
        byte = (word >> (8 * (cfg.group_size // 2) + 8)) & 0xFF
        assert byte == codes[1, 2] | (codes[1, 3] << 4)


@pytest.mark.parametrize("name", PRESETS)
def test_activation_beat_bits(name):
    cfg = preset(name)
    layout = activation_beat_layout(cfg)
    assert layout.size == cfg.activation_beat_bits
    rng = np.random.default_rng(2)
    lo, hi = -(1 << (cfg.activation_bits - 1)), 1 << (cfg.activation_bits - 1)
    for _ in range(20):
        lanes = rng.integers(lo, hi, (cfg.rows, cfg.group_size))
        const = layout.const([[int(x) for x in lane] for lane in lanes])
        assert _bits(const) == pack_activation_beat(cfg, lanes)
        # and element j of lane r sits at bit (r * group_size + j) * activation_bits
        r, j = cfg.rows - 1, cfg.group_size - 1
        shift = (r * cfg.group_size + j) * cfg.activation_bits
        assert ((_bits(const) >> shift) & ((1 << cfg.activation_bits) - 1)) == int(lanes[r, j]) & ((1 << cfg.activation_bits) - 1)


@pytest.mark.parametrize("name", PRESETS)
def test_output_beat_bits(name):
    cfg = preset(name)
    layout = output_beat_layout(cfg)
    assert layout.size == cfg.output_beat_bits
    rng = np.random.default_rng(3)
    half = 1 << (cfg.accumulator_bits - 1)
    for _ in range(20):
        lanes = rng.integers(-half, half, cfg.cols)
        lanes[-1] = -half
        word = pack_lanes(lanes, cfg.accumulator_bits)
        view = layout.from_bits(word)
        assert [int(view[c]) for c in range(cfg.cols)] == unpack_output_beat(cfg, word).tolist() == lanes.tolist()


def test_layouts_reject_non_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 'rows=4'"):
        weight_beat_layout("rows=4")
