"""Run a program on the Amaranth simulation of :class:`~sparsa.hdl.top.SparseSystolicAccelerator`.

Three source testbenches (instructions, weights, activations) and one sink (results) drive
the accelerator's streams; a fourth testbench counts clock ticks until ``done``.  Beats are
packed once with :mod:`sparsa.layout`, so the HDL sees exactly the bits the other backends
see.  With ``stall_seed`` set the sources insert seeded random idle cycles and the sink
seeded random not-ready cycles: the outputs must stay bit-exact while the cycle count grows.

The same harness (:func:`run_streams`) is used by the HDL tests with extra monitor
testbenches (stream-protocol checks) and modified designs (e.g. a shortened flush).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, MissingToolError, SparsaError
from sparsa.isa import decode, illegal_instruction
from sparsa.datapath import matrix_datapath
from sparsa.sim.backends.base import Result

try:
    from amaranth.sim import Simulator
except ModuleNotFoundError:  # pragma: no cover - exercised only without the [hdl] extra
    raise MissingToolError("the amaranth backend needs Amaranth 0.5: pip install 'sparsa[hdl]'") from None

from sparsa.hdl.datapath import hdl_datapath
from sparsa.hdl.top import SparseSystolicAccelerator

__all__ = ["AmaranthBackend", "StreamRun", "run_streams", "SimulationError", "SimulationTimeout",
           "pack_program", "program_scales", "stall_plans", "idle_plan", "default_max_cycles"]

#: Clock period used for the simulation (only matters for waveform files).
CLOCK_PERIOD = 1e-8


class SimulationError(SparsaError, RuntimeError):
    """The simulated design misbehaved (wrong number of beats consumed or produced)."""


class SimulationTimeout(SimulationError):
    """The design did not raise ``done`` within the cycle budget."""


class StreamRun:
    """What :func:`run_streams` observed.

    Attributes
    ----------
    outputs : list[int]
        Result-stream payloads in arrival order (raw integers, ``output_beat_bits`` wide).
    cycles : int
        The accelerator's ``cycles`` register once ``done`` rose.
    ticks : int
        Clock edges the testbench counted from reset release until ``done`` was seen.
    wall_seconds : float
        Wall-clock time of the simulation.
    """

    def __init__(self, outputs: list[int], cycles: int, ticks: int, wall_seconds: float) -> None:
        self.outputs = outputs
        self.cycles = cycles
        self.ticks = ticks
        self.wall_seconds = wall_seconds


def idle_plan(rng: "np.random.Generator | None", count: int) -> list[int]:
    """Idle cycles before each of ``count`` beats: none without ``rng``, else 1-3 on 40% of beats."""
    if rng is None or count == 0:
        return [0] * count
    stall = rng.random(count) < 0.4
    lengths = rng.integers(1, 4, size=count)
    return [int(n) if s else 0 for s, n in zip(stall, lengths)]


def stall_plans(stall_seed: "int | None", counts: Sequence[int]) -> list[list[int]]:
    """Idle cycles before every beat of each stream (instr, weights, acts, results).

    The Amaranth and the Verilator backends use the same plans, so with the same
    ``stall_seed`` they must count the same cycles.
    """
    if stall_seed is None:
        return [[0] * n for n in counts]
    seeds = np.random.SeedSequence(stall_seed).spawn(len(counts))
    return [idle_plan(np.random.default_rng(seed), n) for seed, n in zip(seeds, counts)]


def default_max_cycles(config: AcceleratorConfig, plans: Sequence[Sequence[int]]) -> int:
    """A cycle budget no correct run exceeds: every word a COMPUTE with a flush, plus every beat and stall."""
    words, weights, acts, outputs = (len(p) for p in plans)
    flush = matrix_datapath(config).scale_stage_latency(config)
    nominal = words * (1 + config.rows + config.cols + flush) + weights + acts + outputs
    return nominal + sum(sum(p) for p in plans) + 1000


def pack_program(program: Any, a: np.ndarray,
                 scales: "np.ndarray | None" = None) -> tuple[list[int], list[int], list[int]]:
    """Pack a program's three input streams: instruction words, weight beats, activation beats.

    ``scales`` (``S[m, scale_groups]``) is required by programs with activation scales: their
    LOAD_S beats travel on the activation stream (:meth:`Program.activation_beats`).
    """
    cfg = program.config
    contract = matrix_datapath(cfg)
    words = [int(w) for w in program.instruction_words()]
    weights = [contract.pack_weight_beat(cfg, v, i) for v, i in program.weight_beats()]
    acts = [contract.pack_activation_beat(cfg, lanes) for lanes in program.activation_beats(a, scales)]
    return words, weights, acts


def program_scales(program: Any, tensors: Mapping[str, np.ndarray]) -> "np.ndarray | None":
    """The checked scale mantissas ``"S"`` of a program (``None`` for programs without scales)."""
    return program.check_scales(tensors)


def run_streams(
    dut: SparseSystolicAccelerator,
    words: Sequence[int],
    weight_beats: Sequence[int],
    act_beats: Sequence[int],
    num_outputs: int,
    *,
    stall_seed: "int | None" = None,
    max_cycles: "int | None" = None,
    monitors: Sequence[Callable] = (),
    vcd_path: "str | None" = None,
) -> StreamRun:
    """Simulate ``dut`` fed with the given stream contents until it raises ``done``.

    Parameters
    ----------
    dut : SparseSystolicAccelerator
        The design (built by the caller, so tests can pass modified ones).
    words, weight_beats, act_beats : sequence of int
        Packed beats of the three input streams.
    num_outputs : int
        Result beats the sink accepts.
    stall_seed : int, optional
        Seed of the random source idle / sink not-ready cycles (none when ``None``).
    max_cycles : int, optional
        Give up (raise :exc:`SimulationTimeout`) after this many cycles; default: a bound
        derived from the stream lengths.
    monitors : sequence of callables
        Extra ``async def monitor(ctx)`` testbenches, added as background testbenches.
    vcd_path : str, optional
        Write a waveform file.

    Returns
    -------
    StreamRun

    Raises
    ------
    IllegalInstructionError
        The design stopped on an illegal word (unassigned opcode or unused bits set) (``.cycles``: its cycle counter).
    SimulationError
        The design raised ``done`` with beats left over or missing.
    """
    cfg = dut.config
    plans = stall_plans(stall_seed, (len(words), len(weight_beats), len(act_beats), num_outputs))
    if max_cycles is None:
        max_cycles = default_max_cycles(cfg, plans)

    outputs: list[int] = []
    accepted = [0, 0, 0]
    observed: dict[str, int] = {}

    def source(port, beats: Sequence[int], idle: Sequence[int], slot: int):
        payload = port.payload.as_value() if hasattr(port.payload, "as_value") else port.payload

        async def testbench(ctx):
            for beat, wait in zip(beats, idle):
                for _ in range(wait):
                    await ctx.tick()
                ctx.set(payload, beat)
                ctx.set(port.valid, 1)
                # ``done`` ends the wait too: a design that stopped early (an illegal opcode)
                # never takes the rest, and a driver left waiting is what the sim complains about.
                taken, = await ctx.tick().sample(port.ready).until(port.ready | dut.done)
                ctx.set(port.valid, 0)
                if not taken:
                    return
                accepted[slot] += 1
        return testbench

    async def sink(ctx):
        port = dut.results
        payload = port.payload.as_value()
        for wait in plans[3]:
            for _ in range(wait):
                await ctx.tick()
            ctx.set(port.ready, 1)
            value, valid = await ctx.tick().sample(payload, port.valid).until(port.valid | dut.done)
            ctx.set(port.ready, 0)
            if not valid:
                return
            outputs.append(int(value))

    async def watch_done(ctx):
        ticks = 0
        while not ctx.get(dut.done):
            await ctx.tick()
            ticks += 1
            if ticks > max_cycles:
                raise SimulationTimeout(
                    f"done not raised within {max_cycles} cycles (state {ctx.get(dut.controller.state)!r}, "
                    f"{accepted} instr/weight/act beats accepted, {len(outputs)}/{num_outputs} result beats)")
        observed["ticks"] = ticks
        observed["cycles"] = ctx.get(dut.cycles)
        observed["illegal"] = ctx.get(dut.illegal)
        await ctx.tick()        # lets drivers still offering beats see done and return

    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    # Only the done watcher is critical: a design that stops early (or never asks for a
    # beat) ends the run instead of leaving a driver waiting forever.
    sim.add_testbench(source(dut.instr, list(words), plans[0], 0), background=True)
    sim.add_testbench(source(dut.weights, list(weight_beats), plans[1], 1), background=True)
    sim.add_testbench(source(dut.acts, list(act_beats), plans[2], 2), background=True)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(watch_done)
    for monitor in monitors:
        sim.add_testbench(monitor, background=True)
    start = time.perf_counter()
    if vcd_path:
        with sim.write_vcd(vcd_path):
            sim.run()
    else:
        sim.run()
    wall = time.perf_counter() - start
    if observed["illegal"]:
        # The controller stopped on the last word it accepted (docs/isa.md#illegal-instructions).
        index = accepted[0] - 1
        raise illegal_instruction(index, words[index], cycles=observed["cycles"])
    expected = [len(words), len(weight_beats), len(act_beats)]
    if accepted != expected or len(outputs) != num_outputs:
        raise SimulationError(
            f"done after {observed['ticks']} cycles but the design accepted {accepted} of {expected} "
            f"instr/weight/act beats and produced {len(outputs)} of {num_outputs} result beats")
    return StreamRun(outputs, observed["cycles"], observed["ticks"], wall)


def make_dut(config: AcceleratorConfig):
    """The top-level design of ``config``'s datapath (systolic array or DSP chain)."""
    return hdl_datapath(config).top(config)


def unpack_outputs(config: AcceleratorConfig, outputs: Sequence[int]) -> np.ndarray:
    """Output-stream payloads as a ``(beats, lanes)`` int64 array (lanes: ``cols``, chain: ``P * cols``)."""
    contract = matrix_datapath(config)
    lanes = contract.output_lanes(config)
    beats = [contract.unpack_output_beat(config, w) for w in outputs]
    return np.array(beats, dtype=np.int64).reshape(len(outputs), lanes)


def nominal_cycles(config: AcceleratorConfig, words: Sequence[int]) -> int:
    """Cycles of the instruction words by the datapath's timing contract (no stalls)."""
    return matrix_datapath(config).program_cycles(config, (decode(w) for w in words))


class AmaranthBackend:
    """Backend running the Amaranth simulation of the HDL.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator to simulate.
    stall_seed : int, optional
        Insert seeded random stalls on every stream (outputs stay bit-exact; cycles grow).

    Examples
    --------
    >>> be = AmaranthBackend(cfg)                          # doctest: +SKIP
    >>> be.run(compile_gemm(cfg, W, 8), {"A": A}).outputs["Y"]  # doctest: +SKIP
    """

    name = "amaranth"

    def __init__(self, config: AcceleratorConfig, stall_seed: "int | None" = None) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if stall_seed is not None and (not isinstance(stall_seed, int) or isinstance(stall_seed, bool)
                                       or stall_seed < 0):
            raise ValueError(f"stall_seed must be a non-negative integer or None, not {stall_seed!r}")
        config.require_supported()
        self.config = config
        self.stall_seed = stall_seed

    def run(self, program: Any, tensors: Mapping[str, np.ndarray]) -> Result:
        """Simulate ``program`` on ``tensors["A"]`` (and ``"S"`` with activation scales); return ``Y``,
        the RTL cycle count and stats."""
        if program.config != self.config:
            raise ConfigError(
                f"program was compiled for config {program.config.name!r}, this backend simulates "
                f"{self.config.name!r}")
        a = program.check_inputs(tensors)
        words, weights, acts = pack_program(program, a, program_scales(program, tensors))
        dut = make_dut(self.config)
        run = run_streams(dut, words, weights, acts, program.num_output_beats, stall_seed=self.stall_seed)
        beats = unpack_outputs(self.config, run.outputs)
        y = program.collect_outputs(beats)
        nominal = nominal_cycles(self.config, words)
        stats = {
            "cycles_measured": run.ticks,
            "cycles_nominal": nominal,
            "stall_seed": self.stall_seed,
            "wall_seconds": run.wall_seconds,
            "cycles_per_second": run.ticks / run.wall_seconds if run.wall_seconds > 0 else None,
        }
        return Result(outputs={"Y": y}, cycles=run.cycles, stats=stats)
