"""Citations of the energy table (``energy.sources``) and the energy resting on unsourced entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsa.config import EnergyConfig, load_config
from sparsa.energy_sources import DEFAULT_SOURCES, mac_entry, unsourced_energy
from sparsa.errors import ConfigError
from sparsa.sim.estimator import estimate_gemm, estimate_workload

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _gemm(cfg):
    return estimate_gemm(cfg, 16, 64, 32, None, name="g", kind="linear", count=1, weight_format=None,
                         act_format=None, static_weight=True, overlap=True)


def test_default_table_cites_its_sourced_numbers_only():
    e = EnergyConfig()
    assert set(e.sources) == set(DEFAULT_SOURCES) == {"mac_pj.int8xint8", "sram_pj_per_byte", "offchip_pj_per_byte"}
    assert "Horowitz" in e.citation("mac_pj.int8xint8") and "0.2 pJ + 8-bit integer add 0.03 pJ" in \
        e.citation("mac_pj.int8xint8")
    assert "3.9 pJ/bit x 8 = 31.2" in e.citation("offchip_pj_per_byte")
    for entry in ("static_w", "register_pj_per_byte", "mac_pj.int4xint8", "mac_pj.ovp4xint8"):
        assert e.citation(entry) is None


def test_a_citation_counts_only_for_the_value_it_cites():
    cfg = load_config(CONFIGS / "systolic-8x8-2of4.yaml")
    assert cfg.energy.citation("offchip_pj_per_byte") is not None
    swept = cfg.with_overrides({"energy.offchip_pj_per_byte": 40.0})
    assert swept.energy.citation("offchip_pj_per_byte") is None          # kept in the dump, no longer valid
    assert swept.energy.sources["offchip_pj_per_byte"].value == 31.2


def test_a_table_without_sources_keeps_only_default_citations_of_default_values():
    e = EnergyConfig(sram_pj_per_byte=2.0, mac_pj={"int8xint8": 1.6})
    assert set(e.sources) == {"offchip_pj_per_byte"}
    assert EnergyConfig(sources={}).sources == {}


def test_sources_key_naming_no_entry_is_refused():
    cfg = load_config(CONFIGS / "systolic-8x8-2of4.yaml")
    with pytest.raises(ConfigError, match=r"energy.sources key 'mac_pj.int2xint8' names no entry of this table"):
        cfg.with_overrides({"energy.sources": {"mac_pj.int2xint8": {"value": 1.0, "cite": "x"}}})
    with pytest.raises(ValueError, match=r"energy entry 'dram' is not in this table"):
        EnergyConfig().citation("dram")


def test_presets_cite_hbm_and_mark_the_rest_unsourced():
    u280 = load_config(CONFIGS / "u280-flightllm.yaml").energy
    assert u280.citation("offchip_pj_per_byte").startswith("O'Connor")
    assert [entry for entry in u280.entries() if u280.citation(entry)] == ["offchip_pj_per_byte"]
    for name in ("ecp5-85f", "vcu1525-training"):
        e = load_config(CONFIGS / f"{name}.yaml").energy
        assert not any(e.citation(entry) for entry in e.entries())


def test_layer_unsourced_energy_is_the_energy_of_its_unsourced_entries():
    cfg = load_config(CONFIGS / "systolic-8x8-2of4.yaml")         # int8 x int8: MAC, SRAM, off-chip cited
    est = _gemm(cfg)
    assert est.unsourced_pj == {"register_pj_per_byte": est.energy_pj["registers"],
                                "static_w": est.energy_pj["static"]}
    bare = _gemm(cfg.with_overrides({"energy.sources": {}}))
    assert bare.energy_pj == est.energy_pj                          # citations never change the numbers
    assert sum(bare.unsourced_pj.values()) == pytest.approx(bare.energy_total_pj)


def test_workload_share_and_summary():
    from sparsa.models.workloads.spec import get_workload

    cfg = load_config(CONFIGS / "systolic-8x8-2of4.yaml")
    est = estimate_workload(cfg, get_workload("mlp-784-256-256-10"))
    parts = est.energy_breakdown_pj()
    expected = (parts["registers"] + parts["static"]) / sum(parts.values())
    assert est.unsourced_share == pytest.approx(expected)
    s = est.summary()
    assert s["energy_unsourced_share"] == pytest.approx(expected)
    assert s["energy_unsourced_j"]["static_w"] == pytest.approx(parts["static"] * 1e-12)


def test_unsourced_energy_checks_its_arguments():
    assert mac_entry("int4xint8") == "mac_pj.int4xint8"
    with pytest.raises(ValueError, match="mac_key must be a non-empty string"):
        mac_entry("")
    with pytest.raises(ValueError, match="no energy entry prices component 'dram'"):
        unsourced_energy({"dram": 1.0}, lambda entry: None)
    with pytest.raises(ValueError, match="'mac' component but mac_key is None"):
        unsourced_energy({"mac": 1.0}, lambda entry: None)
    assert unsourced_energy({"mac": 2.0, "static": 0.0}, lambda entry: None, "int8xint8") == {"mac_pj.int8xint8": 2.0}
