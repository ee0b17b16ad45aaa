"""The output bank: per-tap tile accumulators and the bank RAM they write, read by DRAIN.

::

    taps[c][u][p] --(+)--> total --(+ old row when accumulate)--> bank row slot u, lane p * cols + c
                     ^  |                                          (written while wen)
         acc[c][u][p] <-+  (first: 0 instead of acc)
    raddr --> bank (synchronous read) --> row --[slot]--> rdata (one output beat)

Each chain tap ``u`` and token lane ``p`` of chain ``c`` has a **tile accumulator**: while
``acc_en`` the beat's tap result is added to it (``first``: to 0 - the first k-tile of an
output tile); the sum ``total`` is also combinational, so the row written in the cycle of a
tile's last k-tile (``wen``) already holds it.  A bank row has ``chain.max_segments`` slots of
``P * cols`` accumulators (slot ``u`` = tap ``u``), all written in one cycle; with
``accumulate`` the written value is ``total`` plus the row read on the (synchronous,
non-transparent) read port, so the controller presents the row being written on ``raddr`` one
cycle ahead (:class:`~sparsa.hdl.chain.controller.ChainController`).  DRAIN reads rows through
the same port; ``rdata`` is slot ``slot`` of the row read (the registered read data, stable
while ``raddr`` holds).  Everything wraps modulo ``2**accumulator_bits``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.accumulator import address_bits
from sparsa.hdl.chain.layouts import (chain_bank_row_layout, chain_output_beat_layout, chain_taps_layout,
                                      check_chain_config)

__all__ = ["OutputBank", "bank_control_signature"]


def bank_control_signature(config: AcceleratorConfig) -> wiring.Signature:
    """The controller's side of the bus to :class:`OutputBank` (all members ``Out``).

    ``acc_en``, ``first``: advance / restart the tile accumulators; ``wen``, ``waddr``,
    ``accumulate``: the row write; ``raddr``: the read port's address; ``slot`` (only with
    ``chain.max_segments > 1``): the slot of the row read that ``rdata`` shows.
    """
    members = {
        "acc_en": Out(1),
        "first": Out(1),
        "wen": Out(1),
        "waddr": Out(address_bits(config)),
        "accumulate": Out(1),
        "raddr": Out(address_bits(config)),
    }
    if config.chain.max_segments > 1:
        members["slot"] = Out(range(config.chain.max_segments))
    return wiring.Signature(members)


class OutputBank(wiring.Component):
    """Tile accumulators and the ``accumulator_depth``-row output bank.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.

    Attributes
    ----------
    taps : In(ArrayLayout(chain taps layout, cols))
        Chain ``c``'s tap ``u`` result for token lane ``p``: ``taps[c][u][p]``.
    ctrl : In(:func:`bank_control_signature`)
        ``acc_en``, ``first``, ``wen``, ``waddr``, ``accumulate``, ``raddr`` and (segmented
        chains) ``slot``, from the controller.
    rdata : Out(chain output beat layout)
        Slot ``ctrl.slot`` (slot 0 when unsegmented) of the row read at ``ctrl.raddr`` in the
        previous cycle.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_chain_config(self, config)
        self._config = config
        super().__init__({
            "taps": In(data.ArrayLayout(chain_taps_layout(config), config.cols)),
            "ctrl": In(bank_control_signature(config)),
            "rdata": Out(chain_output_beat_layout(config)),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the bank was built for."""
        return self._config

    @property
    def depth(self) -> int:
        """Rows of the bank (``buffers.accumulator_depth``)."""
        return self._config.buffers.accumulator_depth

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        cols, smax, tokens = cfg.cols, cfg.chain.max_segments, cfg.token_lanes
        ctrl = self.ctrl
        m.submodules.mem = mem = memory.Memory(shape=chain_bank_row_layout(cfg), depth=self.depth, init=[])
        rp = mem.read_port(domain="sync", transparent_for=())
        wp = mem.write_port(domain="sync")
        m.d.comb += [
            rp.en.eq(1),
            rp.addr.eq(ctrl.raddr),
            self.rdata.eq(rp.data[ctrl.slot] if smax > 1 else rp.data[0]),
            wp.en.eq(ctrl.wen),
            wp.addr.eq(ctrl.waddr),
        ]
        for c in range(cols):
            for u in range(smax):
                for p in range(tokens):
                    accr = Signal(signed(cfg.accumulator_bits), name=f"acc_c{c}_u{u}_t{p}")
                    total = Signal(signed(cfg.accumulator_bits), name=f"sum_c{c}_u{u}_t{p}")
                    m.d.comb += total.eq(self.taps[c][u][p] + Mux(ctrl.first, 0, accr))
                    with m.If(ctrl.acc_en):
                        m.d.sync += accr.eq(total)
                    lane = p * cols + c
                    m.d.comb += wp.data[u][lane].eq(Mux(ctrl.accumulate, total + rp.data[u][lane], total))
        return m
