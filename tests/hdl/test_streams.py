"""Stream protocol of the accelerator under random stalls.

One testbench drives all four streams cycle by cycle with random valid/ready and checks, in
every cycle:

* each ready/valid the accelerator drives does not depend on the partner's valid/ready
  (the partner signal is toggled and the accelerator's signal must not move);
* once ``results.valid`` is high it stays high, with the same payload, until a transfer;
* the results equal the NumPy reference whatever the stall pattern.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.hdl.top import SparseSystolicAccelerator
from sparsa.layout import unpack_output_beat
from sparsa.models.reference import gemm_reference
from sparsa.sim.backends.amaranth_backend import pack_program

from ..conftest import preset
from .helpers import simulate


@pytest.mark.parametrize("name,seed", [("systolic-4x4-2of4", 0), ("systolic-4x8-m8", 1), ("systolic-4x4-int4", 2)])
def test_protocol_under_random_stalls(name, seed):
    cfg = preset(name)
    rng = np.random.default_rng(seed)
    m, k, n = 9, 3 * cfg.group_size + 1, cfg.cols + 2
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-(1 << (cfg.weight_bits - 1)), 1 << (cfg.weight_bits - 1), (k, n))
    program = compile_gemm(cfg, w, m)
    streams = pack_program(program, a)
    dut = SparseSystolicAccelerator(cfg)
    sources = [dut.instr, dut.weights, dut.acts]
    outputs = []

    async def tb(ctx):
        index = [0, 0, 0]
        held = None            # (payload) of a results beat offered but not yet taken
        for cycle in range(20000):
            if ctx.get(dut.done):
                break
            # accelerator outputs must not depend on the partner's handshake signal
            for port in sources:
                ctx.set(port.valid, 0)
                r0 = ctx.get(port.ready)
                ctx.set(port.valid, 1)
                assert ctx.get(port.ready) == r0, f"{port} ready depends on valid (cycle {cycle})"
            ctx.set(dut.results.ready, 0)
            v0 = ctx.get(dut.results.valid)
            ctx.set(dut.results.ready, 1)
            assert ctx.get(dut.results.valid) == v0, f"results.valid depends on ready (cycle {cycle})"
            payload = ctx.get(dut.results.payload.as_value())
            if held is not None:
                assert v0 == 1, f"results.valid dropped without a transfer (cycle {cycle})"
                assert payload == held, f"results.payload changed while not taken (cycle {cycle})"
            # this cycle's random handshakes
            transfers = []
            for s, port in enumerate(sources):
                valid = int(index[s] < len(streams[s]) and rng.random() < 0.6)
                ctx.set(port.valid, valid)
                if valid:
                    ctx.set(port.payload.as_value(), streams[s][index[s]])
                transfers.append(valid and ctx.get(port.ready))
            ready = int(rng.random() < 0.5)
            ctx.set(dut.results.ready, ready)
            if v0 and ready:
                outputs.append(payload)
                held = None
            elif v0:
                held = payload
            await ctx.tick()
            for s in range(3):
                index[s] += int(transfers[s])
        else:
            raise AssertionError("done never rose")
        assert index == [len(x) for x in streams]

    simulate(dut, tb)
    beats = np.array([unpack_output_beat(cfg, x) for x in outputs]).reshape(-1, cfg.cols)
    np.testing.assert_array_equal(program.collect_outputs(beats),
                                  gemm_reference(a, program.weights, cfg.accumulator_bits))
