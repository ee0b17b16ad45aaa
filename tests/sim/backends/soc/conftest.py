"""Fixtures of the SoC host-side tests: the small SoC the gateware tests use (tests/fpga/conftest.py)."""

from __future__ import annotations

from ....fpga.conftest import SMALL, gemm, small_cfg, small_config, small_params  # noqa: F401 - fixtures, helpers
