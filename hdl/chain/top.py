"""The whole DSP-chain accelerator: controller, activation buffer, ``cols`` chains and the output bank.

::

    instr ----> ChainController --------------------------------------------------> done, cycles, state
                  | act (wen, waddr, en, raddr)  | en, cut                | bank (acc_en, first, wen, addrs)
    acts -----> ActivationBuffer --rdata (skewed words)--+                 v
    weights[c] ---------------------------------> SparseChain c --taps--> OutputBank ---> results

The component cut follows the Gemmini decomposition: :class:`~sparsa.hdl.chain.slice.
ChainSlice` (sparse MUX + multiplier + cascade adder) -> :class:`~sparsa.hdl.chain.group.
DspGroup` (slices + reduction node) -> :class:`~sparsa.hdl.chain.chain.SparseChain` (weight
skew, groups, cuts, taps) -> :class:`SparseChainAccelerator`; the overview of the datapath is
in :mod:`sparsa.hdl.chain`.  Timing is :mod:`sparsa.chain_timing`.  Stream rules as the
systolic top: every valid/ready the accelerator drives depends on its state only,
``results.payload`` is the registered output of the bank's synchronous read port.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import weight_values
from sparsa.config import AcceleratorConfig
from sparsa.hdl.chain.act_buffer import ActivationBuffer
from sparsa.hdl.chain.chain import SparseChain
from sparsa.hdl.chain.controller import ChainController, ChainState
from sparsa.hdl.chain.layouts import (chain_act_beat_layout, chain_output_beat_layout, chain_weight_beat_layout,
                                      check_chain_config)
from sparsa.hdl.chain.output_bank import OutputBank
from sparsa.hdl.controller import CYCLE_COUNTER_BITS
from sparsa.hdl.layouts import instruction_layout

__all__ = ["SparseChainAccelerator"]


class SparseChainAccelerator(wiring.Component):
    """N:M-sparse int8/int4 GEMM/GEMV accelerator built from sparse DSP chains.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.
    flush_cycles : int, optional
        Override of the COMPUTE flush length, for tests only (default: the timing contract).

    Attributes
    ----------
    instr : In(stream.Signature(instruction layout))
        32-bit instruction words; ``ready`` in FETCH only.
    weights : In(stream.Signature(chain weight beat layout))
        One beat per k-tile of every output tile during COMPUTE (``cols`` chains x ``rows``
        compressed weights with their N:M indices); ``ready`` in STREAM.
    acts : In(stream.Signature(chain activation beat layout))
        Activation-buffer words during LOAD_A (one k-tile of ``token_lanes`` tokens each); ``ready`` in LOAD_A.
    results : Out(stream.Signature(chain output beat layout))
        Output-bank rows during DRAIN; ``valid`` in DRAIN.
    done : Out(1)
        High once HALT (or an illegal opcode) has been fetched.
    illegal : Out(1)
        High once an illegal instruction word (unassigned opcode, or unused bits set) has been fetched: the accelerator stopped on
        it (``done`` is high too; docs/isa.md#illegal-instructions).
    cycles : Out(32)
        Cycles from reset release up to and including the HALT (or illegal-opcode) fetch.
    state : Out(ChainState)
        The controller's :class:`~sparsa.hdl.chain.controller.ChainState` (for tests and
        debugging; FETCH after reset).

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`AcceleratorConfig`.
    sparsa.errors.UnsupportedError
        If ``datapath.kind`` is not ``'dsp_chain'`` or the number formats are not implemented.
    ValueError
        If ``flush_cycles`` is not a positive integer.
    """

    def __init__(self, config: AcceleratorConfig, *, flush_cycles: "int | None" = None) -> None:
        check_chain_config(self, config)
        try:
            # Built now so that a bad flush_cycles fails at construction.
            self._controller = ChainController(config, flush_cycles=flush_cycles)
        except ValueError:
            self._MustUse__silence = True
            raise
        self._config = config
        self._act_buffer = ActivationBuffer(config)
        self._chains = [SparseChain(config) for _ in range(config.cols)]
        self._bank = OutputBank(config)
        super().__init__({
            "instr": In(stream.Signature(instruction_layout())),
            "weights": In(stream.Signature(chain_weight_beat_layout(config))),
            "acts": In(stream.Signature(chain_act_beat_layout(config))),
            "results": Out(stream.Signature(chain_output_beat_layout(config))),
            "done": Out(1),
            "illegal": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "state": Out(ChainState),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self._config

    @property
    def flush_cycles(self) -> int:
        """Cycles of a COMPUTE's FLUSH state."""
        return self._controller.flush_cycles

    @property
    def controller(self) -> ChainController:
        """The controller submodule (its ``state`` is what the stream harness reports on a timeout)."""
        return self._controller

    @property
    def act_buffer(self) -> ActivationBuffer:
        """The activation-buffer submodule."""
        return self._act_buffer

    @property
    def chains(self) -> tuple[SparseChain, ...]:
        """The ``cols`` chain submodules (vector units)."""
        return tuple(self._chains)

    @property
    def bank(self) -> OutputBank:
        """The output-bank submodule."""
        return self._bank

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.controller = ctrl = self._controller
        m.submodules.act_buffer = buf = self._act_buffer
        m.submodules.bank = bank = self._bank

        wiring.connect(m, wiring.flipped(self.instr), ctrl.instr)
        wiring.connect(m, ctrl.act, buf.ctrl)
        wiring.connect(m, ctrl.bank, bank.ctrl)
        m.d.comb += [
            ctrl.weights_valid.eq(self.weights.valid),
            self.weights.ready.eq(ctrl.weights_ready),
            ctrl.acts_valid.eq(self.acts.valid),
            self.acts.ready.eq(ctrl.acts_ready),
            buf.wdata.eq(self.acts.payload),
            self.results.valid.eq(ctrl.results_valid),
            ctrl.results_ready.eq(self.results.ready),
            self.results.payload.eq(bank.rdata),
            self.done.eq(ctrl.done),
            self.illegal.eq(ctrl.illegal),
            self.cycles.eq(ctrl.cycles),
            self.state.eq(ctrl.state),
        ]
        for c, chain in enumerate(self._chains):
            m.submodules[f"chain{c}"] = chain
            m.d.comb += [
                chain.en.eq(ctrl.en),
                chain.cut.eq(ctrl.cut),
                *([chain.pack_outputs.eq(ctrl.pack_outputs)] if weight_values(self._config) == 2 else []),
                chain.weights.eq(self.weights.payload[c]),
                chain.words.eq(buf.rdata),
                bank.taps[c].eq(chain.taps),
            ]
        return m
