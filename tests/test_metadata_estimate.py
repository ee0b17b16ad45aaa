"""The estimator's N:M metadata bytes are the chosen format's byte count, exactly; the choice is
the fewest bytes the datapath's RTL decodes; sparsity.metadata restricts it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.compiler.chain import plan_chain_tiling
from sparsa.compiler.metadata import choose_metadata
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.formats import nm, nm_meta
from sparsa.sim.estimator import estimate_gemm

from .conftest import preset


def _format_bytes(cfg, k, n, pattern, encoding):
    p, m = (int(x) for x in pattern.split(":"))
    w = np.random.default_rng(k * n).integers(-7, 8, size=(k, n))
    return len(nm_meta.encode(nm.compress(w, p, m, axis=0), encoding, cfg.group_size))


@pytest.mark.parametrize("config, pattern, encoding", [
    ("u280-flightllm", "2:4", "index"), ("u280-flightllm", "2:8", "index"), ("u280-flightllm", "8:16", "slot"),
    ("chain-8x2-m16", "2:8", "index"), ("systolic-4x8-m8", "2:4", "slot"), ("systolic-8x8-2of4", "2:4", "slot")])
@pytest.mark.parametrize("k, n", [(64, 32), (200, 24), (16, 2)])
def test_estimator_indices_are_the_format_bytes(config, pattern, encoding, k, n):
    """``index`` is forced (``auto`` chooses only what the exported top decodes: slot)."""
    cfg = preset(config)
    assert estimate_gemm(cfg, 1, k, n, pattern).metadata in ("slot", "none")
    if encoding == "index":
        cfg = cfg.with_overrides({"sparsity.metadata": "index"})
    est = estimate_gemm(cfg, 1, k, n, pattern)
    assert est.metadata == encoding
    # a small layer is read once, so its indices are one metadata stream
    assert est.offchip_bytes["indices"] == _format_bytes(cfg, k, n, pattern, encoding)


def test_auto_keeps_the_slot_bytes_and_forced_index_halves_them():
    """``auto`` gives the old bytes (the exported chain top has no expander); forcing ``index``
    (the expander in front of the top) halves a 2:4 layer's indices."""
    cfg = preset("u280-flightllm")
    slot = estimate_gemm(cfg, 1, 4096, 4096, "2:4")
    auto = estimate_gemm(cfg.with_overrides({"sparsity.metadata": "index"}), 1, 4096, 4096, "2:4")
    assert slot.metadata == "slot" and auto.metadata == "index"
    assert slot.offchip_bytes["indices"] == 4096 // 2 * 4096 * 4 / 8     # one 4-bit index per kept value
    assert auto.offchip_bytes["indices"] == slot.offchip_bytes["indices"] / 2
    assert slot.offchip_bytes["weights"] == auto.offchip_bytes["weights"]


def test_index_needs_whole_groups_per_k_tile():
    """On the preset, k-tiles of 4 slots (4 segments) hold half of a 2:4 layer's 8 slots per group of 16:
    the expander's sub-groups are not fixed per slice, so the choice falls back to slot and forcing
    index is refused; with whole k-tiles of 16 slots it takes index."""
    cfg = preset("u280-flightllm")
    choice = choose_metadata(cfg, "2:4", 64, 8, seg_len=4)          # n_hw = 8 slots > 4
    assert choice.encoding == "slot" and set(choice.candidates) == {"slot"}
    forced = cfg.with_overrides({"sparsity.metadata": "index"})
    with pytest.raises(UnsupportedError, match="sparsity.metadata='index': the dsp_chain decoder cannot expand it "
                                               "for a 2:4 layer with k-tiles of 4 slots"):
        choose_metadata(forced, "2:4", 64, 8, seg_len=4)
    assert choose_metadata(cfg, "dense", 64, 8, seg_len=16).encoding == "none"
    tiling = plan_chain_tiling(cfg, 1, 4096, 4096, "2:4")
    assert choose_metadata(forced, "2:4", 4096, 4096, tiling.seg_len).encoding == "index"
    assert choose_metadata(cfg, "2:4", 4096, 4096, tiling.seg_len).encoding == "slot"      # auto: the top's own


def test_hardware_gates_the_choice():
    with pytest.raises(ConfigError, match="sparsity.metadata='bitmask': the dsp_chain datapath has no decoder for "
                                          "it; use 'auto' or one of slot, index"):
        preset("u280-flightllm").with_overrides({"sparsity.metadata": "bitmask"})
    with pytest.raises(ConfigError, match="the systolic datapath has no decoder for it; use 'auto' or one of slot"):
        preset("systolic-8x8-2of4").with_overrides({"sparsity.metadata": "index"})
    with pytest.raises(ConfigError, match="metadata"):
        preset("u280-flightllm").with_overrides({"sparsity.metadata": "rle"})


def test_cli_reports_each_layers_encoding(tmp_path):
    from sparsa.cli import main

    out = tmp_path / "est.json"
    argv = ["estimate", "configs/u280-flightllm.yaml", "--workload", "configs/workloads/llama2-7b-decode-nm.yaml",
            "--json", str(out)]
    root = Path(__file__).resolve().parent.parent
    with contextlib.chdir(root):
        assert main(argv + ["--set", "sparsity.metadata=index"]) == 0
        auto = json.loads(out.read_text())                   # the index encoding wherever it decodes
        assert main(argv) == 0
        slot = json.loads(out.read_text())                   # auto: slot
    layers = {layer["name"]: layer for layer in auto["layers"]}
    assert layers["blocks.0.attn.q_proj"]["metadata"] == "index"
    assert layers["blocks.0.mlp.up_proj"]["metadata"] == "index"
    assert layers["blocks.0.attn.qk"]["metadata"] == "none"
    assert auto["summary"]["metadata"]["index"]["layers"] == 224
    assert slot["summary"]["metadata"]["slot"]["bytes"] == pytest.approx(2 * auto["summary"]["metadata"]["index"]["bytes"],
                                                                         rel=0.25)
    # metadata bytes are part of every bandwidth figure: the totals differ by exactly the metadata
    diff = slot["summary"]["offchip_bytes"] - auto["summary"]["offchip_bytes"]
    assert diff == pytest.approx(slot["summary"]["metadata"]["slot"]["bytes"] - auto["summary"]["metadata"]["index"]["bytes"])


def test_workload_block_n_assumption_checked():
    from sparsa.models.workloads.spec import load_workload

    path = "configs/workloads/llama2-7b-decode-nm.yaml"
    root = Path(__file__).resolve().parent.parent
    with contextlib.chdir(root):
        with pytest.raises(ConfigError, match=r"block_n.shares: N must be one of 2, 4, 8, 16, not 3"):
            load_workload(path, block_n={"shares": {3: 1.0}, "source": "x"})
        with pytest.raises(ConfigError, match=r"block_n.shares: shares must be >= 0 and sum to 1"):
            load_workload(path, block_n={"shares": {2: 0.5}, "source": "x"})


@given(st.sampled_from(["u280-flightllm", "chain-8x2-m16", "chain-4x4-packed", "systolic-4x8-m8", "systolic-8x8-2of4"]),
       st.sampled_from(["1:2", "1:4", "2:4", "3:4", "1:8", "2:8", "4:8", "8:16", "dense"]),
       st.integers(1, 300), st.integers(1, 40), st.sampled_from([1, 2, 4, 8, 16]))
@settings(max_examples=150, deadline=None)
def test_choice_is_the_fewest_decodable_bytes(config, pattern, k, n, seg_len):
    from sparsa.datapath import matrix_datapath

    cfg = preset(config)
    if cfg.group_size % int(pattern.split(":")[1] if pattern != "dense" else 1):
        return
    choice = choose_metadata(cfg, pattern, k, n, seg_len)
    dp = matrix_datapath(cfg)
    if pattern == "dense" or cfg.hardware_pattern(pattern).dense:
        assert choice.encoding == "none" and choice.nbytes == 0
        return
    assert "slot" in choice.candidates                       # every datapath decodes its own lane index
    assert set(choice.candidates) <= set(dp.metadata_decoders)
    assert choice.nbytes == min(v for enc, v in choice.candidates.items() if enc in dp.metadata_auto)
    n_, m_ = (int(x) for x in pattern.split(":"))
    assert choice.candidates["slot"] == nm_meta.metadata_bytes("slot", k, n, n_, m_, cfg.group_size)
    if "index" in choice.candidates:
        assert seg_len % cfg.hardware_pattern(pattern).n == 0


def test_output_packing_keeps_the_slot_index_of_the_union():
    """packing: both - an output-packed GEMV's lane holds two columns and one index over their union
    mask: the estimator counts that stream (one index column per column pair) and never the compact index."""
    from sparsa.compiler import compile_gemm
    from sparsa.compiler.chain_tiling import lane_pattern

    cfg = preset("u280-flightllm").with_overrides({"datapath.chain.packing": "both"})
    k, n = 256, 4096
    est = estimate_gemm(cfg, 1, k, n, "2:8")
    program = compile_gemm(cfg, np.random.default_rng(1).integers(-7, 8, size=(k, n)), 1, "2:8")
    assert program.packing == "outputs" and est.metadata == program.metadata.encoding == "slot"
    union = lane_pattern(program.hw_pattern, "outputs")
    assert est.offchip_bytes["indices"] == nm_meta.metadata_bytes("slot", k, n // 2, union.n, union.m, 16)
    assert choose_metadata(cfg, "2:8", k, n, 16).candidates.keys() == {"slot"}   # no compact index on 2-weight lanes
