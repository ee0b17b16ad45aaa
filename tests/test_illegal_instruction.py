"""Tampered programs: an unassigned opcode stops every rung the same way (docs/isa.md#illegal-opcodes).

A compiled program gets one extra instruction word with an unassigned opcode - as the first
word, or in the middle - exactly what editing ``instr.hex`` does.  Every rung that executes
instructions raises :class:`IllegalInstructionError` with the same message; the timed rungs
report the same stop cycle (the words before it plus one fetch), and the reference (which never
reads the instructions) still returns the untampered GEMM's ``Y``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.datapath import matrix_datapath
from sparsa.errors import FormatError, IllegalInstructionError
from sparsa.isa import Opcode, decode, illegal_instruction
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


def test_decode_names_the_word_and_checks_the_opcode_first():
    with pytest.raises(IllegalInstructionError, match=r"^illegal instruction: word 4 \(0xe000000c\) has unknown "
                                                      r"opcode 12 \(assigned: NOP=0, .*HALT=15\); the accelerator "
                                                      r"stops on it$") as info:
        decode(0xE000000C, index=4)          # reserved bits set too: the opcode is what the hardware sees
    assert isinstance(info.value, FormatError) and info.value.cycles is None
    with pytest.raises(FormatError, match="reserved bits set"):
        decode(int(Opcode.NOP) | 1 << 31)
    assert "instruction word (0x00000006)" in str(illegal_instruction(None, 6))


@pytest.mark.parametrize("backend", ["isa", "cycle", "amaranth"])
def test_the_cli_prints_one_line(backend, monkeypatch, capsys):
    """``sparsa run`` compiles its own program (no command runs an edited ``instr.hex``), so the
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
