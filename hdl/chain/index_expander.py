"""The chain's N:M index expander: compact ``index`` metadata -> the weight beat's slot indices.

::

    compact beat (cols x rows lanes of value + log2(m) bits) --+--> weight beat (value + log2(group_size))
    select (which n:m the layer runs) ------------------------'

A layer pruned ``n:m`` with ``m < group_size`` runs as ``n_hw:group_size`` (``n_hw = n *
group_size / m``); slot ``i`` of a k-tile holds an element of sub-group ``(i mod n_hw) // n`` of
its group (:func:`sparsa.chain_layout.chain_index_subgroups`), fixed per slice when the k-tile
length is a multiple of ``n_hw`` (the compiler uses the ``index`` encoding only then,
:func:`sparsa.chain_layout.chain_metadata_decodable`).  So the expander is wiring: slice ``i``'s
index is ``Cat(index, sub-group(i))``, one such wiring per supported pattern behind a mux on
``select``.  It is combinational and passes the stream's ``valid`` / ``ready`` straight
through: a beat in, a beat out, in the same cycle - :data:`sparsa.chain_timing.INDEX_EXPANDER_CYCLES`
(0) extra cycles, and the chain's timing contract is unchanged.

The naive model is :func:`sparsa.chain_layout.expand_chain_compact_weight_beat` (itself
:func:`sparsa.formats.nm_meta.expand_indices`).  The memory side (packing the compact stream into
memory words and back into beats) is not part of this component.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import chain_compact_patterns, chain_compact_weight_beat_bits, chain_index_subgroups
from sparsa.config import AcceleratorConfig
from sparsa.formats.nm import NMPattern
from sparsa.hdl.chain.layouts import chain_weight_beat_layout, check_chain_config

__all__ = ["IndexExpander"]


class IndexExpander(wiring.Component):
    """Expand a compact-index weight beat into the chain's weight beat (see the module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.
    patterns : sequence of NMPattern or str, optional
        The patterns ``select`` chooses from, in that order; each needs ``m < group_size``,
        ``m`` dividing ``group_size`` and ``n_hw`` dividing ``rows``.  Default: every such
        pattern (:func:`~sparsa.chain_layout.chain_compact_patterns`).

    Attributes
    ----------
    select : In(range(len(patterns)))
        Index of the pattern of the beats flowing through (held for a whole layer).
    compact : In(stream.Signature(unsigned(widest compact beat)))
        ``cols * rows`` lanes of ``weight_bits + log2(m)`` bits (the selected pattern's ``m``),
        lane ``c * rows + i`` as in the weight beat; the bits above the selected width are ignored.
    weights : Out(stream.Signature(chain weight beat layout))
        The same lanes with each index expanded to ``log2(group_size)`` bits.
    """

    def __init__(self, config: AcceleratorConfig, patterns: "Sequence[NMPattern | str] | None" = None) -> None:
        check_chain_config(self, config)
        try:
            self._patterns = self._check_patterns(config, patterns)
        except (TypeError, ValueError):
            self._MustUse__silence = True
            raise
        self._config = config
        width = max(chain_compact_weight_beat_bits(config, p.m) for p in self._patterns)
        super().__init__({
            "select": In(range(max(2, len(self._patterns)))),
            "compact": In(stream.Signature(unsigned(width))),
            "weights": Out(stream.Signature(chain_weight_beat_layout(config))),
        })

    @staticmethod
    def _check_patterns(config: AcceleratorConfig, patterns) -> tuple[NMPattern, ...]:
        allowed = chain_compact_patterns(config)
        if patterns is None:
            if not allowed:
                raise ValueError(f"no N:M pattern has a compact index on this chain (chain.packing="
                                 f"{config.chain.packing!r}, group_size={config.group_size}, rows={config.rows})")
            return allowed
        if isinstance(patterns, (str, NMPattern)) or not isinstance(patterns, Sequence) or not patterns:
            raise TypeError(f"patterns must be a non-empty sequence of N:M patterns, not {patterns!r}")
        out = tuple(NMPattern.parse(p, dense_m=config.group_size) for p in patterns)
        bad = [str(p) for p in out if p not in allowed]
        if bad:
            raise ValueError(f"patterns {', '.join(bad)} have no compact index on this chain; allowed: "
                             f"{', '.join(str(p) for p in allowed)}")
        return out

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the expander was built for."""
        return self._config

    @property
    def patterns(self) -> tuple[NMPattern, ...]:
        """The patterns ``select`` chooses from."""
        return self._patterns

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self._config
        wb, ib = cfg.weight_bits, cfg.index_bits
        m.d.comb += [self.weights.valid.eq(self.compact.valid), self.compact.ready.eq(self.weights.ready)]
        with m.Switch(self.select):
            for k, pattern in enumerate(self._patterns):
                with m.Case(k):
                    sub_bits = int(pattern.m - 1).bit_length()
                    lane = wb + sub_bits
                    subgroups = chain_index_subgroups(cfg, pattern.n, pattern.m)
                    for c in range(cfg.cols):
                        for i in range(cfg.rows):
                            at = (c * cfg.rows + i) * lane
                            out = self.weights.payload[c][i]
                            m.d.comb += [
                                out.value.eq(self.compact.payload[at:at + wb]),
                                out.index.eq(Cat(self.compact.payload[at + wb:at + lane],
                                                 Const(int(subgroups[i]), ib - sub_bits))),
                            ]
        return m
