"""Config schema of the DSP chain: fields, derived values and one-line errors quoting the value."""

from __future__ import annotations

import pytest

from sparsa.errors import ConfigError, UnsupportedError

from ..conftest import preset


def test_systolic_configs_dump_unchanged():
    cfg = preset("systolic-4x4-2of4")
    assert "chain" not in cfg.model_dump()["datapath"] and cfg.datapath.kind != "dsp_chain"
    assert cfg.token_lanes == 1 and cfg.peak_macs_per_cycle == 16


def test_chain_derived_values():
    cfg = preset("chain-4x4-packed")
    assert cfg.datapath.kind == "dsp_chain" and cfg.token_lanes == 2 and cfg.chain_groups == 2
    assert cfg.peak_macs_per_cycle == 32 and cfg.multipliers == 16
    cfg.require_supported()
    assert preset("chain-4x4-2of4").with_overrides({"datapath.rows": 6, "datapath.chain.group": 3}).chain_groups == 2
    # a systolic config switched to the chain gets the chain defaults
    chain = preset("systolic-4x4-2of4").with_overrides({"datapath.kind": "dsp_chain"})
    assert chain.chain.group == 2 and not chain.chain.packing


def test_max_packed_group():
    cfg = preset("chain-4x4-packed")
    assert cfg.max_packed_group() == 7                      # 8 * (-128)(-128) = 2^17 overflows
    assert preset("chain-8x2-m16").max_packed_group() == 127


@pytest.mark.parametrize("overrides,msg", [
    ({"datapath.chain.group": 3}, r"datapath.chain.group=3 does not divide the chain length datapath.rows=4"),
    ({"datapath.rows": 8, "datapath.chain.group": 8},
     r"datapath.chain.group=8 packed products of int8 x int8 can overflow the 18-bit low lane; use group <= 7"),
    ({"types.weight": "ovp4"}, r"datapath.chain.packing cannot pack types.weight='ovp4'"),
])
def test_bad_chain_configs(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        preset("chain-4x4-packed").with_overrides(overrides)


def test_chain_on_systolic_is_refused():
    with pytest.raises(ConfigError, match="datapath.chain is only used with kind 'dsp_chain', not kind='systolic'"):
        from sparsa.config import parse_config

        data = preset("systolic-4x4-2of4").model_dump()
        data["datapath"]["chain"] = {"group": 2}
        parse_config(data)


def test_unpacked_chain_refuses_ovp():
    cfg = preset("chain-4x4-2of4").with_overrides({"types.weight": "ovp4"})
    with pytest.raises(UnsupportedError, match="types.weight='ovp4' is not implemented by the dsp_chain datapath"):
        cfg.require_supported()


def test_systolic_top_refuses_chain():
    pytest.importorskip("amaranth")
    from sparsa.hdl.chain.top import SparseChainAccelerator
    from sparsa.hdl.top import SparseSystolicAccelerator

    with pytest.raises(UnsupportedError, match="datapath.kind='dsp_chain' is not implemented"):
        SparseSystolicAccelerator(preset("chain-4x4-2of4"))
    with pytest.raises(UnsupportedError, match="SparseChainAccelerator needs datapath.kind='dsp_chain'"):
        SparseChainAccelerator(preset("systolic-4x4-2of4"))


def test_unknown_synth_target():
    from sparsa.fpga.synth import get_target

    with pytest.raises(ConfigError, match="unknown synthesis target 'xc7z'"):
        get_target("xc7z")
