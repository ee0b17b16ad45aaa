"""The NumPy-only backends: reference, ISA interpreter and cycle model."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from sparsa.compiler.program import Program
from sparsa.config import AcceleratorConfig
from sparsa.models.reference import gemm_reference, wrap_exact
from sparsa.sim.backends.base import Result
from sparsa.sim.datapath import sim_datapath

__all__ = ["ReferenceBackend", "ISABackend", "CycleBackend"]


class _Base:
    name = "base"

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
        self.config = config


class ReferenceBackend(_Base):
    """The NumPy golden: ``wrap(A @ W_pruned)`` straight from the program's weights, no tiling.

    With activation scales: ``wrap(sum_g S[:, g] * (A_g @ W_g))`` by
    :func:`sparsa.formats.actscale.scaled_gemm_reference` (exact, then wrapped).
    """

    name = "reference"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        a = program.check_inputs(tensors)
        s = program.check_scales(tensors)
        if s is None:
            y = gemm_reference(a, program.weights, self.config.accumulator_bits)
        else:
            from sparsa.formats.actscale import ScaledActivations, scaled_gemm_reference

            spec = self.config.act_scale.spec
            exact = scaled_gemm_reference(ScaledActivations(a, s, 0, spec), program.weights.T, spec)
            y = wrap_exact(exact, self.config.accumulator_bits)
        return Result({"Y": y}, None, {})


class ISABackend(_Base):
    """The ISA interpreter fed with exactly the beats the hardware streams get."""

    name = "isa"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        a = program.check_inputs(tensors)
        y = sim_datapath(self.config).interpret(self.config, program, a, program.check_scales(tensors))
        return Result({"Y": y}, None, {})


class CycleBackend(_Base):
    """The cycle-accurate model."""

    name = "cycle"

    def run(self, program: Program, tensors: Mapping[str, np.ndarray]) -> Result:
        t0 = time.perf_counter()
        model = sim_datapath(self.config).cycle_model(self.config)
        y, stats = model.run_program(program, program.check_inputs(tensors), program.check_scales(tensors))
        info = stats.as_dict()
        info["wall_s"] = time.perf_counter() - t0
        return Result({"Y": y}, stats.cycles, info)
