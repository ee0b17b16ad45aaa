"""The memory model (sparsa.memory_model, ``memory.hbm``): hand computations, the old model kept bit for bit,
bad values refused, and the report's peak and derated memory limits."""

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.config import STREAM_KINDS, MemoryConfig, StreamPlacement, load_config, parse_config
from sparsa.errors import ConfigError
from sparsa.memory_model import KIND_OF_BYTES, effective_gbps, memory_cycles, memory_seconds, stream_gbps

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).with_name("memory_model_baseline.json")

placements = st.fixed_dictionaries({}, optional={"channels": st.integers(1, 8), "stride": st.integers(1, 4),
                                                 "cross": st.booleans()})


def _hand_channels(channels: int, place: dict) -> int:
    # every stride-th channel of the memory when no count is given: 0, s, 2s, ... < channels
    stride = place.get("stride", 1)
    return place["channels"] if "channels" in place else len(range(0, channels, stride))


@settings(max_examples=80, deadline=None)
@given(channels=st.integers(1, 32), channel_gbps=st.floats(0.5, 50), within=st.floats(0.05, 1),
       across=st.floats(0.05, 1), places=st.fixed_dictionaries({k: placements for k in STREAM_KINDS}),
       nbytes=st.fixed_dictionaries({k: st.floats(0, 1e9) for k in KIND_OF_BYTES}))
def test_effective_bandwidth_is_the_hand_computation(channels, channel_gbps, within, across, places, nbytes):
    fits = {k: p for k, p in places.items()
            if p.get("stride", 1) <= channels and (p.get("channels", 1) - 1) * p.get("stride", 1) + 1 <= channels}
    memory = MemoryConfig(bandwidth_gbps=channels * channel_gbps, channels=channels,
                          hbm={"channel_gbps": channel_gbps, "efficiency_within": within,
                               "efficiency_across": across, **fits})
    seconds = 0.0
    for kind in STREAM_KINDS:
        place = fits.get(kind, {})
        gbps = _hand_channels(channels, place) * channel_gbps * (across if place.get("cross") else within)
        assert stream_gbps(memory, kind) == pytest.approx(gbps, rel=1e-12)
        kind_bytes = sum(v for key, v in nbytes.items() if KIND_OF_BYTES[key] == kind)
        seconds += kind_bytes / (gbps * 1e9)
    assert memory_seconds(memory, nbytes) == pytest.approx(seconds, rel=1e-12)
    if sum(nbytes.values()) > 0:
        assert effective_gbps(memory, nbytes) == pytest.approx(sum(nbytes.values()) / seconds / 1e9, rel=1e-12)


def test_u280_preset_stripes_every_stream_over_all_channels():
    """All 32 pseudo-channels within their channel (8 of them hold only 2 GB, less than a whole
    LLaMA2-7B's INT4 weights); every 4th channel, as the artifact's single-layer case, is stride 4."""
    memory = load_config(ROOT / "configs" / "u280-flightllm.yaml").memory
    assert memory.stream_channels("weights") == 32
    assert all(stream_gbps(memory, kind) == pytest.approx(32 * 14.375 * 0.7) for kind in STREAM_KINDS)
    # 1 GB of weights and 10 MB of outputs take (1e9 + 1e7) / 322e9 s
    assert memory_seconds(memory, {"weights": 1e9, "outputs": 1e7}) == pytest.approx(1.01e9 / 322e9)
    every_fourth = memory.model_copy(update={"hbm": memory.hbm.model_copy(update={
        "weights": StreamPlacement(stride=4)})})
    assert every_fourth.stream_channels("weights") == 8          # 0, 4, ..., 28
    assert stream_gbps(every_fourth, "weights") == pytest.approx(8 * 14.375 * 0.7)
    # one port crossing channels: 14.375 x 0.35 GB/s
    crossing = memory.model_copy(update={"hbm": memory.hbm.model_copy(update={
        "activations": StreamPlacement(channels=1, cross=True)})})
    assert stream_gbps(crossing, "activations") == pytest.approx(14.375 * 0.35)


@settings(max_examples=40, deadline=None)
@given(bandwidth=st.floats(0.1, 1000), efficiency=st.floats(0.01, 1), clock=st.floats(1, 2000),
       nbytes=st.dictionaries(st.sampled_from(sorted(KIND_OF_BYTES)), st.floats(0, 1e9)))
def test_without_hbm_the_old_formula_bit_for_bit(bandwidth, efficiency, clock, nbytes):
    cfg = load_config(ROOT / "configs" / "systolic-8x8-2of4.yaml").model_copy(
        update={"clock_mhz": clock, "memory": MemoryConfig(bandwidth_gbps=bandwidth, efficiency=efficiency)})
    bytes_per_cycle = bandwidth * efficiency * 1e9 / (clock * 1e6)
    assert memory_cycles(cfg, nbytes) == sum(nbytes.values()) / bytes_per_cycle


def _without_hbm(name: str):
    data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    data["memory"].pop("hbm", None)
    return parse_config(data)


@pytest.mark.parametrize("key", sorted(json.loads(BASELINE.read_text())))
def test_configs_without_hbm_estimate_exactly_as_before(key):
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.estimator import estimate_workload

    # tests/memory_model_baseline.json: summaries dumped before memory.hbm existed (u280-* had no hbm then)
    expected = json.loads(BASELINE.read_text())[key]
    name, model, phase, context = key.split("|")
    got = estimate_workload(_without_hbm(name), get_workload(model, phase=phase, context=int(context))).summary()
    assert {k: got[k] for k in expected} == expected


def test_channel_bandwidth_follows_bandwidth_when_not_given():
    # the presets leave channel_gbps out, so overriding bandwidth_gbps (sweeps, compare --set) stays valid
    data = _u280()
    data["memory"]["bandwidth_gbps"] = 100
    memory = parse_config(data).memory
    assert memory.channel_gbps == 100 / 32
    assert stream_gbps(memory, "weights") == pytest.approx(32 * 100 / 32 * 0.7)


def test_config_without_hbm_dumps_as_before():
    memory = MemoryConfig(bandwidth_gbps=77, channels=4)
    assert "hbm" not in memory.model_dump() and "hbm" not in memory.model_dump_json()


def _u280(**hbm):
    data = yaml.safe_load((ROOT / "configs" / "u280-flightllm.yaml").read_text())
    data["memory"]["hbm"].update(hbm)
    return data


@pytest.mark.parametrize("hbm, message", [
    ({"channel_gbps": 10.0}, r"memory\.hbm\.channel_gbps=10\.0 x memory\.channels=32 = 320 GB/s must equal "
                             r"memory\.bandwidth_gbps=460"),
    ({"efficiency_within": 1.5}, r"memory\.hbm\.efficiency_within: .*less than or equal to 1.*1\.5"),
    ({"efficiency_across": 0}, r"memory\.hbm\.efficiency_across: .*greater than 0.*got 0"),
    ({"weights": {"stride": 33}}, r"memory\.hbm\.weights\.stride=33 must be in 1\.\.32"),
    ({"kv": {"channels": 9, "stride": 4}}, r"memory\.hbm\.kv\.channels=9 with stride 4 needs 33 channels; "
                                           r"memory\.channels is 32: use channels <= 8"),
    ({"outputs": {"channels": 0}}, r"memory\.hbm\.outputs\.channels: .*greater than or equal to 1.*got 0"),
    ({"activations": {"where": 1}}, r"memory\.hbm\.activations\.where"),
])
def test_bad_hbm_values_are_refused(hbm, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_u280(**hbm))


def test_efficiency_with_hbm_is_refused():
    data = _u280()
    data["memory"]["efficiency"] = 0.5
    with pytest.raises(ConfigError, match=r"memory\.efficiency=0\.5 must be 1\.0 with memory\.hbm"):
        parse_config(data)


def test_bad_stream_kind_and_byte_key():
    memory = load_config(ROOT / "configs" / "u280-flightllm.yaml").memory
    with pytest.raises(ValueError, match=r"one of .*not 'dram'"):
        stream_gbps(memory, "dram")
    with pytest.raises(ValueError, match=r"off-chip byte key must be one of .*not 'bias'"):
        memory_seconds(memory, {"bias": 1.0})


def test_report_prints_peak_and_derated_limits():
    from sparsa.models.workloads.spec import get_workload
    from sparsa.sim.estimator import estimate_workload
    from sparsa.sim.report import format_summary

    cfg = load_config(ROOT / "configs" / "u280-flightllm.yaml")
    est = estimate_workload(cfg, get_workload("smollm2-135m", phase="decode", context=256))
    s = est.summary()
    assert s["memory_limit_s"] > s["memory_roofline_s"]
    assert s["memory_limit_s"] == pytest.approx(sum(layer.memory_cycles for layer in est.layers) / 225e6)
    assert s["memory_limit_fraction"] == pytest.approx(s["memory_limit_s"] / s["latency_s"])
    text = format_summary(est, cfg)
    line = next(row for row in text.splitlines() if row.startswith("memory roofline"))
    assert "at peak bandwidth" in line and "derated by the memory model" in line
    assert f"{100 * s['memory_limit_fraction']:.1f} %" in line
    # a memory model that does not derate keeps the old one-limit line
    plain = _without_hbm("u280-flightllm")
    line = next(row for row in format_summary(estimate_workload(plain, get_workload(
        "smollm2-135m", phase="decode", context=256)), plain).splitlines() if row.startswith("memory roofline"))
    assert "derated" not in line and math.isfinite(s["memory_limit_s"])
