"""The estimator on DSP-chain configs: the compiler's schedule and the chain timing contract."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.sim.cycle import program_cycles
from sparsa.sim.estimator import estimate_gemm, estimate_workload

from ..conftest import CONFIGS, preset


@pytest.mark.parametrize("config", ["chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"])
@pytest.mark.parametrize("shape", [(1, 300, 50), (7, 77, 9), (20, 1000, 3), (64, 8, 256)])
def test_estimate_equals_cycle_model(config, shape):
    cfg = preset(config)
    m, k, n = shape
    program = compile_gemm(cfg, np.ones((k, n), dtype=np.int64), m, "dense")
    est = estimate_gemm(cfg, m, k, n, "dense")
    assert est.compute_cycles == program_cycles(program)
    assert est.instructions == len(program.instructions)


def test_estimate_follows_the_compilers_segment_count():
    """A short reduction (K = 8 at 2:4: 4 slots on 8 slices): the estimator costs the cut schedule."""
    from sparsa.sim import get_backend

    cfg = preset("chain-8x4-seg")
    m, k, n = 64, 8, 256
    program = compile_gemm(cfg, np.ones((k, n), dtype=np.int64), m, "2:4")
    assert program.segments > 1
    est = estimate_gemm(cfg, m, k, n, "2:4")
    run = get_backend("cycle", cfg).run(program, {"A": np.ones((m, k), dtype=np.int64)})
    assert est.compute_cycles == program_cycles(program) == run.cycles


def test_chain_decode_beats_systolic_at_the_same_mac_budget():
    from sparsa.config import load_config
    from sparsa.models.workloads.spec import get_workload

    chain, systolic = load_config(CONFIGS / "u280-flightllm.yaml"), load_config(CONFIGS / "u280-systolic.yaml")
    assert chain.peak_macs_per_cycle == systolic.peak_macs_per_cycle == 4096
    work = get_workload("llama2-7b", phase="decode", context=1024)
    fast, slow = estimate_workload(chain, work), estimate_workload(systolic, work)
    assert fast.tokens_per_s > 20 * slow.tokens_per_s and fast.tokens_per_s > 40
