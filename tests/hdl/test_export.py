"""Verilog export: ports and widths, resource summary vs the elaborated design, Verilator lint."""

from __future__ import annotations

import re

import pytest
from amaranth.back import rtlil

from sparsa.hdl.export import config_hash, generate_verilog, module_name, resource_summary
from sparsa.hdl.verilator import LINT_WAIVERS, LintError, lint_verilog
from sparsa.hdl.top import SparseSystolicAccelerator
from sparsa.sim.backends.verilator_backend import unavailable_reason

from ..conftest import ROOT, preset

SMALL = ["systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4", "systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"]


def _dff_bits(design) -> int:
    """Flip-flop bits of the elaborated design: the widths of every $dff cell in its RTLIL."""
    text = rtlil.convert(design, name="top")
    return sum(int(w) for w in re.findall(r"cell \$dff \S+\n\s+parameter \\WIDTH (\d+)", text))


@pytest.mark.parametrize("name", SMALL)
def test_register_count_matches_elaborated_design(name):
    cfg = preset(name)
    assert resource_summary(cfg).register_bits == _dff_bits(SparseSystolicAccelerator(cfg))


def test_resource_summary_8x8():
    res = resource_summary(preset("systolic-8x8-2of4"))
    assert (res.multipliers, res.multiplier_widths, res.muxes, res.mux_inputs) == (64, (8, 8), 64, 4)
    assert res.accumulator_memory_bits == 256 * 8 * 32 and res.accumulator_shape == (256, 256)
    assert res.register_breakdown["input_skew"] == 4 * 8 * 28
    assert res.as_dict()["register_bits"] == res.register_bits


def test_generate_verilog_ports(tmp_path):
    cfg = preset("systolic-4x4-int4")
    art = generate_verilog(cfg, tmp_path)
    assert art.name == module_name(cfg) == "sparsa_systolic_4x4_int4"
    assert art.path == tmp_path / "sparsa_systolic_4x4_int4.v"
    text = art.path.read_text()
    assert re.search(rf"^module {art.name}\(", text, re.M)
    widths = {p.name: (p.direction, p.width) for p in art.ports}
    assert widths == {
        "clk": ("input", 1), "rst": ("input", 1),
        "instr__payload": ("input", 32), "instr__valid": ("input", 1), "instr__ready": ("output", 1),
        "weights__payload": ("input", cfg.weight_beat_bits), "weights__valid": ("input", 1),
        "weights__ready": ("output", 1),
        "acts__payload": ("input", cfg.activation_beat_bits), "acts__valid": ("input", 1),
        "acts__ready": ("output", 1),
        "results__payload": ("output", cfg.output_beat_bits), "results__valid": ("output", 1),
        "results__ready": ("input", 1),
        "done": ("output", 1), "illegal": ("output", 1), "cycles": ("output", 32),
    }
    for p in art.ports:                                  # every port is declared with that width
        decl = rf"^\s*{p.direction} " + (rf"\[{p.width - 1}:0\] " if p.width > 1 else "") + rf"{p.name};"
        assert re.search(decl, text, re.M), decl
    assert art.config_hash == config_hash(cfg) and len(art.config_hash) == 16
    assert art.port("done").width == 1
    with pytest.raises(KeyError, match="no port 'foo'"):
        art.port("foo")


def test_generate_verilog_rejects_bad_name(tmp_path):
    with pytest.raises(ValueError, match="name must be a Verilog identifier, not '1top'"):
        generate_verilog(preset("systolic-4x4-2of4"), tmp_path, name="1top")


def _need_verilator():
    problem = unavailable_reason()
    if problem and "verilator" in problem:
        pytest.skip(problem)


@pytest.mark.verilator
@pytest.mark.parametrize("name", SMALL)
def test_lint_clean_with_documented_waivers(tmp_path, name):
    _need_verilator()
    art = generate_verilog(preset(name), tmp_path)
    assert lint_verilog(art.path) == ""


@pytest.mark.verilator
def test_lint_reports_unwaived_warnings(tmp_path):
    _need_verilator()
    bad = tmp_path / "bad.v"
    # UNUSEDSIGNAL is waived, an undriven wire is not
    bad.write_text("module bad(input [1:0] a, output [1:0] y);\n  wire [1:0] z;\n  assign y = a & z;\nendmodule\n")
    with pytest.raises(LintError, match="UNDRIVEN"):
        lint_verilog(bad)


def test_waivers_are_documented():
    doc = (ROOT / "docs" / "hdl.md").read_text()
    for rule, reason in LINT_WAIVERS.items():
        assert reason
        assert rule in doc, f"waiver {rule} is not documented in docs/hdl.md"
