"""A DSP group: ``chain.group`` cascaded slices and the group's reduction node.

::

    slice 0 --cascade--> slice 1 --cascade--> ... slice g-1 --group sum--+
                                                                         | split into P lanes
    link_in (P accumulators, previous node) --------------------------> (+) --> node_out (registered)

Slice ``s`` of the group takes its operands ``s`` enabled cycles after slice 0 (the chain's
skew), so the cascade sums the products of one beat.  The **reduction node** splits the
group sum into its ``P`` token lanes and adds the previous node's output (the inter-group
link, absent for group 0)::

    P = 1:  node_out[0] <= link_in[0] + sum
    P = 2:  LSP = sum[0:18] (signed)                  # low lane, sign-extended
            MSP = sum[18:48] (signed) + sum[17]       # the rest, plus the borrow of a negative LSP
            node_out <= (link_in[0] + LSP, link_in[1] + MSP)

The split is exact (``LSP = sum_s w_s * a0_s``, ``MSP = sum_s w_s * a1_s``) while the group
sums at most :meth:`~sparsa.config.AcceleratorConfig.max_packed_group` products (proof in
docs/chain.md).  Latency: a beat whose slice-0 operands arrive in enabled cycle ``t`` is on
``node_out`` after enabled cycle ``t + group + 3`` (:func:`group_latency`); the ``link_in`` that
is added to it must be presented in the enabled cycle before.  Accumulators wrap modulo
``2**accumulator_bits``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import PACK_SHIFT
from sparsa.config import AcceleratorConfig
from sparsa.hdl.chain.layouts import (chain_token_layout, chain_weight_lane_layout, chain_word_bus_layout,
                                      check_chain_config)
from sparsa.chain_layout import weight_values
from sparsa.hdl.chain.slice import SLICE_LATENCY, ChainSlice, cascade_shape, chain_slice

__all__ = ["DspGroup", "group_latency", "split_packed_sum"]


def group_latency(config: AcceleratorConfig) -> int:
    """Enabled cycles from slice 0's operands to ``node_out``: ``group + 3`` (the slice pipeline,
    ``group - 1`` more cascade registers and the node register)."""
    return SLICE_LATENCY + config.chain.group


def split_packed_sum(config: AcceleratorConfig, total) -> list:
    """The ``P`` token lanes of a group sum: ``[total]``, or packed ``[LSP, MSP]``."""
    if config.token_lanes == 2:
        low = total[:PACK_SHIFT].as_signed()
        high = total[PACK_SHIFT:].as_signed() + total[PACK_SHIFT - 1]
        return [low, high]
    return [total]


class DspGroup(wiring.Component):
    """``chain.group`` :class:`~sparsa.hdl.chain.slice.ChainSlice` s and a reduction node.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.
    link : bool
        Whether the node adds a ``link_in`` (every group of a chain but the first).
    slice_modules : bool
        Instantiate one :class:`~sparsa.hdl.chain.slice.ChainSlice` submodule per slice (one
        Verilog module each) instead of inlining the same logic
        (:func:`~sparsa.hdl.chain.slice.chain_slice`) into the group.  The inlined form is the
        default: the same circuit with no per-slice port copies, which Amaranth simulates and
        converts faster (like ``pe_modules`` of the systolic array).

    Attributes
    ----------
    en : In(1)
        Advance every register of the group.
    weights : In(ArrayLayout(chain weight lane layout, group))
        Slice ``s``'s weight (``value``, N:M ``index``).
    words : In(chain word bus layout of ``group`` words)
        Slice ``s``'s activation word (``P`` tokens x ``group_size``, opaque bits).
    link_in : In(chain token layout)
        The previous node's output (or 0 when the chain is cut there); only when ``link``.
    node_out : Out(chain token layout)
        ``link_in + lanes(group sum)``, registered, one accumulator per token lane.
    pack_outputs : In(1)
        Only with ``chain.packing: both``: the slices pack two output columns (lane ``p`` =
        column ``p`` of the pair instead of token ``p``).
    """

    def __init__(self, config: AcceleratorConfig, *, link: bool, slice_modules: bool = False) -> None:
        check_chain_config(self, config)
        for name, value in (("link", link), ("slice_modules", slice_modules)):
            if not isinstance(value, bool):
                self._MustUse__silence = True
                raise TypeError(f"{name} must be a bool, not {value!r}")
        self._config = config
        self._link = link
        self._slice_modules = slice_modules
        group = config.chain.group
        members = {
            "en": In(1),
            "weights": In(data.ArrayLayout(chain_weight_lane_layout(config), group)),
            "words": In(chain_word_bus_layout(config, group)),
            "node_out": Out(chain_token_layout(config)),
        }
        if weight_values(config) == 2:
            members["pack_outputs"] = In(1)
        if link:
            members["link_in"] = In(chain_token_layout(config))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the group was built for."""
        return self._config

    @property
    def link(self) -> bool:
        """Whether the reduction node has a ``link_in``."""
        return self._link

    @property
    def slice_modules(self) -> bool:
        """Whether each slice is a :class:`~sparsa.hdl.chain.slice.ChainSlice` submodule (else inlined)."""
        return self._slice_modules

    @property
    def latency(self) -> int:
        """:func:`group_latency` of the configuration."""
        return group_latency(self._config)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        gsum = None
        both = weight_values(cfg) == 2
        for s in range(cfg.chain.group):
            if self._slice_modules:
                sl = ChainSlice(cfg, cascade=gsum is not None)
                m.submodules[f"slice{s}"] = sl
                m.d.comb += [sl.en.eq(self.en), sl.weight.eq(self.weights[s]), sl.word.eq(self.words[s])]
                if both:
                    m.d.comb += sl.pack_outputs.eq(self.pack_outputs)
                if gsum is not None:
                    m.d.comb += sl.cascade_in.eq(gsum)
                gsum = sl.cascade_out
            else:
                out = Signal(cascade_shape(cfg), name=f"s{s}_cascade")
                chain_slice(m, cfg, en=self.en, weight=self.weights[s], word=self.words[s], cascade_in=gsum,
                            cascade_out=out, prefix=f"s{s}_", pack_outputs=self.pack_outputs if both else None)
                gsum = out
        # Reduction node: split the packed group sum into token lanes, add the link.
        lanes = split_packed_sum(cfg, gsum)
        with m.If(self.en):
            for p in range(cfg.token_lanes):
                m.d.sync += self.node_out[p].eq(self.link_in[p] + lanes[p] if self._link else lanes[p])
        return m
