"""The estimator's cost of a transformer's blocks equals the compiled block on the machine's cycle rung.

``sparsa estimate`` costs a transformer workload's blocks with :func:`sparsa.compiler.block.block_cycles`
(:mod:`sparsa.sim.block_estimate`), from the workload's structure and N:M patterns alone.  Here the
same structure gets random weights (quantized like the real models: int4 per output channel on the
U280 preset, K/V within +-119), is compiled into a machine program and run on the cycle rung: the
cycle counts must be equal, for SmolLM2 (prefill and decode) and MiniLM (its forward pass).
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler.attention import NIBBLE_QMAX
from sparsa.compiler.block import compile_block
from sparsa.models.block import KVCache, block_prefill
from sparsa.models.block.convert import quantize_block
from sparsa.models.block.tiny import random_float_block
from sparsa.models.workloads.spec import get_workload
from sparsa.sfu import to_fx
from sparsa.sim.estimator import estimate_workload
from sparsa.sim.machine import run_machine

from .conftest import preset


def _machine_cycles(cfg, workload, seed: int) -> int:
    blocks = workload.block
    phase = "decode" if workload.phase == "decode" else "prefill"
    tokens, start = (1, workload.context) if phase == "decode" else (workload.context, 0)
    rng = np.random.default_rng(seed)
    fb = random_float_block(blocks.spec, rng)
    calib = rng.standard_normal((32, blocks.spec.hidden))
    w = quantize_block(fb, calib, bits=cfg.weight_bits, patterns=workload.block_patterns(0),
                       max_positions=start + tokens, kv_qmax=NIBBLE_QMAX)
    x = to_fx(rng.standard_normal((start + tokens, blocks.spec.hidden)))
    empty = np.zeros((blocks.spec.kv_heads, 0, blocks.spec.head_dim), np.int64)
    cache = block_prefill(w, x[:start])[1] if start else KVCache(empty, empty)
    bp = compile_block(cfg, w, phase, tokens, start)
    return run_machine(cfg, bp.words(), bp.device_memory(x[start:], cache.k, cache.v), bp.programs, "cycle").cycles


@pytest.mark.parametrize("name,phase,context", [("smollm2-135m", "decode", 20), ("smollm2-135m", "prefill", 6),
                                                ("all-minilm-l6-v2", None, 6)])
def test_estimated_block_equals_the_compiled_block(name, phase, context):
    cfg = preset("u280-flightllm").with_overrides({"sfu.lanes": 8})
    workload = get_workload(name, phase=phase, context=context)
    est = estimate_workload(cfg, workload)
    bp = est.block_program
    assert "refused" not in bp, bp
    assert bp["blocks"] == workload.block.count and bp["cycles"] == bp["blocks"] * bp["cycles_per_block"]
    assert bp["cycles_per_block"] == _machine_cycles(cfg, workload, 7)
    assert sum(bp["cycles_by_unit"].values()) == bp["cycles_per_block"]


def test_workload_patterns_reach_the_block_estimate():
    """The workload file's 2:4 MLP makes the compiled block's MLP GEMMs cheaper than dense."""
    cfg = preset("systolic-8x8-2of4").with_overrides({"sfu.lanes": 8})
    sparse = get_workload("smollm2-135m", phase="decode", context=8)
    assert sparse.block_patterns(0) == {}
    from sparsa.models.workloads.spec import load_workload

    nm = load_workload("configs/workloads/smollm2-135m-decode.yaml", context=8)
    assert nm.block_patterns(0) == {"gate": "2:4", "up": "2:4", "down": "2:4"}
    dense_cycles = estimate_workload(cfg, sparse).block_program["cycles_by_unit"]["matrix"]
    sparse_cycles = estimate_workload(cfg, nm).block_program["cycles_by_unit"]["matrix"]
    assert sparse_cycles < dense_cycles


def test_block_estimate_refusals_are_reported():
    workload = get_workload("smollm2-135m", phase="decode", context=8)
    assert "no sfu: section" in estimate_workload(preset("u280-flightllm"), workload).block_program["refused"]
    long = get_workload("all-minilm-l6-v2", context=256)
    sfu = preset("u280-flightllm").with_overrides({"sfu.lanes": 8})
    assert "sfu.vmem_words=4096" in estimate_workload(sfu, long).block_program["refused"]
    assert estimate_workload(preset("u280-flightllm"), get_workload("resnet18")).block_program is None
