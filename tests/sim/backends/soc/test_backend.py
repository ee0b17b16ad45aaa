"""The UART SoC as registered backends (``soc-amaranth``, ``soc-verilator``): bit-exact against
NumPy, CYCLES equal to the cycle model; and the host side imports without Amaranth."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparsa.cli import main
from sparsa.errors import UnsupportedError
from sparsa.models.reference import gemm_reference
from sparsa.sim import BACKENDS, get_backend
from sparsa.sim.cycle import program_cycles

from ....conftest import ROOT, preset
from .conftest import gemm


def _check(cfg, program, a, result):
    assert (result.outputs["Y"] == gemm_reference(a, program.weights, cfg.accumulator_bits)).all()
    assert result.cycles == program_cycles(program) == result.stats["run_cycles"]


def test_soc_backends_are_registered():
    assert {"soc-amaranth", "soc-verilator"} <= set(BACKENDS)


def test_soc_amaranth_backend(small_cfg):
    backend = get_backend("soc-amaranth", small_cfg, instr_depth=64)
    assert backend.name == "soc-amaranth"
    for seed, pattern in ((4, None), (5, "dense")):
        program, a = gemm(small_cfg, 5, 12, 6, seed=seed, pattern=pattern)
        _check(small_cfg, program, a, backend.run(program, {"A": a}))


def test_soc_backend_refuses_the_dsp_chain():
    with pytest.raises(UnsupportedError, match="wraps the systolic datapath only"):
        get_backend("soc-amaranth", preset("chain-4x4-2of4"))


def test_cli_run_on_the_soc(capsys):
    assert main(["run", str(ROOT / "configs" / "systolic-4x4-2of4.yaml"), "--gemm", "3x8x4",
                 "--backend", "soc-amaranth"]) == 0
    out = capsys.readouterr().out
    assert "soc-amaranth" in out and "bit-exact vs NumPy reference" in out and "(= cycle model)" in out


@pytest.mark.verilator
def test_soc_verilator_backend(small_cfg):
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    backend = get_backend("soc-verilator", small_cfg, instr_depth=64)   # the build test_e2e uses (cached)
    program, a = gemm(small_cfg, 7, 20, 9, seed=6)
    _check(small_cfg, program, a, backend.run(program, {"A": a}))


_NO_AMARANTH = """
import sys


class NoAmaranth:
    def find_spec(self, name, path=None, target=None):
        if name == "amaranth" or name.startswith("amaranth."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)


sys.meta_path.insert(0, NoAmaranth())
import sparsa.sim
import sparsa.sim.backends.soc.driver
import sparsa.sim.backends.soc.devmem
import sparsa.sim.backends.soc.axi_model
import sparsa.sim.backends.soc.serial_transport
import sparsa.hdl.soc
import sparsa.hdl.soc.params
from sparsa.config import load_config
from sparsa.errors import MissingToolError

assert not [m for m in sys.modules if m.split(".")[0] == "amaranth"]
try:
    sparsa.sim.get_backend("soc-amaranth", load_config(sys.argv[1]))
except MissingToolError as exc:
    assert "amaranth" in str(exc), exc
else:
    raise AssertionError("soc-amaranth was made without Amaranth")
print("ok")
"""


def test_host_side_imports_without_amaranth():
    """``sparsa.sim`` and the SoC driver work on a host without Amaranth (its import is blocked)."""
    proc = subprocess.run([sys.executable, "-c", _NO_AMARANTH, str(ROOT / "configs" / "systolic-4x4-2of4.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
