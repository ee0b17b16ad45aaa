"""A count of 0 is legal on every rung and means what the controllers do with it.

COMPUTE 0 runs only the flush (no beat, no accumulator row written), DRAIN 0 and LOAD_S 0 only
the fetch, LOAD_A 0 (DSP chain) latches the segment count and keeps the k-tiles.  A compiled
program with such a word inserted gives the same ``Y`` on every rung, and every timed rung counts
the original cycles plus exactly the word's :func:`instruction_cycles` (docs/isa.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.datapath import matrix_datapath
from sparsa.isa import Instruction, Opcode, decode, encode
from sparsa.sim import get_backend

from .conftest import preset
from .rtl import rtl_backend
from .test_illegal_instruction import Tampered

#: (config, zero-count word): every opcode with a count, on a datapath that executes it.
CASES = [
    ("systolic-4x4-2of4", Instruction(Opcode.COMPUTE, 0)),
    ("systolic-4x4-2of4", Instruction(Opcode.COMPUTE, 0, accumulate=True)),
    ("systolic-4x4-2of4", Instruction(Opcode.DRAIN, 0)),
    ("systolic-4x4-token", Instruction(Opcode.LOAD_S, 0)),
    ("chain-4x4-2of4", Instruction(Opcode.COMPUTE, 0)),
    ("chain-4x4-2of4", Instruction(Opcode.DRAIN, 0)),
    ("chain-4x4-2of4", Instruction(Opcode.LOAD_A, 0)),
]


def _program(cfg, seed: int = 5):
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    m, k, n = 5, 4 * cfg.rows, 2 * cfg.cols + 1
    a, w = rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))
    program = compile_gemm(cfg, w, m)
    tensors = {"A": a}
    if cfg.act_scale.granularity != "tensor":
        tensors["S"] = rng.integers(1, 1 << cfg.act_scale.mantissa_bits, (m, program.scale_groups))
    return program, tensors


def _inserted(program, instr: Instruction) -> list[Tampered]:
    """The program with ``instr`` inserted before every word whose opcode it shares, and before HALT."""
    words = [int(w) for w in program.instruction_words()]
    spots = [i for i, w in enumerate(words) if decode(w).op in (instr.op, Opcode.HALT)]
    return [Tampered(program, i, encode(instr)) for i in (spots[0], spots[len(spots) // 2], spots[-1])]


@pytest.mark.parametrize("config,instr", CASES, ids=[f"{c}-{i}".replace(" ", "_") for c, i in CASES])
@pytest.mark.parametrize("backend", ["isa", "cycle", "amaranth", "verilator"])
def test_a_zero_count_word_changes_nothing_but_its_cycles(config, instr, backend):
    cfg = preset(config)
    program, tensors = _program(cfg)
    run = (get_backend(backend, cfg) if backend in ("isa", "cycle") else rtl_backend(backend, cfg)).run
    base = run(program, tensors)
    want = get_backend("reference", cfg).run(program, tensors).outputs["Y"]
    assert np.array_equal(base.outputs["Y"], want)
    extra = matrix_datapath(cfg).program_cycles(cfg, [instr])
    assert extra == 1 + (matrix_datapath(cfg).program_cycles(cfg, [Instruction(Opcode.COMPUTE, 1)]) - 2
                         if instr.op is Opcode.COMPUTE else 0)
    for tampered in _inserted(program, instr):
        got = run(tampered, tensors)
        assert np.array_equal(got.outputs["Y"], want), (tampered.index, str(instr))
        if base.cycles is not None:
            assert got.cycles == base.cycles + extra, (tampered.index, str(instr))
