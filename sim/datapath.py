"""The simulator floor of the matrix-datapath interface (see :mod:`sparsa.datapath`).

Each matrix datapath provides its ISA interpreter rung, its cycle-accurate model, its GEMM
estimate (built on the compiler's schedule and the core timing contract) and its resource
usage; :func:`sim_datapath` finds them by ``datapath.kind``.  The backends and the estimator
call these and never branch on the kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.sim import chain, cycle, estimator, interpreter

__all__ = ["SimDatapath", "SIM_DATAPATHS", "sim_datapath"]


@dataclass(frozen=True)
class SimDatapath:
    """What one matrix datapath provides to the simulators and the estimator.

    Attributes
    ----------
    kind : str
        ``datapath.kind``.
    interpret : callable
        ``(config, program, a, scales) -> Y``: the ISA-interpreter rung, fed with exactly the
        beats the hardware's streams get.
    cycle_model : callable
        ``(config) -> model`` whose ``run_program(program, a, scales)`` returns ``(Y, CycleStats)``.
    estimate_gemm : callable
        Same arguments as :func:`sparsa.sim.estimator.estimate_gemm` (with every keyword given).
    resource_usage : callable
        ``(config) -> {"dsp": ..., "memory_kbit": ...}``.
    stream_interpreter : callable
        ``(config) -> interpreter`` whose ``run(words, weight_beats, act_beats)`` executes an
        instruction stream on unpacked stream beats and returns the state (``.outputs``).
    activity_groups : mapping
        Regexes (on the exported design's signal paths) of the signals each energy component is
        counted from in an RTL activity run (:func:`sparsa.sim.activity.activity_energy`): ``mac``
        product registers, ``registers`` pipeline registers, ``ports`` memory-port enables (an
        access per clock edge it is high, of its data signal's width), ``streams`` the input
        streams (``..__valid``: a beat per edge with valid and ready, of the payload's width).
    cycle_causes : callable or None
        ``(config, m, k, n, pattern) -> {cause: cycles}``: one GEMM's cycles by cause (useful
        beats, idle PE rows, flush, ...), summing to its program's cycles; ``None`` where the
        datapath has no such breakdown yet.
    """

    kind: str
    interpret: Callable[..., Any]
    cycle_model: Callable[[AcceleratorConfig], Any]
    estimate_gemm: Callable[..., Any]
    resource_usage: Callable[[AcceleratorConfig], dict[str, float]]
    stream_interpreter: Callable[[AcceleratorConfig], Any]
    activity_groups: Mapping[str, str]
    cycle_causes: Callable[..., dict[str, float]] | None = None


#: Every matrix datapath's simulator pieces, by ``datapath.kind``.
SIM_DATAPATHS: dict[str, SimDatapath] = {
    "systolic": SimDatapath("systolic", interpreter.interpret_program, cycle.CycleModel,
                            estimator.estimate_systolic_gemm, estimator.systolic_resource_usage,
                            interpreter.Interpreter, cycle.ACTIVITY_GROUPS, estimator.systolic_cycle_causes),
    "dsp_chain": SimDatapath("dsp_chain", chain.interpret_program, chain.ChainCycleModel,
                             estimator.estimate_chain_gemm, estimator.chain_resource_usage,
                             chain.ChainInterpreter, chain.ACTIVITY_GROUPS),
}


def sim_datapath(config: AcceleratorConfig) -> SimDatapath:
    """The simulator pieces of ``config``'s datapath."""
    return SIM_DATAPATHS[matrix_datapath(config).kind]
