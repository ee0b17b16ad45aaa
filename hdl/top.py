"""The whole accelerator: controller + systolic array + accumulator bank behind four streams.

::

    instr ---> Controller ----------------------------------+-------> done, cycles
                 |  load/row      | en, tag, flush          | addresses, wen
    weights ---> +--> SystolicArray (R x C SparsePEs) --> AccumulatorBank ---> results
    acts ------> (zero lanes in FLUSH) -^                       ^
         +---- LOAD_S: low mantissa_bits bits -> scale RAM ---+

The scale RAM and the scaling stage of the bank exist only with per-token / per-group
activation scales (``act_scale``, docs/actscale-hardware.md).

Stream rules: every ``valid`` / ``ready`` the accelerator drives depends only on its state
(never on the partner's ``ready`` / ``valid``), and ``results.payload`` is the registered
output of the bank's synchronous read port, stable while ``results.valid & ~results.ready``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.errors import UnsupportedError
from sparsa.hdl.accumulator import AccumulatorBank
from sparsa.hdl.array import SystolicArray
from sparsa.hdl.controller import CYCLE_COUNTER_BITS, Controller
from sparsa.hdl.layouts import (activation_beat_layout, check_config, instruction_layout,
                                output_beat_layout, weight_beat_layout)

__all__ = ["SparseSystolicAccelerator"]


class SparseSystolicAccelerator(wiring.Component):
    """Weight-stationary N:M-sparse int8/int4 GEMM accelerator.

    Computes ``Y = A @ W`` tile by tile as the instruction stream directs (see
    :mod:`sparsa.isa` and :mod:`sparsa.timing`).

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator; :meth:`~sparsa.config.AcceleratorConfig.require_supported` must pass.
    flush_cycles : int, optional
        Override of the COMPUTE flush length, for tests only (default: the timing contract).
    pe_modules : bool
        One Verilog module per PE instead of PEs inlined into the array (same circuit; see
        :class:`~sparsa.hdl.array.SystolicArray`).

    Attributes
    ----------
    instr : In(stream.Signature(instruction layout))
        32-bit instruction words.
    weights : In(stream.Signature(weight beat layout))
        One beat per PE row during LOAD_W.
    acts : In(stream.Signature(activation beat layout))
        One beat per input row during COMPUTE; one scale mantissa (low bits) per row during LOAD_S.
    results : Out(stream.Signature(output beat layout))
        One accumulator row per beat during DRAIN.
    done : Out(1)
        High once HALT (or an illegal opcode) has been fetched.
    illegal : Out(1)
        High once an illegal instruction word (unassigned opcode, or unused bits set) has been fetched: the accelerator stopped on
        it (``done`` is high too; docs/isa.md#illegal-instructions).
    cycles : Out(32)
        Cycles from reset release up to and including the HALT (or illegal-opcode) fetch.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`AcceleratorConfig`.
    sparsa.errors.UnsupportedError
        If the configuration asks for a datapath or number format not implemented.
    """

    def __init__(self, config: AcceleratorConfig, *, flush_cycles: "int | None" = None,
                 pe_modules: bool = False) -> None:
        check_config(config)
        if config.datapath.kind != "systolic":
            self._MustUse__silence = True     # no UnusedElaboratable warning for a refused design
            raise UnsupportedError(
                f"datapath.kind={config.datapath.kind!r} is not implemented by SparseSystolicAccelerator; "
                f"use sparsa.hdl.chain.top.SparseChainAccelerator")
        config.require_supported()
        self._config = config
        self._array = SystolicArray(config, pe_modules=pe_modules)
        # Build the controller now so a bad flush_cycles fails at construction.
        self._controller = Controller(config, flush_cycles=flush_cycles)
        self._acc = AccumulatorBank(config)
        super().__init__({
            "instr": In(stream.Signature(instruction_layout())),
            "weights": In(stream.Signature(weight_beat_layout(config))),
            "acts": In(stream.Signature(activation_beat_layout(config))),
            "results": Out(stream.Signature(output_beat_layout(config))),
            "done": Out(1),
            "illegal": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self._config

    @property
    def controller(self) -> Controller:
        """The controller submodule (its ports, e.g. ``state`` and ``acc_wen``, are for tests)."""
        return self._controller

    @property
    def array(self) -> SystolicArray:
        """The systolic array submodule."""
        return self._array

    @property
    def acc(self) -> AccumulatorBank:
        """The accumulator bank submodule (its ``mem_wen`` shows the RAM writes, for tests)."""
        return self._acc

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.controller = ctrl = self._controller
        m.submodules.array = array = self._array
        m.submodules.acc = acc = self._acc

        wiring.connect(m, wiring.flipped(self.instr), ctrl.instr)
        # The array's input register (ARRAY_INPUT_LATENCY): the accepted activation beat, used
        # in the next cycle, when the controller's registered enable lets the array take it.
        act_q = Signal(len(self.acts.payload.as_value()), name="act_q")
        with m.If(self.acts.valid & self.acts.ready):
            m.d.sync += act_q.eq(self.acts.payload)
        m.d.comb += [
            ctrl.weights_valid.eq(self.weights.valid),
            self.weights.ready.eq(ctrl.weights_ready),
            ctrl.acts_valid.eq(self.acts.valid),
            self.acts.ready.eq(ctrl.acts_ready),
            self.results.valid.eq(ctrl.results_valid),
            ctrl.results_ready.eq(self.results.ready),
            self.results.payload.eq(acc.rdata),
            self.done.eq(ctrl.done),
            self.illegal.eq(ctrl.illegal),
            self.cycles.eq(ctrl.cycles),

            array.en.eq(ctrl.array_en),
            array.valid_in.eq(ctrl.array_valid_in),
            # Zero lanes during the flush: no junk toggling, and nothing stale is ever summed.
            array.lanes_in.eq(Mux(ctrl.array_flush, 0, act_q)),
            array.load.eq(ctrl.load),
            array.load_row.eq(ctrl.load_row),
            array.load_data.eq(self.weights.payload),
            ctrl.array_valid_out.eq(array.valid_out),

            acc.raddr.eq(ctrl.acc_raddr),
            acc.en.eq(ctrl.array_en),
            acc.wen.eq(ctrl.acc_wen),
            acc.waddr.eq(ctrl.acc_waddr),
            acc.wdata.eq(array.result),
            acc.accumulate.eq(ctrl.acc_accumulate),
        ]
        if acc.scaled:
            # LOAD_S: the scale mantissa is the activation beat's low mantissa_bits bits.
            m.d.comb += [
                acc.scale_wen.eq(ctrl.scale_wen),
                acc.scale_waddr.eq(ctrl.scale_waddr),
                acc.scale_wdata.eq(self.acts.payload.as_value()[: self._config.act_scale.mantissa_bits]),
            ]
        return m
