"""Small helpers shared by the HDL tests: run an Amaranth testbench, naive reference models."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from sparsa.isa import Instruction, Opcode, encode
from sparsa.models.reference import wrap

__all__ = ["simulate", "wrap", "words", "mac_reference", "expect_error"]


def expect_error(exc_type, match: str, factory) -> None:
    """Assert ``factory()`` raises ``exc_type`` matching ``match``.

    A component whose ``__init__`` raises was already created by ``__new__``; Amaranth warns
    (UnusedElaboratable) when it is collected.  That warning is expected here, so it is
    silenced while the half-built object is collected.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(exc_type, match=match) as info:
            factory()
        del info
        gc.collect()


def simulate(dut, *testbenches, background=(), vcd: "str | None" = None) -> None:
    """Run ``testbenches`` (critical) and ``background`` ones on ``dut`` with a clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def words(*items) -> list[int]:
    """Instruction words from ``(Opcode, count, accumulate)`` tuples, Opcodes or raw ints."""
    out = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, Opcode):
            out.append(item)
        elif isinstance(item, Opcode):
            out.append(encode(Instruction(item)))
        else:
            out.append(encode(Instruction(*item)))
    return out


def mac_reference(values: np.ndarray, indices: np.ndarray, lanes: np.ndarray, acc_bits: int) -> np.ndarray:
    """Naive array model: ``y[i, c] = sum_r values[r, c] * lanes[i, r, indices[r, c]]`` wrapped.

    ``values``/``indices``: (rows, cols); ``lanes``: (n, rows, group_size).
    """
    n, rows, _ = lanes.shape
    cols = values.shape[1]
    y = np.zeros((n, cols), dtype=np.int64)
    for i in range(n):
        for r in range(rows):
            for c in range(cols):
                y[i, c] += int(values[r, c]) * int(lanes[i, r, indices[r, c]])
    return wrap(y, acc_bits)
