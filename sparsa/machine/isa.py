"""The machine's instruction stream: the datapath ISA extended with multi-word instructions.

The *machine* is a matrix datapath, its SFU with the vector memory (VMEM) and a device memory
(DM) that holds the weights, the constants, the KV cache and the hidden states
(docs/isa.md, "The machine").  Its controller fetches 32-bit words; a word's ``opcode`` field is
the datapath ISA's (:data:`sparsa.isa.FIELDS`, bits 0..3).  The datapath's opcodes keep their
meaning and encoding; the machine adds the values the datapath leaves unassigned:

==========  =====  ===================================================================================
op          words  operands (after the header word)
==========  =====  ===================================================================================
SFU         1+12   the :class:`~sparsa.sfu.command.SfuCommand` (:func:`sparsa.sfu.encoding.encode_command`)
GEMM        1+7+N  ``w_kind | plane << 2``; ``w_addr``; ``a_addr | a_stride << 16``;
                   ``y_addr | y_stride << 16``; ``m | k << 16``; ``n``; ``N``; then the GEMM's ``N``
                   datapath words (its program without the final HALT)
LOAD        1+3    ``dm_addr``; ``vmem_addr | rows << 16``; ``n``: DM fx words -> VMEM rows
STORE       1+3    same fields: VMEM rows -> DM fx words
KV_STORE    1+3    ``dm_addr``; ``vmem_addr | rows << 16``; ``position | row_elements << 16``
MOVE        1+3    ``src | src_stride << 16``; ``dst | dst_stride << 16``; ``rows | words << 16``
HALT        1      the datapath's HALT: the machine stops
==========  =====  ===================================================================================

Every field not named is zero in a legal word (the header's bits 4..31 always are, the GEMM's
kind word beyond its fields too); anything else is an illegal instruction
(:func:`~sparsa.isa.illegal_instruction` for the header, :class:`~sparsa.errors.FormatError`
naming the operand word otherwise).  Execution is one instruction at a time; the cycles of
each are :mod:`sparsa.machine.timing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sparsa.errors import FormatError
from sparsa.isa import Opcode, decode, encode, illegal_instruction, opcode_of
from sparsa.sfu.command import SfuCommand
from sparsa.sfu.encoding import COMMAND_WORDS, decode_command, encode_command

__all__ = ["MachineOp", "WeightKind", "Plane", "SfuInstr", "GemmInstr", "LoadInstr", "StoreInstr",
           "KvStoreInstr", "MoveInstr", "HaltInstr", "MachineInstr", "OPERAND_WORDS", "encode_machine",
           "decode_machine"]

_U16 = (1 << 16) - 1


class MachineOp(IntEnum):
    """The machine's opcodes, beside the datapath's (:class:`sparsa.isa.Opcode`)."""

    SFU = 6
    GEMM = 7
    LOAD = 8
    STORE = 9
    KV_STORE = 10
    MOVE = 11


assert not {int(op) for op in MachineOp} & {int(op) for op in Opcode}

#: Operand words after the header (GEMM: before its datapath words).
OPERAND_WORDS: dict[MachineOp, int] = {MachineOp.SFU: COMMAND_WORDS, MachineOp.GEMM: 7, MachineOp.LOAD: 3,
                                       MachineOp.STORE: 3, MachineOp.KV_STORE: 3, MachineOp.MOVE: 3}


class WeightKind(IntEnum):
    """Where a GEMM's weight stream comes from."""

    #: A weight image in DM: the compiled GEMM's weight beats, packed (:mod:`sparsa.layout`).
    IMAGE = 0
    #: ``K^T`` of a KV-cache head in DM (int8 codes ``[positions, head_dim]``): ``W[k=head_dim, n=positions]``.
    KEYS = 1
    #: ``V`` of a KV-cache head: ``W[k=positions, n=head_dim]``.
    VALUES = 2


class Plane(IntEnum):
    """Which bits of the KV codes a KEYS / VALUES GEMM streams (docs/block.md, nibble passes)."""

    WHOLE = 0
    HIGH = 1
    LOW = 2


def _u(name: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise FormatError(f"machine instruction {name} must be an int in 0..{(1 << bits) - 1}, not {value!r}")
    return value


@dataclass(frozen=True)
class SfuInstr:
    """Run one SFU command on the VMEM."""

    command: SfuCommand


@dataclass(frozen=True)
class GemmInstr:
    """``Y[m, n] = A[m, k] @ W[k, n]`` on the matrix datapath, VMEM to VMEM.

    ``A`` row ``t`` is the first ``k`` elements (codes) of the VMEM row at word
    ``a_addr + t * a_stride``; raw sums row ``t`` go to the ``ceil(n / lanes)`` words at
    ``y_addr + t * y_stride`` (padding lanes 0).  ``words`` are the GEMM's datapath words, in
    order, without the final HALT; the beat formers follow the schedule the compiler made for
    ``(m, k, n)`` (docs/isa.md).  KEYS / VALUES weights are the cache head at ``w_addr``
    (``k`` resp. ``n`` positions are read), in plane ``plane``.
    """

    w_kind: WeightKind
    w_addr: int
    a_addr: int
    a_stride: int
    y_addr: int
    y_stride: int
    m: int
    k: int
    n: int
    words: tuple[int, ...]
    plane: Plane = Plane.WHOLE

    def __post_init__(self) -> None:
        if not isinstance(self.w_kind, WeightKind) or not isinstance(self.plane, Plane):
            raise FormatError(f"GEMM w_kind / plane must be a WeightKind / Plane, not {self.w_kind!r} / {self.plane!r}")
        if self.w_kind is WeightKind.IMAGE and self.plane is not Plane.WHOLE:
            raise FormatError("GEMM: a weight image has no nibble planes (plane must be WHOLE)")
        _u("GEMM w_addr", self.w_addr, 32)
        for name in ("a_addr", "a_stride", "y_addr", "y_stride", "m", "k", "n"):
            _u(f"GEMM {name}", getattr(self, name), 16)
        for name in ("m", "k", "n"):
            if not getattr(self, name):
                raise FormatError(f"GEMM {name} must be at least 1, not 0")
        for i, word in enumerate(self.words):
            if opcode_of(word) == Opcode.HALT or opcode_of(word) in set(MachineOp):
                raise FormatError(f"GEMM datapath word {i} ({word:#010x}) is not a datapath instruction "
                                  f"(HALT and machine opcodes end or leave a GEMM)")
            decode(int(word), index=i)


@dataclass(frozen=True)
class LoadInstr:
    """``rows`` rows of ``n`` fx values (32-bit words, row-major) from DM byte ``dm_addr`` to VMEM rows at ``vmem_addr``."""

    dm_addr: int
    vmem_addr: int
    rows: int
    n: int

    def __post_init__(self) -> None:
        _u("LOAD/STORE dm_addr", self.dm_addr, 32)
        _u("LOAD/STORE vmem_addr", self.vmem_addr, 16)
        for name in ("rows", "n"):
            if _u(f"LOAD/STORE {name}", getattr(self, name), 16) == 0:
                raise FormatError(f"LOAD/STORE {name} must be at least 1, not 0")


@dataclass(frozen=True)
class StoreInstr(LoadInstr):
    """``rows`` VMEM rows of ``n`` fx values at ``vmem_addr`` to DM byte ``dm_addr`` (row-major 32-bit words)."""


@dataclass(frozen=True)
class KvStoreInstr:
    """``rows`` VMEM rows of ``row_elements`` codes to a KV-cache head at DM byte ``dm_addr``, positions ``position ..``.

    The head holds int8 codes ``[positions, row_elements]``, row-major; a code outside int8 is an error.
    """

    dm_addr: int
    vmem_addr: int
    rows: int
    position: int
    row_elements: int

    def __post_init__(self) -> None:
        _u("KV_STORE dm_addr", self.dm_addr, 32)
        for name in ("vmem_addr", "rows", "position", "row_elements"):
            _u(f"KV_STORE {name}", getattr(self, name), 16)
        if not self.rows or not self.row_elements:
            raise FormatError(f"KV_STORE rows and row_elements must be at least 1, not {self.rows}, {self.row_elements}")


@dataclass(frozen=True)
class MoveInstr:
    """Copy ``rows`` x ``words`` VMEM words: row ``r`` from ``src + r * src_stride`` to ``dst + r * dst_stride``."""

    src: int
    src_stride: int
    dst: int
    dst_stride: int
    rows: int
    words: int

    def __post_init__(self) -> None:
        for name in ("src", "src_stride", "dst", "dst_stride", "rows", "words"):
            _u(f"MOVE {name}", getattr(self, name), 16)
        if not self.rows or not self.words:
            raise FormatError(f"MOVE rows and words must be at least 1, not {self.rows}, {self.words}")


@dataclass(frozen=True)
class HaltInstr:
    """Stop the machine."""


MachineInstr = SfuInstr | GemmInstr | LoadInstr | StoreInstr | KvStoreInstr | MoveInstr | HaltInstr


def _pair(lo: int, hi: int) -> int:
    return lo | hi << 16


def _operands(ins: MachineInstr) -> tuple[MachineOp, list[int]]:
    if isinstance(ins, SfuInstr):
        return MachineOp.SFU, encode_command(ins.command)
    if isinstance(ins, GemmInstr):
        return MachineOp.GEMM, [int(ins.w_kind) | int(ins.plane) << 2, ins.w_addr, _pair(ins.a_addr, ins.a_stride),
                                _pair(ins.y_addr, ins.y_stride), _pair(ins.m, ins.k), ins.n, len(ins.words)]
    if isinstance(ins, StoreInstr):
        return MachineOp.STORE, [ins.dm_addr, _pair(ins.vmem_addr, ins.rows), ins.n]
    if isinstance(ins, LoadInstr):
        return MachineOp.LOAD, [ins.dm_addr, _pair(ins.vmem_addr, ins.rows), ins.n]
    if isinstance(ins, KvStoreInstr):
        return MachineOp.KV_STORE, [ins.dm_addr, _pair(ins.vmem_addr, ins.rows), _pair(ins.position, ins.row_elements)]
    if isinstance(ins, MoveInstr):
        return MachineOp.MOVE, [_pair(ins.src, ins.src_stride), _pair(ins.dst, ins.dst_stride),
                                _pair(ins.rows, ins.words)]
    raise FormatError(f"not a machine instruction: {ins!r}")


def encode_machine(instrs: "list[MachineInstr]") -> list[int]:
    """The word stream of machine instructions (docs/isa.md, "The machine")."""
    out: list[int] = []
    for ins in instrs:
        if isinstance(ins, HaltInstr):
            out.append(encode_halt())
            continue
        op, operands = _operands(ins)
        out += [int(op), *operands]
        if isinstance(ins, GemmInstr):
            out += [int(w) for w in ins.words]
    return out


def encode_halt() -> int:
    """The machine's HALT word: the datapath's."""
    from sparsa.isa import Instruction

    return encode(Instruction(Opcode.HALT))


def decode_machine(words: "list[int]") -> list[MachineInstr]:
    """Machine instructions of a word stream, up to and including its HALT.

    Raises
    ------
    IllegalInstructionError
        A header word that is neither a machine opcode with its other bits zero nor HALT
        (the datapath's opcodes are legal only inside a GEMM).
    FormatError
        The stream ends inside an instruction or without HALT, or an operand is out of range.
    """
    words = [int(w) for w in words]
    out: list[MachineInstr] = []
    i = 0
    while i < len(words):
        head = words[i]
        op = opcode_of(head)
        if head == encode_halt():
            out.append(HaltInstr())
            return out
        if op not in set(int(o) for o in MachineOp) or head >> 4:
            raise illegal_instruction(i, head) if not _is_datapath_word(head) else \
                FormatError(f"machine word {i} ({head:#010x}) is a datapath instruction outside a GEMM")
        mop = MachineOp(op)
        n_ops = OPERAND_WORDS[mop]
        ops = words[i + 1:i + 1 + n_ops]
        if len(ops) != n_ops:
            raise FormatError(f"machine word {i}: the stream ends inside {mop.name} ({n_ops} operand words)")
        i += 1 + n_ops
        if mop is MachineOp.SFU:
            out.append(SfuInstr(decode_command(ops)))
        elif mop is MachineOp.GEMM:
            kind, w_addr, a, y, mk, n, count = ops
            if kind >> 4:
                raise FormatError(f"machine word {i - n_ops}: GEMM kind word {kind:#x} sets reserved bits")
            body = words[i:i + count]
            if len(body) != count:
                raise FormatError(f"machine word {i}: the stream ends inside a GEMM of {count} datapath words")
            i += count
            out.append(GemmInstr(_enum(WeightKind, kind & 3, "w_kind"), w_addr, a & _U16, a >> 16, y & _U16,
                                 y >> 16, mk & _U16, mk >> 16, _u("GEMM n", n, 16), tuple(body),
                                 _enum(Plane, kind >> 2, "plane")))
        elif mop in (MachineOp.LOAD, MachineOp.STORE):
            cls = LoadInstr if mop is MachineOp.LOAD else StoreInstr
            out.append(cls(ops[0], ops[1] & _U16, ops[1] >> 16, _u(f"{mop.name} n", ops[2], 16)))
        elif mop is MachineOp.KV_STORE:
            out.append(KvStoreInstr(ops[0], ops[1] & _U16, ops[1] >> 16, ops[2] & _U16, ops[2] >> 16))
        else:
            out.append(MoveInstr(ops[0] & _U16, ops[0] >> 16, ops[1] & _U16, ops[1] >> 16, ops[2] & _U16, ops[2] >> 16))
    raise FormatError("the machine program ended without HALT")


def _enum(cls, value: int, name: str):
    try:
        return cls(value)
    except ValueError:
        raise FormatError(f"GEMM {name} {value} is not one of {', '.join(f'{e.name}={int(e)}' for e in cls)}") from None


def _is_datapath_word(word: int) -> bool:
    from sparsa.isa import is_legal_word

    return is_legal_word(word)
