"""ISA encode/decode round trips and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsa.errors import FormatError, IllegalInstructionError
from sparsa.isa import FIELDS, INSTRUCTION_BITS, Instruction, Opcode, decode, encode


def test_fields_fill_the_word():
    assert sum(f.width for f in FIELDS) == INSTRUCTION_BITS


@given(count=st.integers(1, 65535), acc=st.booleans())
def test_compute_round_trip(count, acc):
    ins = Instruction(Opcode.COMPUTE, count, acc)
    assert decode(encode(ins)) == ins


@pytest.mark.parametrize("op", [Opcode.NOP, Opcode.LOAD_W, Opcode.HALT])
def test_plain_round_trip(op):
    assert decode(encode(Instruction(op))) == Instruction(op)


def test_known_encoding():
    # opcode 2 | accumulate<<4 | count<<5
    assert encode(Instruction(Opcode.COMPUTE, 3, True)) == 2 | 1 << 4 | 3 << 5


def test_refusals():
    with pytest.raises(FormatError, match="unknown opcode 7"):
        decode(7)
    with pytest.raises(IllegalInstructionError, match=r"is NOP with unused bits set \(reserved=2;"):
        decode(1 << 31)
    with pytest.raises(FormatError, match="only COMPUTE takes the accumulate flag"):
        Instruction(Opcode.DRAIN, 1, True)
    with pytest.raises(FormatError, match="count must be in 0..65535, not 70000"):
        Instruction(Opcode.DRAIN, 70000)


@given(count=st.integers(0, 65535))
def test_load_s_round_trip(count):
    ins = Instruction(Opcode.LOAD_S, count)
    assert encode(ins) == 5 | count << 5 and decode(encode(ins)) == ins


def test_load_s_refusals():
    with pytest.raises(FormatError, match="only COMPUTE takes the accumulate flag, not LOAD_S"):
        Instruction(Opcode.LOAD_S, 4, True)
