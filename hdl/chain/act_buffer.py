"""The activation buffer: one RAM per slice lane, written by LOAD_A, read with a skewed address.

::

    wdata (LOAD_A beat: rows words) --ctrl.wen, ctrl.waddr--> lane RAM 0 .. rows-1  (act_depth words)
    ctrl.raddr --[addr_d1]--[addr_d2]-- ... --[addr_dD]      D = groups - 1 + group - 1
                   |  slice i = j * group + s reads at the address delayed d = j + s
                   +--> rdata[i]  (synchronous read, registered while ctrl.en)

A LOAD_A beat writes word ``ctrl.waddr`` of every lane RAM at once (lane ``i`` of the beat into
RAM ``i``).  During COMPUTE the controller presents the k-tile word of the beat it takes on
``ctrl.raddr``; slice ``i``'s RAM reads it ``d_i = j + s`` enabled cycles later, so ``rdata[i]``
shows it after ``d_i + 1`` enabled cycles - the cycle the chain's weight skew delivers the
beat's weight to slice ``i`` (:class:`~sparsa.hdl.chain.chain.SparseChain`).  The address
delay line is shared by the slices (and all chains); the read ports are not transparent (a
read and a write of the same word in one cycle returns the old word; LOAD_A and COMPUTE never
overlap).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.chain.chain import slice_delay
from sparsa.hdl.chain.layouts import chain_act_word_layout, chain_word_bus_layout, check_chain_config

__all__ = ["ActivationBuffer", "act_address_bits", "address_delays", "act_control_signature"]


def act_address_bits(config: AcceleratorConfig) -> int:
    """Width of an activation-buffer word address: ``ceil(log2(chain.act_depth))`` (at least 1)."""
    return max(1, (config.chain.act_depth - 1).bit_length())


def address_delays(config: AcceleratorConfig) -> int:
    """Registers of the address delay line: the largest slice delay, ``groups - 1 + group - 1``."""
    return config.chain_groups - 1 + config.chain.group - 1


def act_control_signature(config: AcceleratorConfig) -> wiring.Signature:
    """The controller's side of the bus to :class:`ActivationBuffer` (all members ``Out``).

    ``wen``, ``waddr``: write the LOAD_A beat; ``en``: advance the reads (the datapath
    enable); ``raddr``: the word of the beat taken in this cycle.
    """
    abits = act_address_bits(config)
    return wiring.Signature({"wen": Out(1), "waddr": Out(abits), "en": Out(1), "raddr": Out(abits)})


class ActivationBuffer(wiring.Component):
    """``rows`` activation-word RAMs (``chain.act_depth`` deep) with per-slice skewed reads.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.

    Attributes
    ----------
    ctrl : In(:func:`act_control_signature`)
        ``wen``: write ``wdata`` at word ``waddr`` (one LOAD_A beat); ``en``: advance the reads
        and the address delay line (the datapath enable); ``raddr``: the word the beat taken in
        this cycle reads (its k-tile).
    wdata : In(chain word bus layout of ``rows`` words)
        One LOAD_A beat (the bits of the activation beat layout); word ``i`` goes to slice
        ``i``'s RAM.
    rdata : Out(chain word bus layout of ``rows`` words)
        Slice ``i``'s word: RAM ``i`` read at ``raddr`` delayed ``j + s`` enabled cycles, then
        registered (read latency 1).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_chain_config(self, config)
        self._config = config
        super().__init__({
            "ctrl": In(act_control_signature(config)),
            "wdata": In(chain_word_bus_layout(config, config.rows)),
            "rdata": Out(chain_word_bus_layout(config, config.rows)),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the buffer was built for."""
        return self._config

    @property
    def depth(self) -> int:
        """Words per lane RAM (``chain.act_depth``)."""
        return self._config.chain.act_depth

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        abits = act_address_bits(cfg)
        ctrl = self.ctrl
        addr_line = [ctrl.raddr]
        for k in range(address_delays(cfg)):
            reg = Signal(abits, name=f"addr_d{k + 1}")
            with m.If(ctrl.en):
                m.d.sync += reg.eq(addr_line[-1])
            addr_line.append(reg)
        for i in range(cfg.rows):
            mem = memory.Memory(shape=chain_act_word_layout(cfg), depth=cfg.chain.act_depth, init=[])
            m.submodules[f"lane{i}"] = mem
            wp = mem.write_port(domain="sync")
            rp = mem.read_port(domain="sync", transparent_for=())
            m.d.comb += [
                wp.addr.eq(ctrl.waddr),
                wp.data.eq(self.wdata[i]),
                wp.en.eq(ctrl.wen),
                rp.en.eq(ctrl.en),
                rp.addr.eq(addr_line[slice_delay(cfg, i)]),
                self.rdata[i].eq(rp.data),
            ]
        return m
