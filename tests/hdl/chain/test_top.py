# amaranth: UnusedElaboratable=no
"""SparseChainAccelerator as a composition: its ports (unchanged by the split into components),
its submodules, argument checks, the generated Verilog's ports, and Verilator lint of every
chain preset.  Behaviour (bit-exact results, cycles = cycle model, stalls, flush tightness) is
covered end to end by tests/chain/ and tests/test_backends.py."""

from __future__ import annotations

import re

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import chain_activation_beat_bits, chain_output_beat_bits, chain_weight_beat_bits
from sparsa.errors import UnsupportedError
from sparsa.hdl.chain.act_buffer import ActivationBuffer
from sparsa.hdl.chain.chain import SparseChain
from sparsa.hdl.chain.controller import ChainController, ChainState
from sparsa.hdl.chain.layouts import chain_act_beat_layout, chain_output_beat_layout, chain_weight_beat_layout
from sparsa.hdl.chain.output_bank import OutputBank
from sparsa.hdl.chain.top import SparseChainAccelerator
from sparsa.hdl.export import generate_verilog
from sparsa.hdl.verilator import lint_verilog
from sparsa.hdl.layouts import instruction_layout
from sparsa.sim.backends.verilator_backend import unavailable_reason

from ...conftest import preset
from ..helpers import expect_error

PRESETS = ["chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"]


def test_ports_are_the_accelerator_interface():
    cfg = preset("chain-8x4-seg")
    dut = SparseChainAccelerator(cfg)
    expected = wiring.Signature({
        "instr": In(stream.Signature(instruction_layout())),
        "weights": In(stream.Signature(chain_weight_beat_layout(cfg))),
        "acts": In(stream.Signature(chain_act_beat_layout(cfg))),
        "results": Out(stream.Signature(chain_output_beat_layout(cfg))),
        "done": Out(1),
        "illegal": Out(1),
        "cycles": Out(32),
        "state": Out(ChainState),
    })
    assert dict(dut.signature.members.items()) == dict(expected.members.items())
    Fragment.get(dut, None)         # elaborates (and so uses the submodules built in __init__)


def test_submodules():
    cfg = preset("chain-4x4-packed")
    dut = SparseChainAccelerator(cfg, flush_cycles=5)
    assert isinstance(dut.controller, ChainController) and dut.controller.flush_cycles == dut.flush_cycles == 5
    assert isinstance(dut.act_buffer, ActivationBuffer) and isinstance(dut.bank, OutputBank)
    assert len(dut.chains) == cfg.cols and all(isinstance(c, SparseChain) for c in dut.chains)
    assert dut.config is cfg
    Fragment.get(dut, None)


def test_arguments_checked():
    cfg = preset("chain-4x4-2of4")
    expect_error(ValueError, "flush_cycles must be a positive integer, not -1",
                 lambda: SparseChainAccelerator(cfg, flush_cycles=-1))
    expect_error(TypeError, "config must be an AcceleratorConfig, not 'chain'", lambda: SparseChainAccelerator("chain"))
    expect_error(UnsupportedError, "SparseChainAccelerator needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: SparseChainAccelerator(preset("systolic-4x4-2of4")))
    expect_error(UnsupportedError, "types.weight='ovp4' is not implemented by the dsp_chain datapath",
                 lambda: SparseChainAccelerator(cfg.with_overrides({"types.weight": "ovp4"})))


def test_generated_verilog_ports(tmp_path):
    cfg = preset("chain-8x2-m16")
    art = generate_verilog(cfg, tmp_path)
    widths = {p.name: (p.direction, p.width) for p in art.ports}
    assert widths == {
        "clk": ("input", 1), "rst": ("input", 1),
        "instr__payload": ("input", 32), "instr__valid": ("input", 1), "instr__ready": ("output", 1),
        "weights__payload": ("input", chain_weight_beat_bits(cfg)), "weights__valid": ("input", 1),
        "weights__ready": ("output", 1),
        "acts__payload": ("input", chain_activation_beat_bits(cfg)), "acts__valid": ("input", 1),
        "acts__ready": ("output", 1),
        "results__payload": ("output", chain_output_beat_bits(cfg)), "results__valid": ("output", 1),
        "results__ready": ("input", 1),
        "done": ("output", 1), "illegal": ("output", 1), "cycles": ("output", 32), "state": ("output", 3),
    }
    text = art.path.read_text()
    # one module per component instance: controller, buffer, bank, chains and their DSP groups
    modules = re.findall(r"^module \\?(\S+) ?\(", text, re.M)
    assert len(modules) == 1 + 3 + cfg.cols * (1 + cfg.chain_groups)


@pytest.mark.verilator
@pytest.mark.parametrize("name", PRESETS)
def test_lint_clean_with_documented_waivers(tmp_path, name):
    problem = unavailable_reason()
    if problem and "verilator" in problem:
        pytest.skip(problem)
    art = generate_verilog(preset(name), tmp_path)
    assert lint_verilog(art.path) == ""
