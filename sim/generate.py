"""Greedy generation on the machine's rungs: the runtime that chains a model's step programs.

:func:`generate` compiles the prompt's prefill (:class:`sparsa.compiler.model.ModelMachine`), runs
it on the ISA or cycle rung (:func:`sparsa.sim.machine.run_machine`) over one device memory that
persists between steps (weights, KV caches), reads the logits back, takes the greedy argmax, and
compiles and runs one decode step per further token.  Regions a step adds to the device plan (the
one-row weight images the first decode step compiles) are appended to the running memory; regions
already there (the KV caches) keep what the earlier steps wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsa.compiler.model import ModelMachine, dm_traffic
from sparsa.config import AcceleratorConfig
from sparsa.errors import ShapeError
from sparsa.machine.timing import UNITS
from sparsa.models.block.lm import IntLM, greedy
from sparsa.sim.machine import RUNGS, run_machine

__all__ = ["GenerationRun", "generate"]


@dataclass
class GenerationRun:
    """What a generation on the machine did: the new token ids, the cycles of each step (cycle rung:
    counted; ISA rung: the contract's count), device-memory bytes by kind and instruction bytes."""

    tokens: list[int] = field(default_factory=list)
    prefill_cycles: int = 0
    decode_cycles: list[int] = field(default_factory=list)
    cycles_by_unit: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNITS, 0))
    offchip_bytes: dict[str, int] = field(default_factory=dict)
    instruction_bytes: int = 0
    vmem_peak: int = 0


def generate(config: AcceleratorConfig, model: IntLM, prompt: "list[int] | np.ndarray", new_tokens: int,
             rung: str = "cycle") -> GenerationRun:
    """Generate ``new_tokens`` ids after ``prompt`` on the machine, greedily.

    Raises
    ------
    ShapeError
        An empty prompt, ids outside the vocabulary, or more positions than the model holds.
    ConfigError, UnsupportedError
        A config the machine cannot run the model on (before any step runs).
    """
    ids = model.check_generation(prompt, new_tokens)
    if rung not in RUNGS:
        raise ShapeError(f"rung must be one of {', '.join(RUNGS)}, not {rung!r}")
    mm = ModelMachine(config, model)
    run = GenerationRun(offchip_bytes={})
    dm = bytearray()
    step_ids, start = ids, 0
    for _ in range(new_tokens):
        prog = mm.step(step_ids, start)
        dm += mm.plan.dm.image[len(dm):]                  # regions this step added (zero or initial bytes)
        words = prog.words()
        r = run_machine(config, words, dm, mm.plan.programs, rung, copy=False)
        run.tokens.append(greedy(mm.read_logits(dm)))
        if start == 0:
            run.prefill_cycles = r.cycles
        else:
            run.decode_cycles.append(r.cycles)
        for u in UNITS:
            run.cycles_by_unit[u] += r.cycles_by_unit[u]
        for kind, nbytes in dm_traffic(prog.instructions, mm.plan).items():
            run.offchip_bytes[kind] = run.offchip_bytes.get(kind, 0) + nbytes
        run.instruction_bytes += 4 * len(words)
        run.vmem_peak = max(run.vmem_peak, prog.vmem_peak)
        start += len(step_ids)
        step_ids = np.array([run.tokens[-1]])
    return run
