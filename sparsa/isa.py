"""The accelerator's instruction set, defined once.

The compiler packs :class:`Instruction` objects into 32-bit words with :func:`encode`;
the HDL controller decodes them with a ``data.StructLayout`` built from :data:`FIELDS`
(see :func:`sparsa.hdl.layouts.instruction_layout`); the ISA interpreter and the cycle
model execute them.

Instruction fields, one 32-bit word.  Their order and widths, and so their bit positions, are
:data:`FIELDS` (LSB first); the table in docs/isa.md, with bit positions, is generated from
:data:`FIELDS` and the meanings below by ``docs/generate.py``::

    opcode       the operation, :class:`Opcode`; a value not assigned is an illegal instruction
                 (:func:`decode` raises :class:`~sparsa.errors.IllegalInstructionError`)
    accumulate   COMPUTE only: 1 adds the results to the accumulator rows, 0 overwrites them;
                 zero in every other word (else an illegal instruction)
    count        COMPUTE / DRAIN / LOAD_S: number of rows, 0 .. ``buffers.accumulator_depth``;
                 DSP chain: COMPUTE = weight beats, LOAD_A = activation-buffer words,
                 DRAIN = output beats; zero in NOP, LOAD_W and HALT (else an illegal instruction).
                 A count of 0 is what the controllers do with it: COMPUTE 0 runs only the flush
                 (no beat, no accumulator row written), DRAIN 0 and LOAD_S 0 only the fetch,
                 LOAD_A 0 latches ``segments`` and ``outputs`` and keeps the k-tiles of the
                 last LOAD_A
    segments_m1  DSP chain LOAD_A only: output segments per chain minus one (``S - 1``, 0: one
                 segment, the uncut cascade; docs/chain.md#cutting-the-cascade); zero in every
                 other word (else an illegal instruction)
    outputs      DSP chain LOAD_A only: 1 packs two output columns per multiplier (two weights
                 share one activation, ``chain.packing: both``; docs/chain.md#packing-for-gemv-chainpacking-both)
                 for the next COMPUTEs, 0 packs two tokens (or none); zero in every other word
    reserved     must be zero (a word with reserved bits set is an illegal instruction)

Execution is in order and one instruction at a time (see :mod:`sparsa.timing`).

Illegal instructions (docs/isa.md#illegal-instructions): a word with an unassigned opcode, or
with an assigned one and a bit set outside the fields that opcode reads (:data:`OPERANDS`;
:func:`unused_mask`).  The controller fetches the word (one ``FETCH_CYCLES`` cycle, counted)
and stops there like HALT - ``done`` and ``illegal`` rise, the
cycle counter freezes, no later word or beat is taken.  Every rung that executes instructions
reports it the same way: :class:`~sparsa.errors.IllegalInstructionError` with the message of
:func:`illegal_instruction` (timed rungs add the cycle count at the stop as ``.cycles``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from sparsa.errors import FormatError, IllegalInstructionError

__all__ = ["Opcode", "Field", "FIELDS", "INSTRUCTION_BITS", "OPERANDS", "Instruction", "encode", "decode",
           "opcode_of", "is_legal_opcode", "field_mask", "unused_mask", "is_legal_word", "illegal_instruction"]

INSTRUCTION_BITS = 32


class Opcode(IntEnum):
    """Operation codes, the ``opcode`` field of :data:`FIELDS`."""

    #: Do nothing for one fetch cycle.
    NOP = 0
    #: Pop ``rows`` beats from the weight stream; beat ``r`` fills PE row ``r`` (value + N:M index per
    #: column).  With OVP-4 weights ``rows / 2`` beats: beat ``b`` fills PE rows ``2b`` and ``2b+1`` (one
    #: OVP pair per column).  A NOP (fetch only) on the DSP chain, whose weights stream during COMPUTE.
    LOAD_W = 1
    #: Pop ``count`` activation beats, run them through the array; result row ``i`` is written to
    #: accumulator row ``i`` (overwrite, or add when ``accumulate``).  DSP chain: stream ``count``
    #: weight beats instead (output tiles x loaded k-tiles; docs/chain.md).
    COMPUTE = 2
    #: Push accumulator rows ``0 .. count-1`` to the output stream, one beat each.
    DRAIN = 3
    #: DSP chain only (docs/chain.md): pop ``count`` activation beats into activation-buffer
    #: words ``0 .. count-1``; ``count`` becomes the k-tiles per output tile of the next COMPUTEs
    #: and ``segments`` the number of segments each chain is cut into for the next COMPUTEs/DRAINs,
    #: ``outputs`` whether they pack two output columns per multiplier (``chain.packing: both``).
    #: A NOP (fetch only) on the systolic datapath.
    LOAD_A = 4
    #: Systolic datapath with activation scales (``act_scale.granularity`` token / group,
    #: docs/actscale-hardware.md): pop ``count`` activation beats; beat ``i``'s low
    #: ``act_scale.mantissa_bits`` bits become the scale mantissa of accumulator row ``i``; every
    #: following COMPUTE writes ``(accumulate ? old : 0) + result x mantissa`` to row ``i``.  A NOP
    #: (fetch only) on a datapath without the scaling stage.
    LOAD_S = 5
    #: Stop: the controller raises ``done`` and the cycle counter freezes.
    HALT = 15


@dataclass(frozen=True)
class Field:
    """One instruction field: ``name`` occupying ``width`` bits (fields are packed LSB first)."""

    name: str
    width: int


#: Instruction fields, LSB first. The HDL's StructLayout is built from this tuple.
FIELDS: tuple[Field, ...] = (
    Field("opcode", 4),
    Field("accumulate", 1),
    Field("count", 16),
    Field("segments_m1", 8),
    Field("outputs", 1),
    Field("reserved", 2),
)
assert sum(f.width for f in FIELDS) == INSTRUCTION_BITS

_OFFSETS = {}
_offset = 0
for _f in FIELDS:
    _OFFSETS[_f.name] = (_offset, _f.width)
    _offset += _f.width

#: The fields each assigned opcode reads besides ``opcode``.  Every other bit of its word
#: (:func:`unused_mask`: the ``reserved`` field and the fields of other opcodes) must be zero;
#: a word with one of them set is an illegal instruction on every rung, like an unassigned
#: opcode.  The HDL controllers build their check from this table.
OPERANDS: dict[Opcode, tuple[str, ...]] = {
    Opcode.NOP: (),
    Opcode.LOAD_W: (),
    Opcode.COMPUTE: ("accumulate", "count"),
    Opcode.DRAIN: ("count",),
    Opcode.LOAD_A: ("count", "segments_m1", "outputs"),
    Opcode.LOAD_S: ("count",),
    Opcode.HALT: (),
}
assert set(OPERANDS) == set(Opcode)
assert all(name in _OFFSETS and name not in ("opcode", "reserved") for names in OPERANDS.values() for name in names)


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction.

    Parameters
    ----------
    op : Opcode
        The operation.
    count : int
        Row count for COMPUTE / DRAIN / LOAD_A / LOAD_S, 0 .. 65535 (0: see the ``count``
        field above); 0 (the default) for the other opcodes.
    accumulate : bool
        COMPUTE only: add to (True) or overwrite (False) the accumulator rows.
    segments : int
        DSP-chain LOAD_A only: output segments per chain (run-time cascade cutting,
        docs/chain.md), 1 .. 256; 1 (the default, encoded as 0) everywhere else.
    outputs : bool
        DSP-chain LOAD_A only: the next COMPUTEs pack two output columns per multiplier
        (docs/chain.md#packing-for-gemv-chainpacking-both); False everywhere else.
    """

    op: Opcode
    count: int = 0
    accumulate: bool = False
    segments: int = 1
    outputs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.op, Opcode):
            raise FormatError(f"instruction opcode must be an Opcode, not {self.op!r}")
        limit = (1 << _OFFSETS["count"][1]) - 1
        if not 0 <= self.count <= limit:
            raise FormatError(f"instruction count must be in 0..{limit}, not {self.count!r}")
        if self.count and "count" not in OPERANDS[self.op]:
            raise FormatError(f"only COMPUTE, DRAIN, LOAD_A and LOAD_S take a count, not {self.op.name} "
                              f"(count={self.count!r})")
        if self.accumulate and self.op is not Opcode.COMPUTE:
            raise FormatError(f"only COMPUTE takes the accumulate flag, not {self.op.name}")
        seg_limit = 1 << _OFFSETS["segments_m1"][1]
        if isinstance(self.segments, bool) or not isinstance(self.segments, int) \
                or not 1 <= self.segments <= seg_limit:
            raise FormatError(f"instruction segments must be in 1..{seg_limit}, not {self.segments!r}")
        if self.segments != 1 and self.op is not Opcode.LOAD_A:
            raise FormatError(f"only LOAD_A takes a segment count, not {self.op.name} (segments={self.segments})")
        if not isinstance(self.outputs, bool):
            raise FormatError(f"instruction outputs must be a bool, not {self.outputs!r}")
        if self.outputs and self.op is not Opcode.LOAD_A:
            raise FormatError(f"only LOAD_A takes the outputs flag, not {self.op.name}")

    def __str__(self) -> str:
        if self.op is Opcode.COMPUTE:
            return f"COMPUTE count={self.count} {'acc' if self.accumulate else 'set'}"
        if self.op is Opcode.LOAD_A and (self.segments != 1 or self.outputs):
            return (f"LOAD_A count={self.count}" + (f" segments={self.segments}" if self.segments != 1 else "")
                    + (" outputs" if self.outputs else ""))
        if self.op in (Opcode.DRAIN, Opcode.LOAD_A, Opcode.LOAD_S):
            return f"{self.op.name} count={self.count}"
        return self.op.name


def encode(instr: Instruction) -> int:
    """Pack an instruction into its 32-bit word."""
    values = {"opcode": int(instr.op), "accumulate": int(instr.accumulate), "count": instr.count,
              "segments_m1": instr.segments - 1, "outputs": int(instr.outputs), "reserved": 0}
    word = 0
    for name, (offset, width) in _OFFSETS.items():
        word |= (values[name] & ((1 << width) - 1)) << offset
    return word


_ASSIGNED = frozenset(int(op) for op in Opcode)


def field_mask(name: str) -> int:
    """The bits of field ``name`` (one of :data:`FIELDS`) in a 32-bit word.

    Raises
    ------
    FormatError
        ``name`` is not a field.
    """
    if name not in _OFFSETS:
        raise FormatError(f"instruction field must be one of {', '.join(_OFFSETS)}, not {name!r}")
    offset, width = _OFFSETS[name]
    return ((1 << width) - 1) << offset


def unused_mask(opcode: "Opcode | int") -> int:
    """The bits a word with the assigned ``opcode`` must leave zero.

    Everything but the ``opcode`` field and the fields of :data:`OPERANDS` ``[opcode]``: the
    ``reserved`` field always, ``accumulate`` outside COMPUTE, ``count`` in NOP / LOAD_W / HALT,
    ``segments_m1`` and ``outputs`` outside LOAD_A.

    Raises
    ------
    FormatError
        ``opcode`` is not an assigned opcode.
    """
    if isinstance(opcode, bool) or not isinstance(opcode, int) or not is_legal_opcode(opcode):
        raise FormatError(f"opcode must be an assigned opcode ({', '.join(f'{op.name}={int(op)}' for op in Opcode)}), "
                          f"not {opcode!r}")
    used = field_mask("opcode")
    for name in OPERANDS[Opcode(int(opcode))]:
        used |= field_mask(name)
    return ((1 << INSTRUCTION_BITS) - 1) & ~used


def is_legal_word(word: int) -> bool:
    """True when the 32-bit ``word`` has an assigned opcode and no bit of its :func:`unused_mask` set.

    Every legal word decodes (:func:`decode`), and every field value it can hold is one the
    controllers execute, a count of 0 included.
    """
    word = int(word)
    opcode = opcode_of(word)
    return is_legal_opcode(opcode) and not word & unused_mask(opcode)


def opcode_of(word: int) -> int:
    """The opcode field of a 32-bit instruction word (assigned or not)."""
    offset, width = _OFFSETS["opcode"]
    return (int(word) >> offset) & ((1 << width) - 1)


def is_legal_opcode(opcode: int) -> bool:
    """True for an opcode value assigned in :class:`Opcode`."""
    return int(opcode) in _ASSIGNED


def illegal_instruction(index: "int | None", word: int, cycles: "int | None" = None) -> IllegalInstructionError:
    """The error every rung raises for an illegal instruction word.

    The word is illegal because its opcode is not assigned, or because it sets bits its
    (assigned) opcode does not use (:func:`unused_mask`); the message says which, from the word
    alone, so that it is the same on every rung.

    Parameters
    ----------
    index : int or None
        Position of the word in the instruction stream (``None`` when unknown).
    word : int
        The 32-bit instruction word.
    cycles : int, optional
        Timed rungs: the cycle count at the stop (kept as ``.cycles``, not in the message, so
        that the message is the same on every rung).
    """
    word = int(word)
    opcode = opcode_of(word)
    where = f"word {index}" if index is not None else "instruction word"
    if is_legal_opcode(opcode):
        op = Opcode(opcode)
        unused = word & unused_mask(op)
        if not unused:
            raise ValueError(f"illegal_instruction: {word:#010x} is a legal instruction word")
        names = [f.name for f in FIELDS if unused & field_mask(f.name)]
        set_fields = ", ".join(f"{name}={(word & field_mask(name)) >> _OFFSETS[name][0]}" for name in names)
        allowed = ", ".join(OPERANDS[op]) or "no operand field"
        reason = (f"is {op.name} with unused bits set ({set_fields}; {op.name} reads {allowed}, "
                  f"every other bit must be zero)")
    else:
        assigned = ", ".join(f"{op.name}={int(op)}" for op in Opcode)
        reason = f"has unknown opcode {opcode} (assigned: {assigned})"
    return IllegalInstructionError(f"illegal instruction: {where} ({word:#010x}) {reason}; the accelerator stops on it",
                                   index=index, word=word, opcode=opcode, cycles=cycles)


def decode(word: int, *, index: "int | None" = None) -> Instruction:
    """Unpack a 32-bit word.

    Parameters
    ----------
    word : int
        The instruction word.
    index : int, optional
        Its position in the instruction stream, named by the error for an illegal opcode.

    Raises
    ------
    IllegalInstructionError
        The opcode is not assigned, or a bit the opcode does not use is set (:func:`unused_mask`:
        reserved bits, ``accumulate`` outside COMPUTE, ``count`` in NOP / LOAD_W / HALT,
        ``segments_m1`` outside LOAD_A); the controller stops on such a word
        (:func:`illegal_instruction`).
    FormatError
        Not a 32-bit unsigned integer.

    Notes
    -----
    A word that decodes re-encodes to itself: ``encode(decode(w)) == w``.
    """
    if isinstance(word, bool) or not 0 <= word < (1 << INSTRUCTION_BITS):
        raise FormatError(f"instruction word must be a 32-bit unsigned integer, not {word!r}")
    if not is_legal_word(word):
        raise illegal_instruction(index, word)
    return _decode_legal(int(word))


@lru_cache(maxsize=4096)
def _decode_legal(word: int) -> Instruction:
    # Cached: a program repeats a few distinct words many times (the cycle model decodes every
    # word it runs), and an Instruction is immutable.
    fields = {name: (word >> off) & ((1 << w) - 1) for name, (off, w) in _OFFSETS.items()}
    return Instruction(Opcode(fields["opcode"]), fields["count"], bool(fields["accumulate"]),
                       fields["segments_m1"] + 1, bool(fields["outputs"]))
