"""``pack_lanes`` / ``unpack_lanes`` (the stream bit layouts' packers) against the bit-by-bit definition.

The packers are vectorized (numpy bit arrays); the definition is the loop they replaced: element
``i`` in bits ``i * width ..`` of the word, two's complement, masked to ``width`` bits.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.layout import pack_lanes, unpack_lanes


def _pack(values, width: int) -> int:
    mask, word = (1 << width) - 1, 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def _unpack(word: int, width: int, count: int, signed: bool) -> list[int]:
    out = []
    for i in range(count):
        v = (word >> (i * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if signed and v >> (width - 1) else v)
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 63), st.data())                     # int64 lanes: at most 63 bits unsigned
def test_pack_and_unpack_equal_the_bitwise_definition(width, data):
    lo, hi = -(1 << min(width, 63)), (1 << min(width, 63)) - 1          # wider than the lanes: masked
    values = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=300))
    word = pack_lanes(np.array(values, dtype=object if width > 62 else np.int64), width)
    assert word == _pack(values, width)
    signed = data.draw(st.booleans())
    extra = data.draw(st.integers(0, 3)) << (len(values) * width)      # bits above the lanes are ignored
    assert unpack_lanes(word | extra, width, len(values), signed).tolist() == _unpack(word, width, len(values), signed)
