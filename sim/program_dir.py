"""A compiled program directory read back: ``sparsa run CONFIG --program DIR``.

``sparsa compile -o DIR`` writes the program's streams as memory images (``instr.hex``,
``weights.hex``, ``acts.hex``, ``expected.hex``) and its metadata (``program.json``;
:mod:`sparsa.compiler.emit`, :func:`sparsa.compiler.chain.write_chain_images`).  This module
reads such a directory back, checks it against the accelerator config it is run on, and runs
the streams as they are - no recompilation, so an edited or damaged file is what runs:

* :func:`load_program_dir` refuses a directory that cannot be what ``sparsa compile`` wrote for
  this config, with one line naming the file and the line or field: a missing file, a line that
  is not a hex word of the beat width, more or fewer words than ``program.json`` says, a
  ``program.json`` written for another config (name, beat widths, operand types), instruction
  counts that do not match ``instr.hex``.  An illegal instruction word is refused here too,
  with the message every rung gives (:func:`sparsa.isa.illegal_instruction`) after the file
  and line.
* :func:`run_program_dir` feeds the three input streams to a rung and compares the output
  beats with ``expected.hex`` bit by bit: ``isa`` (the datapath's stream-level interpreter,
  :class:`sparsa.sim.interpreter.Interpreter` / :class:`sparsa.sim.chain.ChainInterpreter`),
  ``cycle`` (the same, plus the cycles of the instruction words by the datapath's timing
  contract - what the cycle model and the RTL count for a program without stalls), ``amaranth``
  (the RTL simulation, :func:`sparsa.sim.backends.amaranth_backend.run_streams`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import FormatError, IllegalInstructionError
from sparsa.isa import INSTRUCTION_BITS, Instruction, Opcode, decode
from sparsa.layout import pack_lanes
from sparsa.sim.datapath import sim_datapath

__all__ = ["PROGRAM_FILES", "DIR_BACKENDS", "ProgramImage", "DirRun", "load_program_dir", "read_hex",
           "run_program_dir", "beat_bits"]

#: The files of a program directory this module reads (``program.lst`` is for people only).
PROGRAM_FILES = ("program.json", "instr.hex", "weights.hex", "acts.hex", "expected.hex")

#: The rungs that can run a program directory (they take raw streams, not a compiled Program).
DIR_BACKENDS = ("isa", "cycle", "amaranth")

#: Largest image file read (bytes): far above any program that fits a config's buffers, far
#: below what would exhaust memory.
MAX_IMAGE_BYTES = 1 << 30


def beat_bits(config: AcceleratorConfig) -> dict[str, int]:
    """The beat width of each stream of ``config``'s datapath, keyed as ``program.json`` keys them."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    return {"instr": INSTRUCTION_BITS, **matrix_datapath(config).stream_beat_bits(config)}


@dataclass(frozen=True)
class ProgramImage:
    """A program directory, read and checked (:func:`load_program_dir`).

    Attributes
    ----------
    directory : Path
        Where it was read from.
    meta : dict
        ``program.json``.
    words, weights, acts, expected : list[int]
        The instruction words and the packed beats of the weight, activation and expected
        output streams, in file order.
    instructions : list[Instruction]
        The decoded instruction words.
    """

    directory: Path
    meta: dict
    words: list[int]
    weights: list[int]
    acts: list[int]
    expected: list[int]
    instructions: list[Instruction]


@dataclass(frozen=True)
class DirRun:
    """What :func:`run_program_dir` observed.

    Attributes
    ----------
    backend : str
        The rung.
    outputs : list[int]
        Output beats, packed as in ``expected.hex``.
    cycles : int or None
        Cycles (``cycle``: the timing contract; ``amaranth``: the RTL counter; ``isa``: None).
    mismatches : int
        Output beats that differ from ``expected.hex`` (a missing or extra beat counts).
    first_mismatch : int or None
        Index of the first such beat.
    """

    backend: str
    outputs: list[int]
    cycles: "int | None"
    mismatches: int
    first_mismatch: "int | None"

    @property
    def bit_exact(self) -> bool:
        """True when every output beat equals ``expected.hex``."""
        return self.mismatches == 0


def _file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FormatError(f"{path}: missing (a program directory from 'sparsa compile -o DIR' has "
                          f"{', '.join(PROGRAM_FILES)})")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise FormatError(f"{path}: {size} bytes, more than the {MAX_IMAGE_BYTES} a program image may have")
    return path


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text (byte {exc.start}): is this a file 'sparsa compile' wrote?") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_hex(path: Path, bits: int, count: int) -> list[int]:
    """The words of a hex image: one ``ceil(bits / 4)``-digit hex word per line, ``count`` lines.

    Parameters
    ----------
    path : Path
        The file.
    bits : int
        Beat width; every word must fit in it.
    count : int
        Words the file must hold (``program.json``'s count).

    Raises
    ------
    FormatError
        Naming the file and the line: not exactly ``ceil(bits / 4)`` hex digits, a value wider
        than ``bits``, or another number of words than ``count``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits must be a positive int, not {bits!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, not {count!r}")
    digits = -(-bits // 4)
    lines = _text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()                              # the final newline
    words = []
    allowed = set("0123456789abcdefABCDEF")
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r")
        if len(text) != digits or not set(text) <= allowed:
            shown = text if len(text) <= 2 * digits + 8 else text[: 2 * digits] + "..."
            raise FormatError(f"{path}: line {number}: {shown!r} is not a {digits}-digit hex word "
                              f"(digits 0-9 a-f, one {bits}-bit word per line)")
        value = int(text, 16)
        if value >> bits:
            raise FormatError(f"{path}: line {number}: {text} does not fit in the {bits}-bit beat")
        words.append(value)
    if len(words) != count:
        raise FormatError(f"{path}: {len(words)} words, but program.json says {count} "
                          f"(truncated, padded, or from another program?)")
    return words


def _meta(path: Path, config: AcceleratorConfig) -> dict:
    try:
        meta = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: must hold a JSON object, not {type(meta).__name__}")

    def field(*keys: str) -> Any:
        value: Any = meta
        for i, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                raise FormatError(f"{path}: field {'.'.join(keys[: i + 1])} is missing")
            value = value[key]
        return value

    name = field("config")
    if name != config.name:
        raise FormatError(f"{path}: field config is {name!r}, but the config given is {config.name!r} "
                          f"(run the directory with the config it was compiled for)")
    kind = meta.get("datapath", "systolic")
    if kind != config.datapath.kind:
        raise FormatError(f"{path}: field datapath is {kind!r}, but the config's datapath.kind is "
                          f"{config.datapath.kind!r}")
    for key, want in beat_bits(config).items():
        got = field("beat_bits", key)
        if got != want:
            raise FormatError(f"{path}: field beat_bits.{key} is {got!r}, but config {config.name!r} has "
                              f"{want}-bit {key} beats (compiled for another geometry or types?)")
    if "types" in meta:
        for key, want in (("weight", config.types.weight), ("activation", config.types.activation)):
            got = field("types", key)
            if got != want:
                raise FormatError(f"{path}: field types.{key} is {got!r}, but the config has types.{key}: {want}")
    for key in ("weights", "acts", "outputs"):
        got = field("beats", key)
        if isinstance(got, bool) or not isinstance(got, int) or got < 0:
            raise FormatError(f"{path}: field beats.{key} must be a non-negative integer, not {got!r}")
    counts = field("instructions")
    if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in counts.values()):
        raise FormatError(f"{path}: field instructions must map opcode names to counts, not {counts!r}")
    return meta


def _instructions(path: Path, words: list[int], counts: dict) -> list[Instruction]:
    instructions = []
    for index, word in enumerate(words):
        try:
            instructions.append(decode(word, index=index))
        except IllegalInstructionError as exc:
            raise FormatError(f"{path}: line {index + 1}: {exc}") from None
        except FormatError as exc:
            raise FormatError(f"{path}: line {index + 1}: {word:08x} is not a valid instruction: {exc}") from None
    found = Counter(i.op.name for i in instructions)
    if dict(found) != {k: v for k, v in counts.items() if v}:
        raise FormatError(f"{path}: instruction counts {dict(sorted(found.items()))} differ from program.json's "
                          f"field instructions {dict(sorted(counts.items()))}")
    if not instructions or instructions[-1].op is not Opcode.HALT:
        raise FormatError(f"{path}: line {len(words)}: the last word must be HALT "
                          f"({Opcode.HALT.value:08x}), the program would run off its end")
    return instructions


def load_program_dir(config: AcceleratorConfig, directory: "Path | str") -> ProgramImage:
    """Read the program directory ``directory`` and check it against ``config``.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator it is to run on; ``program.json`` must name it and match its beat widths.
    directory : Path or str
        A directory written by ``sparsa compile -o``.

    Raises
    ------
    FormatError
        One line naming the file and the line or field (see the module docstring).
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FormatError(f"--program {directory}: not a directory (give the -o DIR of 'sparsa compile')")
    meta = _meta(_file(directory, "program.json"), config)
    bits = beat_bits(config)
    instr_path = _file(directory, "instr.hex")
    words = read_hex(instr_path, INSTRUCTION_BITS, sum(meta["instructions"].values()))
    instructions = _instructions(instr_path, words, meta["instructions"])
    streams = {key: read_hex(_file(directory, f"{key}.hex"), bits[bit_key], meta["beats"][bit_key])
               for key, bit_key in (("weights", "weights"), ("acts", "acts"), ("expected", "outputs"))}
    return ProgramImage(directory, meta, words, streams["weights"], streams["acts"], streams["expected"],
                        instructions)


def run_program_dir(config: AcceleratorConfig, image: ProgramImage, backend: str) -> DirRun:
    """Run a loaded program directory on ``backend`` (one of :data:`DIR_BACKENDS`).

    Raises
    ------
    FormatError
        ``backend`` is not one of :data:`DIR_BACKENDS`, or the streams do not fit the program
        (a stream ran out: the message names it).
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if backend not in DIR_BACKENDS:
        raise FormatError(f"--backend {backend!r} cannot run a program directory; use one of {', '.join(DIR_BACKENDS)}")
    contract = matrix_datapath(config)
    cycles = None
    if backend == "amaranth":
        from sparsa.sim.backends.amaranth_backend import make_dut, run_streams

        run = run_streams(make_dut(config), image.words, image.weights, image.acts, len(image.expected))
        outputs, cycles = [int(w) for w in run.outputs], run.cycles
    else:
        weights = (contract.unpack_weight_beat(config, w) for w in image.weights)
        acts = (contract.unpack_activation_beat(config, w) for w in image.acts)
        state = sim_datapath(config).stream_interpreter(config).run(image.words, weights, acts)
        outputs = [pack_lanes(beat, config.accumulator_bits) for beat in state.outputs]
        if backend == "cycle":
            cycles = contract.program_cycles(config, image.instructions)
    bad = [i for i in range(max(len(outputs), len(image.expected)))
           if i >= len(outputs) or i >= len(image.expected) or outputs[i] != image.expected[i]]
    return DirRun(backend, outputs, cycles, len(bad), bad[0] if bad else None)
