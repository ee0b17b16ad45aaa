"""The whole SoC (UART bridge included) runs compiled GEMMs, driven by the host driver:
bit-exact against NumPy, and the CYCLES register equals the timing contract.

The same :class:`SocDriver` code drives the Amaranth simulation and the Verilator model
(bytes over a socket - a virtual serial port), as it drives a board through pyserial.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.hdl.soc.top import UartSoc
from sparsa.models.reference import gemm_reference
from sparsa.sim.backends.soc.amaranth_transport import AmaranthSimTransport
from sparsa.sim.backends.soc.driver import SocDriver
from sparsa.sim.backends.soc.transport import SIM_DIVISOR
from sparsa.sim.cycle import program_cycles

from .conftest import gemm


def _check(cfg, program, a, result):
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    assert result.cycles == program_cycles(program) == result.stats["run_cycles"]


def test_gemm_through_the_uart_in_amaranth_sim(small_cfg, small_params):
    """Load, start, wait, read back over the UART; then a second program on the same SoC."""
    with AmaranthSimTransport(UartSoc(small_params, SIM_DIVISOR)) as link:
        soc = SocDriver(link, small_params)
        soc.identify()
        program, a = gemm(small_cfg, 5, 12, 6, seed=4)
        _check(small_cfg, program, a, soc.run(program, {"A": a}))
        program2, a2 = gemm(small_cfg, 3, 8, 3, seed=5, pattern="dense")
        _check(small_cfg, program2, a2, soc.run(program2, {"A": a2}))


_VERILATOR = {}


@pytest.fixture(scope="session")
def verilator_link(small_params):
    """One Verilator build of the small SoC per session (cached across sessions too)."""
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    problem = unavailable_reason()
    if problem:
        pytest.skip(problem)
    from sparsa.sim.backends.soc.verilator_transport import VerilatorTransport

    if "link" not in _VERILATOR:
        link = VerilatorTransport(small_params, SIM_DIVISOR)
        link.build()
        _VERILATOR["link"] = link
    return _VERILATOR["link"]


@pytest.mark.verilator
def test_gemm_through_the_uart_in_verilator(verilator_link, small_cfg, small_params):
    with verilator_link as link:
        soc = SocDriver(link, small_params)
        soc.identify()
        program, a = gemm(small_cfg, 7, 20, 9, seed=6)
        _check(small_cfg, program, a, soc.run(program, {"A": a}))
        program2, a2 = gemm(small_cfg, 4, 9, 5, seed=7, pattern="1:4")
        _check(small_cfg, program2, a2, soc.run(program2, {"A": a2}))


def test_scaled_gemm_through_the_uart_in_amaranth_sim():
    """Per-group activation scales on the SoC: the LOAD_S beats travel in the activation memory;
    outputs equal the reference backend's scaled sums and CYCLES equals the contract."""
    from sparsa.config import load_config
    from sparsa.hdl.soc.params import SocParams
    from sparsa.sim import get_backend

    cfg = load_config("configs/systolic-4x4-group.yaml").with_overrides({
        "buffers.weight_buffer_bytes": 2048, "buffers.activation_buffer_bytes": 4096,
        "buffers.accumulator_depth": 64})
    params = SocParams(cfg, instr_depth=64)
    program, a = gemm(cfg, 5, 70, 6, seed=8)
    rng = np.random.default_rng(9)
    s = rng.integers(0, 1 << cfg.act_scale.mantissa_bits, (5, program.scale_groups))
    s[0, 0] = (1 << cfg.act_scale.mantissa_bits) - 1
    tensors = {"A": a, "S": s}
    with AmaranthSimTransport(UartSoc(params, SIM_DIVISOR)) as link:
        result = SocDriver(link, params).run(program, tensors)
    expected = get_backend("reference", cfg).run(program, tensors).outputs["Y"]
    np.testing.assert_array_equal(result.outputs["Y"], expected)
    assert result.cycles == program_cycles(program) == result.stats["run_cycles"]
