"""The NumPy-only backends: reference, ISA interpreter and cycle model."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from sparsa.compiler.program import Program
from sparsa.config import AcceleratorConfig
from sparsa.models.reference import gemm_reference
from sparsa.sim.backends.base import Result
from sparsa.sim.cycle import CycleModel
from sparsa.sim.interpreter import Interpreter

__all__ = ["ReferenceBackend", "ISABackend", "CycleBackend"]


class _Base:
    name = "base"

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
        self.config = config


class ReferenceBackend(_Base):
    """The NumPy golden: ``wrap(A @ W_pruned)`` straight from the program's weights, no tiling."""

    name = "reference"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        a = program.check_inputs(tensors)
        y = gemm_reference(a, program.weights, self.config.accumulator_bits)
        return Result({"Y": y}, None, {})


class ISABackend(_Base):
    """The ISA interpreter fed with exactly the beats the hardware streams get."""

    name = "isa"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        a = program.check_inputs(tensors)
        if self.config.is_chain:
            from sparsa.sim.chain import ChainInterpreter

            state = ChainInterpreter(self.config).run(program.instruction_words(), program.weight_beats(),
                                                      program.activation_beats(a))
            beats = np.asarray(state.outputs, dtype=np.int64).reshape(-1, program.output_lanes)
            return Result({"Y": program.collect_outputs(beats)}, None, {})
        state = Interpreter(self.config).run(program.instruction_words(), program.weight_beats(),
                                             program.activation_beats(a))
        y = program.collect_outputs(np.asarray(state.outputs, dtype=np.int64).reshape(-1, self.config.cols))
        return Result({"Y": y}, None, {})


class CycleBackend(_Base):
    """The cycle-accurate model."""

    name = "cycle"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        t0 = time.perf_counter()
        if self.config.is_chain:
            from sparsa.sim.chain import ChainCycleModel

            model = ChainCycleModel(self.config)
        else:
            model = CycleModel(self.config)
        y, stats = model.run_program(program, program.check_inputs(tensors))
        info = stats.as_dict()
        info["wall_s"] = time.perf_counter() - t0
        return Result({"Y": y}, stats.cycles, info)
