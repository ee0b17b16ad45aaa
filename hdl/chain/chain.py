"""One sparse DSP chain (vector unit): weight skew, DSP groups, cascade cuts and taps.

::

    weights[i] --[d_i + 1 regs]--> group 0 [slice 0 .. g-1] -> node 0 --link--> group 1 ... node G-1
    words[i] (skewed by the buffer) -^                           |  (cut: link = 0)     |
                                                   tap u --[G-1-j regs]--> taps[u]   taps[Smax-1]

``rows`` slices in ``G = rows / chain.group`` DSP groups (:class:`~sparsa.hdl.chain.group.
DspGroup`).  Slice ``i = j * group + s`` (group ``j``, position ``s``) works on a beat
``d_i = j + s`` enabled cycles after the chain took it: its weight lane is delayed
``d_i + 1`` registers here, its activation word arrives from the buffer's synchronous read at
the skewed address (:class:`~sparsa.hdl.chain.act_buffer.ActivationBuffer`), so both meet in
the same cycle.

Cascade cutting (docs/chain.md "Cutting the cascade"): with ``Smax = chain.max_segments`` the
reduction nodes ``j = (u + 1) * G / Smax - 1`` are *taps*.  Tap ``u`` cuts the cascade (the
next node's ``link_in`` is 0) while ``cut[u]`` is high; its output is delayed by ``G - 1 - j``
registers so that every tap reaches ``taps[u]`` in the cycle of the last node:
:func:`chain_pipeline_latency` enabled cycles after the beat was taken, for every tap.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import weight_values
from sparsa.config import AcceleratorConfig
from sparsa.hdl.chain.group import DspGroup, group_latency
from sparsa.hdl.chain.layouts import (chain_taps_layout, chain_token_layout, chain_weight_lane_layout,
                                      chain_word_bus_layout, check_chain_config)

__all__ = ["SparseChain", "chain_pipeline_latency", "slice_delay", "tap_groups"]


def slice_delay(config: AcceleratorConfig, i: int) -> int:
    """Enabled cycles slice ``i`` works behind the beat it belongs to: ``j + s`` for ``i = j * group + s``."""
    j, s = divmod(i, config.chain.group)
    return j + s


def tap_groups(config: AcceleratorConfig) -> list[int]:
    """The DSP group whose node is tap ``u``, for ``u = 0 .. chain.max_segments - 1``."""
    gps = config.chain_groups // config.chain.max_segments
    return [(u + 1) * gps - 1 for u in range(config.chain.max_segments)]


def chain_pipeline_latency(config: AcceleratorConfig) -> int:
    """Enabled cycles from a weight beat on ``weights`` to its results on ``taps``.

    ``groups + group + 3``: the weight register that matches the buffer's synchronous read
    (1), the last group's skew (``groups - 1``) and the group (``group + 3``).  It equals
    :func:`sparsa.chain_timing.chain_latency`: the output bank adds the taps to the tile
    accumulators and writes its row in the cycle they appear.
    """
    return 1 + config.chain_groups - 1 + group_latency(config)


class SparseChain(wiring.Component):
    """``rows`` MAC slices in DSP groups with reduction nodes, cut into segments by ``cut``.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.

    Attributes
    ----------
    en : In(1)
        Advance every register of the chain.
    weights : In(ArrayLayout(chain weight lane layout, rows))
        The chain's lanes of the weight beat taken in this cycle (slice ``i``: lane ``i``).
    words : In(chain word bus layout of ``rows`` words)
        Slice ``i``'s activation word, already skewed by ``slice_delay(i)`` and read (the
        activation buffer's ``rdata``).
    cut : In(chain.max_segments)
        Bit ``u``: tap ``u`` ends a segment (the next node's link input is 0).  The last tap
        always ends one; its bit is not used.
    taps : Out(chain taps layout)
        Tap ``u``'s node output per token lane, all aligned to the last node's cycle.
    pack_outputs : In(1)
        Only with ``chain.packing: both``: output packing for every slice (held for a whole
        COMPUTE, so it needs no skew).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_chain_config(self, config)
        self._config = config
        members = {
            "en": In(1),
            "weights": In(data.ArrayLayout(chain_weight_lane_layout(config), config.rows)),
            "words": In(chain_word_bus_layout(config, config.rows)),
            "cut": In(config.chain.max_segments),
            "taps": Out(chain_taps_layout(config)),
        }
        if weight_values(config) == 2:
            members["pack_outputs"] = In(1)
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the chain was built for."""
        return self._config

    @property
    def latency(self) -> int:
        """:func:`chain_pipeline_latency` of the configuration."""
        return chain_pipeline_latency(self._config)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        group, groups = cfg.chain.group, cfg.chain_groups
        taps = tap_groups(cfg)
        link = None
        for j in range(groups):
            grp = DspGroup(cfg, link=link is not None)
            m.submodules[f"group{j}"] = grp
            m.d.comb += grp.en.eq(self.en)
            if weight_values(cfg) == 2:
                m.d.comb += grp.pack_outputs.eq(self.pack_outputs)
            if link is not None:
                m.d.comb += grp.link_in.eq(link)
            for s in range(group):
                i = j * group + s
                # Weight skew: d + 1 registers (the buffer's read register is the "+ 1" of the words).
                w = self.weights[i]
                for k in range(slice_delay(cfg, i) + 1):
                    reg = Signal(chain_weight_lane_layout(cfg), name=f"w_s{i}_d{k}")
                    with m.If(self.en):
                        m.d.sync += reg.eq(w)
                    w = reg
                m.d.comb += [grp.weights[s].eq(w), grp.words[s].eq(self.words[i])]
            red = grp.node_out
            link = red
            if j in taps:
                # Tap u: emit this node's output (delayed to the last node's cycle) and, when
                # the latched S cuts here, feed the next node a zero link.
                u = taps.index(j)
                out = red
                for k in range(groups - 1 - j):
                    delayed = Signal(chain_token_layout(cfg), name=f"tap_u{u}_d{k + 1}")
                    with m.If(self.en):
                        m.d.sync += delayed.eq(out)
                    out = delayed
                m.d.comb += self.taps[u].eq(out)
                if j < groups - 1:
                    link = Signal(chain_token_layout(cfg), name=f"link_u{u}")
                    m.d.comb += [link[p].eq(Mux(self.cut[u], 0, red[p])) for p in range(cfg.token_lanes)]
        return m
