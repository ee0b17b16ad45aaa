"""The chain layouts against sparsa.chain_layout's Python packing (bit for bit) and the config checks."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from sparsa.chain_layout import (chain_activation_beat_bits, chain_output_beat_bits, chain_weight_beat_bits,
                                 pack_chain_activation_beat, pack_chain_weight_beat, unpack_chain_output_beat)
from sparsa.errors import UnsupportedError
from sparsa.hdl.chain.layouts import (PACKED_SUM_BITS, chain_act_beat_layout, chain_bank_row_layout,
                                      chain_output_beat_layout, chain_taps_layout, chain_weight_beat_layout,
                                      chain_word_bus_layout, check_chain_config)
from sparsa.layout import pack_lanes

from ...conftest import preset

PRESETS = ["chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"]


def _width(layout) -> int:
    return Shape.cast(layout).width


@pytest.mark.parametrize("name", PRESETS)
def test_widths(name):
    cfg = preset(name)
    assert _width(chain_weight_beat_layout(cfg)) == chain_weight_beat_bits(cfg)
    assert _width(chain_act_beat_layout(cfg)) == chain_activation_beat_bits(cfg) == \
        _width(chain_word_bus_layout(cfg, cfg.rows))
    assert _width(chain_output_beat_layout(cfg)) == chain_output_beat_bits(cfg)
    assert _width(chain_bank_row_layout(cfg)) == cfg.chain.max_segments * chain_output_beat_bits(cfg)
    assert _width(chain_taps_layout(cfg)) == cfg.chain.max_segments * cfg.token_lanes * cfg.accumulator_bits
    assert PACKED_SUM_BITS == 48


@pytest.mark.parametrize("name", PRESETS)
def test_fields_sit_where_python_packs_them(name):
    cfg = preset(name)
    rng = np.random.default_rng(1)
    wlo, whi = -(1 << (cfg.weight_bits - 1)), 1 << (cfg.weight_bits - 1)
    values = rng.integers(wlo, whi, (cfg.cols, cfg.rows))
    indices = rng.integers(0, cfg.group_size, (cfg.cols, cfg.rows))
    beat = data.Const(chain_weight_beat_layout(cfg), pack_chain_weight_beat(cfg, values, indices))
    for c in range(cfg.cols):
        for i in range(cfg.rows):
            assert (beat[c][i].value, beat[c][i].index) == (values[c, i], indices[c, i])
    word = rng.integers(-128, 128, (cfg.rows, cfg.token_lanes, cfg.group_size))
    acts = data.Const(chain_act_beat_layout(cfg), pack_chain_activation_beat(cfg, word))
    assert all(acts[i][p][e] == word[i, p, e] for i in range(cfg.rows) for p in range(cfg.token_lanes)
               for e in range(cfg.group_size))
    lanes = rng.integers(-(1 << 31), 1 << 31, cfg.token_lanes * cfg.cols)
    bits = pack_lanes(lanes, cfg.accumulator_bits)
    out = data.Const(chain_output_beat_layout(cfg), bits)
    assert [out[k] for k in range(len(lanes))] == list(lanes) == list(unpack_chain_output_beat(cfg, bits))


class Probe:
    """Stands for a component under construction."""


def test_check_chain_config():
    cfg = preset("chain-4x4-2of4")
    assert check_chain_config(Probe(), cfg) is cfg
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 1"):
        check_chain_config(Probe(), 1)
    refused = Probe()
    with pytest.raises(UnsupportedError, match="Probe needs datapath.kind='dsp_chain', not 'systolic'"):
        check_chain_config(refused, preset("systolic-4x4-2of4"))
    assert refused._MustUse__silence        # a refused Elaboratable does not warn as unused
