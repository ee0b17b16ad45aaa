"""Tampered programs: an illegal word stops every rung the same way (docs/isa.md#illegal-instructions).

A compiled program gets one extra instruction word with an unassigned opcode, or with an assigned
opcode and a bit set that the opcode does not use (reserved bits, ``accumulate`` on a DRAIN, a
count on HALT, ...) - as the first word, or in the middle - exactly what editing ``instr.hex`` does.  Every rung that executes
instructions raises :class:`IllegalInstructionError` with the same message; the timed rungs
report the same stop cycle (the words before it plus one fetch), and the reference (which never
reads the instructions) still returns the untampered GEMM's ``Y``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsa.compiler import compile_gemm
from sparsa.datapath import matrix_datapath
from sparsa.errors import FormatError, IllegalInstructionError
from sparsa.isa import (FIELDS, INSTRUCTION_BITS, OPERANDS, Instruction, Opcode, decode, encode, field_mask,
                        illegal_instruction, is_legal_opcode, unused_mask)
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend

from .conftest import preset
from .rtl import rtl_backend

FAST = ["isa", "cycle"]
RTL = ["amaranth", "verilator"]


class Tampered:
    """A compiled program whose instruction words have ``word`` inserted at ``index`` (as an
    edited ``instr.hex`` would have); everything else is the original program's."""

    def __init__(self, program, index: int, word: int) -> None:
        self._program = program
        self.index = index
        self.word = word

    def __getattr__(self, name):
        return getattr(self._program, name)

    def instruction_words(self) -> list[int]:
        words = [int(w) for w in self._program.instruction_words()]
        words.insert(self.index, self.word)
        return words


def _gemm(cfg, m=3, k=8, n=6, seed=3):
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    a, w = rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))
    return compile_gemm(cfg, w, m), a


def _tampered(cfg, where: str, opcode: int):
    program, a = _gemm(cfg)
    words = program.instruction_words()
    index = 0 if where == "first" else len(words) // 2
    assert 0 < len(words) // 2 < len(words) - 1
    return Tampered(program, index, opcode | 3 << 5), a       # count 3, which must not matter


def _stop_cycles(cfg, tampered) -> int:
    """Naive: the cycles of the program's words before the illegal one, plus its fetch."""
    words = tampered.instruction_words()[:tampered.index]
    return matrix_datapath(cfg).program_cycles(cfg, [decode(w) for w in words]) + 1


def _expect(cfg, tampered, backend):
    a = _gemm(cfg)[1]
    with pytest.raises(IllegalInstructionError) as info:
        backend.run(tampered, {"A": a})
    err = info.value
    assert str(err) == str(illegal_instruction(tampered.index, tampered.word))
    assert (err.index, err.word, err.opcode) == (tampered.index, tampered.word, tampered.word & 15)
    return err


CONFIGS = ["systolic-4x4-2of4", "chain-4x4-2of4"]

#: Legal opcodes with bits set they do not use (id -> word): each would run (and, for DRAIN,
#: push output beats) if the bits were ignored.
UNUSED_BITS = {
    "NOP+reserved31": encode(Instruction(Opcode.NOP)) | 1 << 31,
    "COMPUTE+reserved29": encode(Instruction(Opcode.COMPUTE, 2)) | 1 << 29,
    "DRAIN+accumulate": encode(Instruction(Opcode.DRAIN, 2)) | 1 << 4,
    "HALT+count": encode(Instruction(Opcode.HALT)) | 5 << 5,
    "LOAD_W+segments": encode(Instruction(Opcode.LOAD_W)) | 1 << 21,
    "LOAD_A+accumulate": encode(Instruction(Opcode.LOAD_A, 1)) | 1 << 4,
}


def _with_unused_bits(cfg, where: str, word: int):
    program, a = _gemm(cfg)
    index = 0 if where == "first" else len(program.instruction_words()) // 2
    return Tampered(program, index, word), a


def _expect_unused(cfg, tampered, backend):
    """As :func:`_expect`; the message names the opcode and the fields set that it does not use."""
    err = _expect(cfg, tampered, backend)
    op = Opcode(tampered.word & 15)
    assert f"is {op.name} with unused bits set (" in str(err)
    return err


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("where", ["first", "middle"])
@pytest.mark.parametrize("opcode", [6, 14])
@pytest.mark.parametrize("backend", FAST)
def test_numpy_rungs_refuse_a_tampered_program(config, where, opcode, backend):
    cfg = preset(config)
    tampered, _ = _tampered(cfg, where, opcode)
    err = _expect(cfg, tampered, get_backend(backend, cfg))
    assert err.cycles == (_stop_cycles(cfg, tampered) if backend == "cycle" else None)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("where", ["first", "middle"])
@pytest.mark.parametrize("word", UNUSED_BITS.values(), ids=UNUSED_BITS.keys())
@pytest.mark.parametrize("backend", FAST)
def test_numpy_rungs_refuse_unused_bits(config, where, word, backend):
    """A legal opcode with reserved / unused bits set stops the interpreter and the cycle model
    like an unassigned opcode: same error class, the stop cycle after its fetch."""
    cfg = preset(config)
    tampered, _ = _with_unused_bits(cfg, where, word)
    err = _expect_unused(cfg, tampered, get_backend(backend, cfg))
    assert err.cycles == (_stop_cycles(cfg, tampered) if backend == "cycle" else None)


@pytest.mark.parametrize("config", CONFIGS)
def test_reference_ignores_the_instructions(config):
    """The reference computes Y from the GEMM's weights and never reads the instruction words: a
    tampered program gives the untampered Y there (documented in docs/isa.md)."""
    cfg = preset(config)
    tampered, a = _tampered(cfg, "middle", 9)
    y = get_backend("reference", cfg).run(tampered, {"A": a}).outputs["Y"]
    np.testing.assert_array_equal(y, gemm_reference(a, tampered.weights, cfg.accumulator_bits))


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("where", ["first", "middle"])
@pytest.mark.parametrize("backend", RTL)
def test_rtl_rungs_stop_on_a_tampered_program(config, where, backend):
    cfg = preset(config)
    tampered, _ = _tampered(cfg, where, 7)
    err = _expect(cfg, tampered, rtl_backend(backend, cfg))
    cycle = _expect(cfg, tampered, get_backend("cycle", cfg))
    assert err.cycles == cycle.cycles == _stop_cycles(cfg, tampered)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("word", [UNUSED_BITS["COMPUTE+reserved29"], UNUSED_BITS["DRAIN+accumulate"],
                                  UNUSED_BITS["HALT+count"]], ids=["COMPUTE+reserved29", "DRAIN+accumulate", "HALT+count"])
@pytest.mark.parametrize("backend", RTL)
def test_rtl_rungs_stop_on_unused_bits(config, word, backend):
    """The controllers (systolic and chain) flag a word with unused bits exactly like an
    unassigned opcode: ``illegal`` high, the same stop cycle as the cycle model."""
    cfg = preset(config)
    tampered, _ = _with_unused_bits(cfg, "middle", word)
    err = _expect_unused(cfg, tampered, rtl_backend(backend, cfg))
    cycle = _expect_unused(cfg, tampered, get_backend("cycle", cfg))
    assert err.cycles == cycle.cycles == _stop_cycles(cfg, tampered)


def _python_verdict(word: int) -> str:
    try:
        ins = decode(word)
    except IllegalInstructionError:
        return "illegal"
    assert encode(ins) == word, f"{word:#010x} decodes to {ins} which encodes to {encode(ins):#010x}"
    return "legal"


@given(st.integers(0, (1 << INSTRUCTION_BITS) - 1))
def test_every_word_round_trips_or_is_illegal(word):
    """Every 32-bit word decodes and re-encodes to itself, or is illegal (IllegalInstructionError)
    exactly when its opcode is unassigned or it sets a bit its opcode does not use - nothing else
    (a count of 0 is legal: the controllers execute it, tests/test_zero_count.py)."""
    opcode = word & field_mask("opcode")
    verdict = _python_verdict(word)
    if not is_legal_opcode(opcode) or word & unused_mask(opcode):
        assert verdict == "illegal"
    else:
        assert verdict == "legal"


@pytest.mark.parametrize("op", list(Opcode), ids=[op.name for op in Opcode])
def test_each_field_outside_the_operands_is_illegal(op):
    """Field by field (the hypothesis test rarely hits one bit of a 3-bit field): every bit of a
    field the opcode does not read makes the word illegal; setting its own fields does not."""
    base = encode(Instruction(op, 1 if "count" in OPERANDS[op] else 0))
    for f in FIELDS:
        if f.name == "opcode":
            continue
        for bit in range(INSTRUCTION_BITS):
            if field_mask(f.name) >> bit & 1:
                verdict = _python_verdict(base | 1 << bit)
                assert verdict == ("legal" if f.name in OPERANDS[op] else "illegal"), (op.name, f.name, bit)


def test_unused_mask_checks_its_argument():
    with pytest.raises(FormatError, match=r"opcode must be an assigned opcode \(NOP=0, .*\), not 7"):
        unused_mask(7)
    with pytest.raises(FormatError, match=r"instruction field must be one of opcode, .*, not 'cnt'"):
        field_mask("cnt")
    with pytest.raises(FormatError, match=r"only COMPUTE, DRAIN, LOAD_A and LOAD_S take a count, not HALT \(count=5\)"):
        Instruction(Opcode.HALT, 5)


def test_decode_names_the_word_and_checks_the_opcode_first():
    with pytest.raises(IllegalInstructionError, match=r"^illegal instruction: word 4 \(0xe000000c\) has unknown "
                                                      r"opcode 12 \(assigned: NOP=0, .*HALT=15\); the accelerator "
                                                      r"stops on it$") as info:
        decode(0xE000000C, index=4)          # reserved bits set too: the opcode is what the hardware sees
    assert isinstance(info.value, FormatError) and info.value.cycles is None
    with pytest.raises(IllegalInstructionError, match=r"^illegal instruction: word 2 \(0x80000060\) is NOP with unused bits "
                                                      r"set \(count=3, reserved=2; NOP reads no operand field, every "
                                                      r"other bit must be zero\); the accelerator stops on it$"):
        decode(int(Opcode.NOP) | 3 << 5 | 1 << 31, index=2)
    with pytest.raises(IllegalInstructionError, match=r"is COMPUTE with unused bits set \(segments_m1=2; COMPUTE "
                                                      r"reads accumulate, count, "):
        decode(encode(Instruction(Opcode.COMPUTE, 1)) | 2 << 21)
    assert decode(int(Opcode.COMPUTE)) == Instruction(Opcode.COMPUTE, 0)     # a zero count is legal
    assert "instruction word (0x00000006)" in str(illegal_instruction(None, 6))


@pytest.mark.parametrize("backend", ["isa", "cycle", "amaranth"])
def test_the_cli_prints_one_line(backend, monkeypatch, capsys):
    """``sparsa run --gemm`` compiles its own program (``--program DIR``, which reads an edited
    ``instr.hex``, refuses an illegal word before running: tests/test_program_dir.py), so the
    compiler is swapped for one that tampers: the CLI prints the rung's error on one line, status 2."""
    from sparsa import cli
    from sparsa.commands import run as run_cmd

    if backend == "amaranth":
        rtl_backend(backend, preset("systolic-4x4-2of4"))       # skip without Amaranth
    compile_real = run_cmd.compile_gemm
    made = []

    def compile_tampered(*args, **kwargs):
        made.append(Tampered(compile_real(*args, **kwargs), 1, 8))
        return made[-1]

    monkeypatch.setattr(run_cmd, "compile_gemm", compile_tampered)
    code = cli.main(["run", "configs/systolic-4x4-2of4.yaml", "--gemm", "2x8x4", "--backend", backend])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [f"error: {illegal_instruction(1, made[0].word)}"]
    assert "Traceback" not in captured.err


# --------------------------------------------------------------------------- the SoC and its host driver


def _small():
    from .fpga.conftest import small_config

    return small_config()


@pytest.mark.parametrize("where", ["first", "middle"])
def test_soc_amaranth_stops_and_the_driver_raises(where):
    pytest.importorskip("amaranth", reason="amaranth is not installed: pip install -e '.[hdl]'")
    cfg = _small()
    tampered, _ = _tampered(cfg, where, 11)
    err = _expect(cfg, tampered, get_backend("soc-amaranth", cfg, instr_depth=64))
    assert err.cycles == _expect(cfg, tampered, get_backend("cycle", cfg)).cycles == _stop_cycles(cfg, tampered)


def test_soc_amaranth_stops_on_unused_bits():
    """The SoC's accelerator flags a word with unused bits (ILLEGAL), the driver raises the same error."""
    pytest.importorskip("amaranth", reason="amaranth is not installed: pip install -e '.[hdl]'")
    cfg = _small()
    tampered, _ = _with_unused_bits(cfg, "middle", UNUSED_BITS["DRAIN+accumulate"])
    err = _expect_unused(cfg, tampered, get_backend("soc-amaranth", cfg, instr_depth=64))
    assert err.cycles == _stop_cycles(cfg, tampered)


def test_the_docs_table_of_unused_bits_is_unused_mask():
    """docs/isa.md's hand-written table 'bits that must be zero' says what sparsa.isa.unused_mask says."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text()
    header = "| opcode | operand fields | bits that must be zero |"
    assert header in text
    text = text.split(header, 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| ([A-Z_, ]+) \| [^|]+ \| ([0-9:, ]+) \|$", text, re.M)
    seen = set()
    for names, bits in rows:
        mask = 0
        for part in bits.split(","):
            hi, _, lo = part.strip().partition(":")
            for b in range(int(lo or hi), int(hi) + 1):
                mask |= 1 << b
        for name in names.split(","):
            op = Opcode[name.strip()]
            assert unused_mask(op) == mask, (op.name, hex(unused_mask(op)), hex(mask))
            seen.add(op)
    assert seen == set(Opcode)


def test_soc_status_flags_illegal_until_the_next_start():
    """STATUS reads DONE | ILLEGAL after the stop (CYCLES frozen at the stop cycle, INSTR_TAKEN
    one past the word); the next START clears it and a legal program runs bit-exact on the same SoC."""
    pytest.importorskip("amaranth", reason="amaranth is not installed: pip install -e '.[hdl]'")
    from sparsa.hdl.soc.params import SocParams, Status
    from sparsa.hdl.soc.top import UartSoc
    from sparsa.sim.backends.soc.amaranth_transport import AmaranthSimTransport
    from sparsa.sim.backends.soc.driver import SocDriver
    from sparsa.sim.backends.soc.transport import SIM_DIVISOR
    from sparsa.sim.cycle import program_cycles

    cfg = _small()
    params = SocParams(cfg, instr_depth=64)
    tampered, a = _tampered(cfg, "middle", 6)
    with AmaranthSimTransport(UartSoc(params, SIM_DIVISOR)) as link:
        soc = SocDriver(link, params)
        with pytest.raises(IllegalInstructionError):
            soc.run(tampered, {"A": a})
        assert soc.status() == Status.DONE | Status.ILLEGAL
        ctr = soc.counters()
        assert (ctr["cycles"], ctr["instr_taken"]) == (_stop_cycles(cfg, tampered), tampered.index + 1)
        program, a2 = _gemm(cfg, 2, 8, 4, seed=9)
        result = soc.run(program, {"A": a2})
        assert soc.status() == Status.DONE
        np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a2, program.weights, cfg.accumulator_bits))
        assert result.cycles == program_cycles(program)


def test_soc_dma_run_raises_too():
    """The shell kernel's RUN_DMA path (load -> run -> store) reports the same error."""
    pytest.importorskip("amaranth", reason="amaranth is not installed: pip install -e '.[hdl]'")
    from sparsa.hdl.soc.params import DmaConfig, SocParams, Status
    from sparsa.hdl.soc.top import AxiSoc
    from sparsa.sim.backends.soc.amaranth_transport import AxiSimTransport
    from sparsa.sim.backends.soc.devmem import DeviceMemoryImage
    from sparsa.sim.backends.soc.driver import SocDriver

    cfg = _small()
    params = SocParams(cfg, instr_depth=64)
    tampered, a = _tampered(cfg, "first", 13)
    memory = DeviceMemoryImage(1 << 16)
    with AxiSimTransport(AxiSoc(params, dma=DmaConfig(64, 16)), memory) as link:
        soc = SocDriver(link, params)
        with pytest.raises(IllegalInstructionError) as info:
            soc.run(tampered, {"A": a}, memory=memory)
        assert str(info.value) == str(illegal_instruction(0, tampered.word)) and info.value.cycles == 1
        assert soc.status() & Status.ILLEGAL and soc.status() & Status.DMA_DONE


@pytest.mark.verilator
def test_soc_verilator_stops_and_the_driver_raises():
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    cfg = _small()
    tampered, _ = _tampered(cfg, "middle", 7)
    err = _expect(cfg, tampered, get_backend("soc-verilator", cfg, instr_depth=64))   # test_e2e's build
    assert err.cycles == _stop_cycles(cfg, tampered)
