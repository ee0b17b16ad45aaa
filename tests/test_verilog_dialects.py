"""The exported Verilog in every language mode and simulator: Icarus Verilog ``-g2005`` and
``-g2012`` (SystemVerilog, what cocotb's Icarus runner uses) and Verilator.

Nothing may depend on the time-0 evaluation of combinational blocks (docs/hdl.md, "Verilog
dialects and simulators"): :func:`sparsa.hdl.export.reset_triggered` makes every ``always @*``
block read a wire driven by ``rst``.  On the simulated presets (systolic, OVP-4, activation
scales, DSP chain), each simulator must give bit-exact outputs and the cycle model's cycles,
and with random stalls plus a reset in mid-run (a first program interrupted, then the program
from its first beat) the same outputs and the Amaranth simulator's cycles under the same
stall plan.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.hdl.export import reset_triggered
from sparsa.models.reference import gemm_reference
from sparsa.sim.cycle import program_cycles

from .conftest import preset
from .rtl import require_simulator, rtl_backend

# ---------------------------------------------------------------------------- the export rewrite

_YOSYS = """module \\top.sub (a, clk, rst, y);
  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  input a;
  input clk;
  input rst;
  output y;
  reg y;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    y = 1'h0;
    casez (a)
      1'h1:
          y = 1'h1;
    endcase
  end
endmodule
module comb (a, y);
  assign y = a;
endmodule
"""


def test_reset_triggered_drives_yosys_trigger_from_rst():
    text = reset_triggered(_YOSYS)
    assert "wire \\$auto$verilog_backend.cc:2355:dump_module$1  = rst;" in text
    assert "reg \\$auto" not in text
    assert text.replace("wire \\$auto$verilog_backend.cc:2355:dump_module$1  = rst;",
                        "reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;") == _YOSYS


def test_reset_triggered_refuses_comb_processes_without_reset():
    bad = _YOSYS.replace("(a, clk, rst, y)", "(a, clk, y)")
    with pytest.raises(ValueError, match=r"module \\top.sub has combinational processes \(always @\*\) but no rst"):
        reset_triggered(bad)
    untriggered = _YOSYS.replace("    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n", "")
    with pytest.raises(ValueError, match="does not read Yosys' time-0 trigger"):
        reset_triggered(untriggered)
    with pytest.raises(TypeError, match="text must be a str, not bytes"):
        reset_triggered(b"module")


PRESETS = {"systolic-4x4-2of4": "2:4", "systolic-4x4-ovp4-ovp4": "2:4", "systolic-4x4-token": "1:4",
           "chain-4x4-2of4": "2:4"}


@pytest.mark.parametrize("config", sorted(PRESETS))
def test_exported_comb_processes_all_reset_triggered(config, tmp_path):
    """Every module of the exported file: each always @* reads the module's rst-driven trigger."""
    pytest.importorskip("amaranth")
    from sparsa.hdl.export import generate_verilog

    text = generate_verilog(preset(config), tmp_path).path.read_text()
    modules = re.findall(r"^module .*?^endmodule", text, re.M | re.S)
    assert modules
    for module in modules:
        triggers = re.findall(r"wire (\\\$auto\$verilog_backend\S+)  = rst;", module)
        assert "reg \\$auto$verilog_backend" not in module
        if "always @*" in module:
            assert len(triggers) == 1
            assert module.count("always @*") == module.count(f"if ({triggers[0]} ) begin end")


# ---------------------------------------------------------------------------- simulations

SIMULATORS = [pytest.param("icarus", "2005", marks=pytest.mark.icarus, id="icarus-g2005"),
              pytest.param("icarus", "2012", marks=pytest.mark.icarus, id="icarus-g2012"),
              pytest.param("verilator", None, marks=pytest.mark.verilator, id="verilator")]


def _program(config):
    cfg = preset(config)
    rng = np.random.default_rng(17)
    m, k, n = 3, 24, cfg.cols + 2
    if cfg.weight_is_ovp:
        from .test_ovp_hw import ovp_operands

        a, w = ovp_operands(cfg, m, k, n, 17)
    else:
        wb, ab = cfg.weight_bits, cfg.activation_bits
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n))
        a = rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k))
    program = compile_gemm(cfg, w, m, PRESETS[config])
    tensors = {"A": a}
    expected = gemm_reference(a, program.weights, cfg.accumulator_bits)
    if getattr(program, "scaled", False):
        from sparsa.formats import actscale
        from sparsa.models.reference import wrap_exact

        s = rng.integers(0, 1 << cfg.act_scale.mantissa_bits, size=(m, program.scale_groups))
        tensors["S"] = s
        spec = cfg.act_scale.spec
        exact = actscale.scaled_gemm_reference(actscale.ScaledActivations(a, s, 0, spec), program.weights.T, spec)
        expected = wrap_exact(exact, cfg.accumulator_bits)
    return cfg, program, tensors, expected


def _backend(simulator, language, cfg, **options):
    if simulator == "icarus":
        require_simulator("icarus")
        return rtl_backend("icarus", cfg, language=language, **options)
    return rtl_backend(simulator, cfg, **options)


@pytest.mark.parametrize("simulator,language", SIMULATORS)
@pytest.mark.parametrize("config", sorted(PRESETS))
def test_bit_and_cycle_exact_with_stalls_and_reset_in_mid_run(simulator, language, config):
    cfg, program, tensors, expected = _program(config)
    plain = _backend(simulator, language, cfg, stall_seed=None).run(program, tensors)
    np.testing.assert_array_equal(plain.outputs["Y"], expected)
    assert plain.cycles == program_cycles(program)

    # Random stalls on every stream, and a reset 25 cycles into a first (different) program.
    stalled = _backend(simulator, language, cfg, stall_seed=3, reset_after=25).run(program, tensors)
    np.testing.assert_array_equal(stalled.outputs["Y"], expected)
    amaranth = rtl_backend("amaranth", cfg, stall_seed=3).run(program, tensors)
    assert stalled.cycles == amaranth.cycles > plain.cycles
    assert stalled.stats["reset_after"] == 25


def test_reset_after_is_checked():
    cfg = preset("systolic-4x4-2of4")
    require_simulator("icarus")
    from sparsa.sim.backends.icarus_backend import IcarusBackend

    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=rf"reset_after must be a positive integer \(cycles\) or None, not {bad!r}"):
            IcarusBackend(cfg, reset_after=bad)
    with pytest.raises(ValueError, match="language must be one of 2005, 2005-sv, 2009, 2012, not '2017'"):
        IcarusBackend(cfg, language="2017")


def test_missing_icarus_says_how_to_install(monkeypatch):
    import shutil

    from sparsa.errors import MissingToolError
    from sparsa.sim.backends import icarus_backend

    pytest.importorskip("cocotb")
    real_which = shutil.which
    monkeypatch.setattr(icarus_backend.shutil, "which", lambda tool: None if tool == "iverilog" else real_which(tool))
    with pytest.raises(MissingToolError, match=r"needs Icarus Verilog \(iverilog is not on PATH\): apt-get install iverilog"):
        icarus_backend.IcarusBackend(preset("systolic-4x4-2of4"))
    assert "apt-get install iverilog" in icarus_backend.unavailable_reason()


def _break_the_trigger_check(monkeypatch):
    """Force the reset-trigger check to fail on real Yosys output: its pattern for Yosys' time-0
    trigger declaration matches nothing, so every module with an ``always @*`` has 0 triggers."""
    import re

    from sparsa.hdl import export

    monkeypatch.setattr(export, "_TRIGGER_DECL", re.compile(r"(?P<indent>)(?P<name>)\Z(?!x)x"))


def test_reset_check_failure_is_an_export_error_naming_the_module(monkeypatch):
    from sparsa.errors import ExportError, SparsaError
    from sparsa.hdl.export import reset_triggered

    with pytest.raises(ExportError) as info:
        reset_triggered(_YOSYS.replace("(a, clk, rst, y)", "(a, clk, y)"))
    assert isinstance(info.value, SparsaError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("command", ["verilog", "build"])
def test_cli_reports_a_failed_reset_check_on_one_line(command, monkeypatch, tmp_path, capsys):
    """``sparsa verilog`` and ``sparsa build`` print the failed check as one ``error:`` line, exit 2,
    no traceback, no Verilog written.  (``build`` on a Xilinx board: its export converts the SoC
    before any tool runs; the ECP5 flow hands Yosys RTLIL, not this Verilog.)"""
    from sparsa import cli

    _break_the_trigger_check(monkeypatch)
    out = tmp_path / "out"
    if command == "verilog":
        argv = ["verilog", "configs/systolic-4x4-2of4.yaml", "-o", str(out)]
    else:
        argv = ["build", "configs/systolic-4x4-2of4.yaml", "--board", "u280", "-o", str(out)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.match(r"error: Verilog export of \S+ failed its reset-trigger check, nothing written: module \S+ has "
                    r"combinational processes \(always @\*\) but 0 Yosys time-0 triggers \(expected 1\)", err), err
    assert not list(out.rglob("*.v")) if out.exists() else True
