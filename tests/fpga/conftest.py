"""Shared pieces of the FPGA / SoC tests: a small SoC configuration and tool availability."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.hdl.soc.params import SocParams

from ..conftest import preset

#: A 4x4 design with small buffers: quick to elaborate and simulate, fits a ULX3S-25F.
SMALL = {"buffers.weight_buffer_bytes": 2048, "buffers.activation_buffer_bytes": 4096,
         "buffers.accumulator_depth": 64}


def small_config():
    """``systolic-4x4-2of4`` with the small buffers of :data:`SMALL`."""
    return preset("systolic-4x4-2of4").with_overrides(SMALL)


@pytest.fixture(scope="session")
def small_cfg():
    return small_config()


@pytest.fixture(scope="session")
def small_params(small_cfg):
    return SocParams(small_cfg, instr_depth=64)


def gemm(cfg, m: int, k: int, n: int, seed: int, pattern=None):
    """A compiled random GEMM and its activations."""
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    a, w = rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))
    return compile_gemm(cfg, w, m, pattern), a


def yowasp_missing() -> "str | None":
    """Why the YoWASP flow cannot run here, or None."""
    from sparsa.fpga.ecp5 import missing_tools

    missing = missing_tools()
    return f"needs {', '.join(missing)}: pip install 'sparsa[fpga]'" if missing else None
