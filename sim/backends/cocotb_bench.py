"""cocotb test module driving the exported accelerator Verilog (run by the Verilator and Icarus backends).

Not imported by user code: :class:`~sparsa.sim.backends.verilator_backend.VerilatorBackend`
starts the simulator with this module as the cocotb test module and exchanges data through
two JSON files named by environment variables:

``SPARSA_COCOTB_STIMULUS``
    ``{"instr": [hex...], "weights": [hex...], "acts": [hex...], "num_outputs": n,
    "idle": {"instr": [...], "weights": [...], "acts": [...], "results": [...]},
    "max_cycles": n, "interrupt": {...} or null}`` - packed beats (see :mod:`sparsa.layout`)
    and the idle cycles before each beat (all zero without stalls).  ``interrupt`` (optional):
    ``{"instr", "weights", "acts", "idle": {...}, "cycles": n, "reset_cycles": r}`` - a first
    program driven for ``n`` cycles after the initial reset, then ``rst`` high for ``r``
    rising edges with every valid / ready low (a reset in mid-run), then the program above.
``SPARSA_COCOTB_RESULT``
    Written on success: ``{"outputs": [hex...], "cycles": n, "ticks": n, "wall_seconds": s}``;
    when the design stopped on an illegal opcode (its ``illegal`` output) also ``"illegal": true``
    and ``"instr_taken": n`` (instruction words accepted), with no check of the other streams.

Testbench structure (Driver / Monitor in one coroutine, for speed): everything happens at
the falling clock edge, in the middle of a cycle.  There the bench reads the DUT's outputs
(registered or functions of its state only - the accelerator's ready/valid never depend on
the partner's valid/ready), drives this cycle's valid/payload/ready, and books the
transfers that the next rising edge performs.  The idle-cycle semantics equal the Amaranth
backend's drivers, so both backends count the same cycles under the same stall plan.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

STIMULUS_ENV = "SPARSA_COCOTB_STIMULUS"
RESULT_ENV = "SPARSA_COCOTB_RESULT"
CLOCK_PERIOD_NS = 10


class _Source:
    """One input stream: beats, idle cycles before each, and the DUT handles."""

    def __init__(self, dut, name: str, beats: list[int], idle: list[int]) -> None:
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.beats = beats
        self.idle = idle
        self.index = 0
        self.wait = idle[0] if beats else 0
        self.driven_payload: "int | None" = None
        self.driven_valid = 0
        self.valid.value = 0

    def cycle(self) -> None:
        """Drive this cycle's valid/payload and book the transfer if the DUT is ready."""
        valid = 0
        if self.index < len(self.beats):
            if self.wait:
                self.wait -= 1
            else:
                valid = 1
                beat = self.beats[self.index]
                if beat != self.driven_payload:
                    self.payload.value = beat
                    self.driven_payload = beat
        if valid != self.driven_valid:
            self.valid.value = valid
            self.driven_valid = valid
        if valid and int(self.ready.value):
            self.index += 1
            if self.index < len(self.beats):
                self.wait = self.idle[self.index]


def _sources(dut, stim: dict) -> "list[_Source]":
    idle = stim["idle"]
    return [_Source(dut, name, [int(x, 16) for x in stim[name]], idle[name]) for name in ("instr", "weights", "acts")]


async def _reset(dut, edges: int) -> None:
    """At a falling edge: ``rst`` high for ``edges`` rising edges, released at the next falling edge."""
    dut.rst.value = 1
    for _ in range(edges):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0   # the next rising edge ends cycle 0


async def _interrupted(dut, stim: dict) -> None:
    """Drive ``stim``'s streams (the sink always ready) for ``stim["cycles"]`` cycles, then reset."""
    sources = _sources(dut, stim)
    dut.results__ready.value = 1
    for _ in range(int(stim["cycles"])):
        if int(dut.done.value):
            break
        for source in sources:
            source.cycle()
        await FallingEdge(dut.clk)
    for source in sources:
        source.valid.value = 0
    dut.results__ready.value = 0
    await _reset(dut, int(stim["reset_cycles"]))


@cocotb.test()
async def run_program(dut):
    """Feed the program's streams until ``done``; write outputs and cycle counts."""
    with open(os.environ[STIMULUS_ENV]) as f:
        stim = json.load(f)
    idle = stim["idle"]
    num_outputs = int(stim["num_outputs"])
    sink_idle = idle["results"]
    max_cycles = int(stim["max_cycles"])

    dut.results__ready.value = 0
    for name in ("instr", "weights", "acts"):
        getattr(dut, f"{name}__valid").value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    await RisingEdge(dut.clk)
    await _reset(dut, 1)
    if stim.get("interrupt"):
        await _interrupted(dut, stim["interrupt"])
    sources = _sources(dut, stim)

    start = time.perf_counter()
    outputs: list[int] = []
    sink_wait = sink_idle[0] if num_outputs else 0
    sink_ready = 0
    ticks = 0
    while not int(dut.done.value):
        for source in sources:
            source.cycle()
        # Sink: not ready for the planned idle cycles, then ready until a beat arrives.
        ready = 0
        if len(outputs) < num_outputs:
            if sink_wait:
                sink_wait -= 1
            else:
                ready = 1
        if ready != sink_ready:
            dut.results__ready.value = ready
            sink_ready = ready
        if ready and int(dut.results__valid.value):
            outputs.append(dut.results__payload.value.to_unsigned())
            if len(outputs) < num_outputs:
                sink_wait = sink_idle[len(outputs)]
        await FallingEdge(dut.clk)
        ticks += 1
        assert ticks <= max_cycles, (
            f"done not raised within {max_cycles} cycles ({len(outputs)}/{num_outputs} result beats, "
            f"{[s.index for s in sources]} input beats accepted)")
    wall = time.perf_counter() - start

    if int(dut.illegal.value):
        # Stopped on an illegal word: the last instruction word accepted (the backend raises
        # IllegalInstructionError; docs/isa.md#illegal-instructions).  Beats left over are expected.
        with open(os.environ[RESULT_ENV], "w") as f:
            json.dump({"illegal": True, "instr_taken": sources[0].index, "outputs": [f"{x:x}" for x in outputs],
                       "cycles": dut.cycles.value.to_unsigned(), "ticks": ticks, "wall_seconds": wall}, f)
        return

    assert len(outputs) == num_outputs, f"received {len(outputs)} result beats, expected {num_outputs}"
    assert all(s.index == len(s.beats) for s in sources), (
        f"input beats left unconsumed: {[(len(s.beats) - s.index) for s in sources]} (instr, weights, acts)")
    result = {
        "outputs": [f"{x:x}" for x in outputs],
        "cycles": dut.cycles.value.to_unsigned(),
        "ticks": ticks,
        "wall_seconds": wall,
    }
    with open(os.environ[RESULT_ENV], "w") as f:
        json.dump(result, f)
