"""The weight-stationary systolic array with input skew, output deskew and a valid tag.

Data movement (``R = rows``, ``C = cols``)::

    lanes_in[0] ------------> PE(0,0) -> PE(0,1) -> ... -> PE(0,C-1)
    lanes_in[1] --[1 reg]---> PE(1,0) -> PE(1,1) -> ... -> PE(1,C-1)
       ...                       |          |                 |
    lanes_in[R-1] -[R-1 regs]-> PE(R-1,0) ...              PE(R-1,C-1)
                                 |          |                 |
                            [C-1 regs] [C-2 regs]   ...    [0 regs]
                                 |          |                 |
                              result[0]  result[1]  ...   result[C-1]

Activation lanes move one PE to the right per enabled cycle, partial sums one PE down.
A beat accepted in (enabled) cycle ``t`` reaches ``result`` in enabled cycle
``t + R + C + 1`` (see :func:`latency` and docs/hdl.md), all columns at once: every PE is
three registers deep (sparse-MUX output, product, partial sum; :mod:`sparsa.hdl.pe`).  A 1-bit tag
shift register of the same length turns ``valid_in`` into ``valid_out``.  All pipeline
registers advance only while ``en`` is high.

OVP-4 operands are decoded on the borders only (:mod:`sparsa.hdl.ovp`), combinationally, so
the latency does not change:

* weights (top border): one pair decoder per column on the load path; weight beat ``b``
  (``load_row = b``) writes PE rows ``2b`` (low nibble, ``index0``) and ``2b + 1`` (high
  nibble, ``index1``) of every column;
* activations (left border): ``group_size / 2`` pair decoders per row, between the last skew
  register of lane ``r`` and PE(r, 0); the skew registers carry 4-bit codes, the PE lane
  registers decoded ``(integer, exp)`` elements.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.layouts import (activation_beat_layout, activation_lane_layout, check_config, decoded_layout,
                                output_beat_layout, pe_lane_layout, pe_weight_layout, weight_beat_layout)
from sparsa.hdl.ovp import decode_pair
from sparsa.hdl.pe import SparsePE, sparse_mac
from sparsa.timing import array_latency

__all__ = ["SystolicArray", "latency"]


def latency(config: AcceleratorConfig) -> int:
    """Enabled cycles from accepting a beat to its result row at the array output.

    Row ``r`` starts after ``r`` skew registers, PE(r, c) sees the beat ``r + c`` cycles
    after it was accepted and outputs its partial sum ``PE_LATENCY = 3`` cycles later (MUX
    register, product register, partial sum), so the bottom PE of column ``c`` outputs at
    ``R + c + 2``; deskewing column ``c`` by ``C - 1 - c`` aligns every column at
    ``R + C + 1`` (:func:`sparsa.timing.array_latency`, the contract).
    """
    check_config(config)
    return array_latency(config)


class SystolicArray(wiring.Component):
    """``rows x cols`` :class:`SparsePE` grid with skew/deskew registers and a valid tag.

    Parameters
    ----------
    config : AcceleratorConfig
        Array geometry and widths.
    pe_modules : bool
        Instantiate one :class:`SparsePE` submodule per PE (a hierarchical netlist, one
        Verilog module per PE) instead of inlining the same logic (:func:`sparse_mac`) into
        the array.  The inlined form is the default: it is the same circuit, and Amaranth's
        simulator runs it about 2.5x faster (no per-PE port copies to propagate).

    Attributes
    ----------
    en : In(1)
        Advance every pipeline register (PEs, skew, deskew, tag).
    lanes_in : In(activation beat layout)
        One activation beat; lane ``r`` feeds PE row ``r`` after ``r`` skew registers.
    valid_in : In(1)
        Tag of ``lanes_in`` (sampled when ``en``).
    load : In(1)
        Write ``load_data`` into the weight registers of PE row ``load_row``.
    load_row : In(range(rows))
        PE row to load (OVP-4 weights: the beat ``b``, loading PE rows ``2b`` and ``2b + 1``).
    load_data : In(weight beat layout)
        The ``cols`` weights (value + index) of that row (OVP-4: ``cols`` pair bytes + indices).
    result : Out(output beat layout)
        One deskewed result row (column ``c`` is output lane ``c``).
    valid_out : Out(1)
        ``valid_in`` delayed by :func:`latency` enabled cycles.
    """

    def __init__(self, config: AcceleratorConfig, *, pe_modules: bool = False) -> None:
        check_config(config)
        if not isinstance(pe_modules, bool):
            raise TypeError(f"pe_modules must be a bool, not {pe_modules!r}")
        self._config = config
        self._pe_modules = pe_modules
        super().__init__({
            "en": In(1),
            "lanes_in": In(activation_beat_layout(config)),
            "valid_in": In(1),
            "load": In(1),
            "load_row": In(range(config.rows)),
            "load_data": In(weight_beat_layout(config)),
            "result": Out(output_beat_layout(config)),
            "valid_out": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the array was built for."""
        return self._config

    @property
    def pe_modules(self) -> bool:
        """Whether each PE is a :class:`SparsePE` submodule (else inlined)."""
        return self._pe_modules

    @property
    def latency(self) -> int:
        """Enabled cycles from ``lanes_in`` to ``result`` (``rows + cols + 1``)."""
        return latency(self._config)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        m = Module()

        # Input skew: lane r passes r registers.
        row_lanes = []
        for r in range(rows):
            lane = self.lanes_in[r]
            for k in range(r):
                reg = Signal(activation_lane_layout(cfg), name=f"skew_r{r}_{k}")
                with m.If(self.en):
                    m.d.sync += reg.eq(lane)
                lane = reg
            if cfg.activation_is_ovp:
                # Left border: decode the lane's group_size codes, pair by pair.
                decoded = Signal(pe_lane_layout(cfg), name=f"lane_r{r}_decoded")
                for j in range(cfg.group_size // 2):
                    # Inlined (decode_pair), not a submodule: see sparsa.hdl.export.reset_triggered.
                    even = Signal(decoded_layout(), name=f"adec_r{r}_{j}_even")
                    odd = Signal(decoded_layout(), name=f"adec_r{r}_{j}_odd")
                    decode_pair(m, lane.as_value()[8 * j : 8 * j + 8], even, odd)
                    m.d.comb += [decoded[2 * j].eq(even), decoded[2 * j + 1].eq(odd)]
                lane = decoded
            row_lanes.append(lane)

        # Weights of each PE row as loaded: the beat lanes, or (OVP-4) the top-border decoders'
        # outputs, one pair decoder per column feeding rows 2b and 2b + 1.
        if cfg.weight_is_ovp:
            pair_weights = []
            for c in range(cols):
                lane = self.load_data[c]
                dec_even = Signal(decoded_layout(), name=f"wdec_c{c}_dec_even")
                dec_odd = Signal(decoded_layout(), name=f"wdec_c{c}_dec_odd")
                decode_pair(m, lane.pair, dec_even, dec_odd)
                even = Signal(pe_weight_layout(cfg), name=f"wdec_c{c}_even")
                odd = Signal(pe_weight_layout(cfg), name=f"wdec_c{c}_odd")
                m.d.comb += [
                    even.integer.eq(dec_even.integer), even.exp.eq(dec_even.exp), even.index.eq(lane.index0),
                    odd.integer.eq(dec_odd.integer), odd.exp.eq(dec_odd.exp), odd.index.eq(lane.index1),
                ]
                pair_weights.append((even, odd))

            def weight_for(r, c):
                return pair_weights[c][r % 2]

            def load_for(r):
                return self.load & (self.load_row == r // 2)
        else:
            def weight_for(r, c):
                return self.load_data[c]

            def load_for(r):
                return self.load & (self.load_row == r)

        # PE grid: SparsePE submodules, or the same logic (sparse_mac) inlined.
        psum = [[Signal(signed(cfg.accumulator_bits), name=f"pe_r{r}_c{c}_psum") for c in range(cols)]
                for r in range(rows)]
        for r in range(rows):
            lane = row_lanes[r]
            for c in range(cols):
                psum_in = Const(0, signed(cfg.accumulator_bits)) if r == 0 else psum[r - 1][c]
                load = load_for(r)
                forward = c < cols - 1
                if self._pe_modules:
                    pe = SparsePE(cfg, forward=forward)
                    m.submodules[f"pe_r{r}_c{c}"] = pe
                    m.d.comb += [
                        pe.en.eq(self.en),
                        pe.load.eq(load),
                        pe.weight_in.eq(weight_for(r, c)),
                        pe.lane_in.eq(lane),
                        pe.psum_in.eq(psum_in),
                        psum[r][c].eq(pe.psum_out),
                    ]
                    lane = pe.lane_out if forward else None
                else:
                    lane_out = Signal(pe_lane_layout(cfg), name=f"pe_r{r}_c{c}_lane") if forward else None
                    sparse_mac(m, cfg, en=self.en, load=load, weight_in=weight_for(r, c), lane_in=lane,
                               psum_in=psum_in, psum_out=psum[r][c], lane_out=lane_out, prefix=f"pe_r{r}_c{c}_",
                               platform=platform)
                    lane = lane_out

        # Output deskew: column c passes cols-1-c registers.
        for c in range(cols):
            value = psum[rows - 1][c]
            for k in range(cols - 1 - c):
                reg = Signal(signed(cfg.accumulator_bits), name=f"deskew_c{c}_{k}")
                with m.If(self.en):
                    m.d.sync += reg.eq(value)
                value = reg
            m.d.comb += self.result[c].eq(value)

        # Valid tag: a shift register as long as the data path.
        tag = Signal(self.latency, name="tag")
        with m.If(self.en):
            m.d.sync += tag.eq((tag << 1) | self.valid_in)
        m.d.comb += self.valid_out.eq(tag[-1])
        return m
