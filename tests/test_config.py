"""The config schema: presets load, derived values, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from sparsa.config import AcceleratorConfig, SfuConfig, load_config, parse_config
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.formats.nm import NMPattern

from .conftest import CONFIGS, preset


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_loads(path):
    cfg = load_config(path)
    assert cfg.rows >= 1 and cfg.cols >= 1


def test_derived_widths(cfg8x8):
    assert cfg8x8.index_bits == 2
    assert cfg8x8.weight_beat_bits == 8 * (8 + 2)
    assert cfg8x8.activation_beat_bits == 8 * 4 * 8
    assert cfg8x8.output_beat_bits == 8 * 32
    assert cfg8x8.max_reduction_slots() == (2**31 - 1) // 2**14


def test_config_is_frozen(cfg8x8):
    with pytest.raises(Exception):
        cfg8x8.datapath.rows = 3  # type: ignore[misc]


def _write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base():
    return yaml.safe_load((CONFIGS / "systolic-4x4-2of4.yaml").read_text())


def test_unknown_key_names_it(tmp_path):
    data = _base()
    data["datapath"]["rowz"] = 4
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: unknown key 'datapath\.rowz'"):
        load_config(_write(tmp_path, data))


def test_negative_rows(tmp_path):
    data = _base()
    data["datapath"]["rows"] = -1
    with pytest.raises(ConfigError, match=r"datapath\.rows: .*greater than or equal to 1.*got -1"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize("default,msg", [("5:4", "1 <= N <= M"), ("2:3", "group size M must be one of"),
                                         ("2-4", "must be 'dense' or 'N:M'")])
def test_bad_default_sparsity(tmp_path, default, msg):
    data = _base()
    data["sparsity"]["default"] = default
    with pytest.raises(ConfigError, match=msg):
        load_config(_write(tmp_path, data))


def test_unsupported_group_size(tmp_path):
    data = _base()
    data["sparsity"]["group_size"] = 3
    with pytest.raises(ConfigError, match=r"sparsity\.group_size: .*one of \(2, 4, 8, 16\), not 3"):
        load_config(_write(tmp_path, data))


def test_accumulator_too_small_for_one_product(tmp_path):
    data = _base()
    data["types"]["accumulator_bits"] = 12
    with pytest.raises(ConfigError, match="accumulator_bits=12 cannot hold one int8 x int8 product"):
        load_config(_write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("datapath: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)


def test_unimplemented_values_are_refused_clearly():
    cfg = preset("systolic-4x4-2of4")
    for path, value, msg in [("datapath.dataflow", "output_stationary", "dataflow='output_stationary'"),
                             ("types.weight", "ovp8", "types.weight='ovp8' is not implemented")]:
        with pytest.raises(UnsupportedError, match=msg):
            cfg.with_overrides({path: value}).require_supported()


def test_overrides(cfg4x4):
    big = cfg4x4.with_overrides({"datapath.rows": 16, "clock_mhz": 250})
    assert big.rows == 16 and big.clock_mhz == 250 and cfg4x4.rows == 4
    with pytest.raises(ConfigError, match="unknown field 'rowz'"):
        cfg4x4.with_overrides({"datapath.rowz": 1})


def test_the_sfu_section_is_optional_and_keeps_old_hashes(cfg4x4):
    """Absent, ``sfu`` is None and left out of the dump (config hashes unchanged); an override of
    one of its fields creates it from its defaults; a bad value names the field."""
    assert cfg4x4.sfu is None and "sfu" not in cfg4x4.model_dump() and '"sfu"' not in cfg4x4.model_dump_json()
    with_sfu = cfg4x4.with_overrides({"sfu.lanes": 4})
    assert with_sfu.sfu.lanes == 4 and with_sfu.sfu.vmem_words == SfuConfig().vmem_words
    assert with_sfu.with_overrides({"sfu.vmem_words": 64}).sfu == SfuConfig(lanes=4, vmem_words=64)
    for path, value, msg in [("sfu.lanes", 6, "sfu.lanes must be a power of two"),
                             ("sfu.lanes", 64, "sfu.lanes"), ("sfu.vmem_words", 1, "sfu.vmem_words"),
                             ("sfu.depth", 8, "unknown field 'depth'")]:
        with pytest.raises(ConfigError, match=msg):
            cfg4x4.with_overrides({path: value})
    with pytest.raises(ConfigError, match="datapath.chain is only used with kind 'dsp_chain'"):
        cfg4x4.with_overrides({"datapath.chain.group": 4})


def test_hardware_pattern_mapping(cfg4x8):
    assert str(cfg4x8.hardware_pattern("1:2")) == "4:8"
    assert str(cfg4x8.hardware_pattern("2:4")) == "4:8"
    assert str(cfg4x8.hardware_pattern("1:8")) == "1:8"
    assert str(cfg4x8.hardware_pattern("dense")) == "8:8"
    with pytest.raises(UnsupportedError, match="1:16 needs groups of 16"):
        cfg4x8.hardware_pattern("1:16")


def test_nm_pattern_parse():
    assert NMPattern.parse("2:4") == NMPattern(n=2, m=4)
    assert NMPattern.parse(" dense ", dense_m=8) == NMPattern(n=8, m=8)
    with pytest.raises(ConfigError, match=r"N:M needs 1 <= N <= M, got 5:4"):
        NMPattern.parse("5:4")


def test_schema_is_json_and_forbids_extras():
    schema = AcceleratorConfig.model_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert "datapath" in schema["required"]


def test_parse_config_reports_every_problem_on_its_own_line():
    with pytest.raises(ConfigError) as info:
        parse_config({"datapath": {"rows": 0, "cols": 0}}, source="x")
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and lines[0].startswith("x: datapath.rows:") and lines[1].startswith("x: datapath.cols:")
