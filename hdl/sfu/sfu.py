"""The SFU: vector memory, sequencer, vector lanes and scalar unit.

::

    cmd (stream of SfuCommand) --> sequencer --rd a/b--> VMEM (depth x L fx lanes) --> SfuLanes --> wr dst
                                      |   ^                                              | r (beat reduction)
                                      |   +---- folds: max, sum, amax, sumsq <-----------+
                                      +--> SfuScalar (RECIP / RSQRT / DIV) --> m, e, mean

The sequencer runs the microcode of :mod:`sparsa.sfu.schedule` (``ELEMENTWISE_LANE_OP``,
``ROW_STEPS``), decoded at elaboration time, with exactly the cycle counts of
:func:`sparsa.sfu.schedule.command_cycles`.  Per pass: a read of VMEM word ``base + i`` is
issued in cycle ``P + i``; the word and the beat's control reach the lanes in the next cycle;
the result is written ``LANE_LATENCY`` cycles later, in the same cycle its reduction is folded.

QUANTIZE runs tensor-wide (:func:`sparsa.sfu.schedule.quantize_cycles`): a pass folds each
scale unit's max ``|x|`` into the scale memory, the scalar unit picks the shared exponent (EXPO)
and each unit's mantissa (QMANT; mantissas are also written to VMEM, ``L`` per word, from
``scale_dst``), and a QDIV pass writes the codes.  With ``row_exponent`` the same states run
row by row, each row's exponent (EXPO of the row's max) also written to VMEM from ``exp_dst``;
per-token units may end in a partly padded word (its padding lanes are not kept).

REQUANT_ROW streams like an element-wise command, with one more issue slot per row: in it the
two read ports read the words holding the row's mantissa (``scale_src``) and exponent
(``exp_src``), which reach the lanes' ``m`` and ``sh`` (``clamp(shift + e, -64, 63)``) with the
row's first beat and are held for the rest of the row.  While idle the host port reads and writes
VMEM words (read latency one cycle).

Size: one state machine whose states share the issue path, the write-back line and the folds;
the row operations come from the microcode table, QUANTIZE's tensor-wide states are the rest.
"""

from __future__ import annotations

import contextlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import SfuConfig
from sparsa.hdl.sfu.lanes import SfuLanes
from sparsa.hdl.sfu.scalar import SfuScalar
from sparsa.sfu.command import SfuOp
from sparsa.sfu.fixed import FX_BITS, FX_FRAC
from sparsa.sfu.lane import LaneOp, Reduce
from sparsa.sfu.ops import ROW_MANT_BITS, ROW_SHIFT_RANGE
from sparsa.sfu.scalar import ScalarOp
from sparsa.sfu.schedule import (
    ELEMENTWISE_LANE_OP,
    ROW_STEPS,
    MSrc,
    Pass,
    ScalarStep,
    ShSrc,
    Src,
    XSrc,
)
from sparsa.sfu.timing import LANE_LATENCY

__all__ = ["Sfu", "command_layout"]



def command_layout(addr_bits: int) -> data.StructLayout:
    """The command word the sequencer accepts (the fields of :class:`~sparsa.sfu.command.SfuCommand`)."""
    return data.StructLayout({
        "op": 4,
        "rows": 16,
        "n": 16,
        "dst": addr_bits,
        "a": addr_bits,
        "b": addr_bits,
        "b_step": addr_bits,
        "shift": signed(7),
        "mantissa": 24,
        "exponent": signed(8),
        "bits4": 1,
        "eps_code": 48,
        "causal": 1,
        "offset": 16,
        "unit": 16,
        "mantissa_bits": 5,
        "scale_dst": addr_bits,
        "row_exponent": 1,
        "exp_dst": addr_bits,
        "scale_src": addr_bits,
        "exp_src": addr_bits,
        "qmax": 7,
    })


def _steps(op: SfuOp) -> tuple[Pass | ScalarStep, ...]:
    return (ELEMENTWISE_LANE_OP[op],) if op in ELEMENTWISE_LANE_OP else ROW_STEPS.get(op, ())


class Sfu(wiring.Component):
    """Special-function unit with a ``depth``-word vector memory of ``lanes`` fx lanes.

    Parameters
    ----------
    lanes : int
        Elements per beat and VMEM word (a power of two, 2..32).
    depth : int
        VMEM words (2..65536).
    scale_depth : int
        Scale units one QUANTIZE command may have (its per-unit maxima and mantissas).

    Attributes
    ----------
    cmd : In(stream.Signature(command_layout))
        Commands; one is accepted whenever the unit is idle.
    busy, done, error : Out(1)
        Executing; one-cycle pulse at a command's end; the last command was not supported.
    host_addr, host_wdata, host_we, host_rdata :
        VMEM access while idle (``host_rdata`` shows the word addressed in the previous cycle).
    exponent : Out(signed(8))
        The shared exponent the last QUANTIZE chose (with ``row_exponent``: its last row's).
    """

    def __init__(self, lanes: int, depth: int, scale_depth: int = 256) -> None:
        if not isinstance(lanes, int) or lanes < 2 or lanes > 32 or lanes & (lanes - 1):
            raise ValueError(f"Sfu lanes must be a power of two in 2..32, not {lanes!r}")
        if not isinstance(depth, int) or not 2 <= depth <= 1 << 16:
            raise ValueError(f"Sfu depth must be an int in 2..65536, not {depth!r}")
        if not isinstance(scale_depth, int) or not 1 <= scale_depth <= 1 << 16:
            raise ValueError(f"Sfu scale_depth must be an int in 1..65536, not {scale_depth!r}")
        self._lanes, self._depth, self._scale_depth = lanes, depth, scale_depth
        self._abits = max(1, (depth - 1).bit_length())
        word = data.ArrayLayout(signed(FX_BITS), lanes)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(self._abits))),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "host_addr": In(self._abits),
            "host_wdata": In(word),
            "host_we": In(1),
            "host_rdata": Out(word),
            "exponent": Out(signed(8)),
        })

    @classmethod
    def from_config(cls, sfu: SfuConfig) -> Sfu:
        """The SFU an accelerator config's ``sfu:`` section describes."""
        return cls(sfu.lanes, sfu.vmem_words, sfu.scale_words)

    @property
    def lanes(self) -> int:
        """Elements per VMEM word."""
        return self._lanes

    @property
    def depth(self) -> int:
        """VMEM words."""
        return self._depth

    @property
    def scale_depth(self) -> int:
        """Scale units of one QUANTIZE command."""
        return self._scale_depth

    def elaborate(self, platform) -> Module:  # noqa: C901 - one FSM, decoded from the microcode tables
        m = Module()
        L, abits = self._lanes, self._abits
        lg = L.bit_length() - 1
        word = data.ArrayLayout(signed(FX_BITS), L)

        vmem = memory.Memory(shape=word, depth=self._depth, init=[])
        m.submodules.vmem = vmem
        rd_a = vmem.read_port(domain="sync", transparent_for=())
        rd_b = vmem.read_port(domain="sync", transparent_for=())
        wr = vmem.write_port(domain="sync")
        m.submodules.lanes = lanes = SfuLanes(L)
        m.submodules.scalar = scalar = SfuScalar()
        # QUANTIZE's scale memory: per-unit maxima (pass A), then mantissas (QMANT steps)
        smem = memory.Memory(shape=FX_BITS + 1, depth=self._scale_depth, init=[])
        m.submodules.smem = smem
        s_rd = smem.read_port(domain="sync", transparent_for=())
        s_wr = smem.write_port(domain="sync")
        sbits = max(1, self._scale_depth.bit_length())
        ub = Signal(16)             # beat within the scale unit
        ub_last = Signal(16)
        uidx = Signal(sbits)        # scale unit of the beat being issued
        u_total = Signal(sbits + 1)
        u = Signal(sbits)           # QMANT step's unit
        top = Signal(FX_BITS + 1)
        q_fold = Signal(FX_BITS + 1)
        r_qe = Signal(signed(8))
        pack = Signal(data.ArrayLayout(unsigned(FX_BITS), L))
        epack = Signal(data.ArrayLayout(unsigned(FX_BITS), L))  # row exponents of a word (row_exponent)
        ug = Signal(32)             # QMANT step's unit over the whole command (its VMEM lane)
        qa = Signal()               # issuing QUANTIZE pass A (unit maxima)
        qb = Signal()               # issuing QUANTIZE pass B (codes)
        m.d.comb += self.exponent.eq(r_qe)

        c = Signal(command_layout(abits))
        beats = Signal(16)          # words per row
        tail = Signal(range(L + 1))  # kept lanes of a row's last word
        row = Signal(16)
        step = Signal(range(8))
        i = Signal(16)              # beat within the pass (row op) or within the row (element-wise)
        drain = Signal(range(LANE_LATENCY + 2))
        a_base = Signal(abits)
        b_base = Signal(abits)
        d_base = Signal(abits)
        # folds (the reduction registers) and the scalar results
        r_max = Signal(signed(FX_BITS))
        r_sum = Signal(signed(64))
        r_amax = Signal(FX_BITS)
        r_sumsq = Signal(64)
        r_m = Signal(24)
        r_e = Signal(signed(10))
        r_mean = Signal(signed(FX_BITS))
        d_op = Signal(64)

        # ---------------------------------------------------------------- step decode
        n_steps = Signal(range(9))
        is_pass = Signal()
        lane_op = Signal(4)
        red = Signal(3)
        src_dst = Signal()
        use_b = Signal()
        write = Signal()
        xsrc = Signal(2)
        msrc = Signal(2)
        shsrc = Signal(3)
        skind = Signal(ScalarOp)
        elementwise = Signal()
        supported = Signal()
        fetch_op = Signal()         # each row's scalars come from VMEM (REQUANT_ROW)
        with m.Switch(c.op):
            for op in SfuOp:
                steps = _steps(op)
                if not steps:
                    continue
                with m.Case(op):
                    m.d.comb += [supported.eq(1), n_steps.eq(len(steps)),
                                 elementwise.eq(op in ELEMENTWISE_LANE_OP)]
                    with m.Switch(step):
                        for k, s in enumerate(steps):
                            with m.Case(k):
                                if isinstance(s, Pass):
                                    m.d.comb += [is_pass.eq(1), lane_op.eq(s.op), red.eq(s.reduce), fetch_op.eq(s.fetches_row),
                                                 src_dst.eq(s.src == Src.DST), use_b.eq(s.b), write.eq(s.write),
                                                 xsrc.eq(s.x), msrc.eq(s.m), shsrc.eq(s.sh)]
                                else:
                                    m.d.comb += skind.eq(s.kind)
        last_step = Signal()
        last_row = Signal()
        m.d.comb += [last_step.eq(step == n_steps - 1), last_row.eq(row == c.rows - 1)]

        # pre-shift s = max(0, bit_length(amax) - 15)
        bitlen = Signal(range(FX_BITS + 1))
        for k in range(FX_BITS):
            with m.If(r_amax[k]):
                m.d.comb += bitlen.eq(k + 1)
        pre_s = Signal(range(FX_BITS))
        m.d.comb += pre_s.eq(Mux(bitlen > 15, bitlen - 15, 0))

        # ---------------------------------------------------------------- issue
        issue = Signal()
        src_base = Signal(abits)
        m.d.comb += src_base.eq(Mux(src_dst, d_base, a_base))
        # REQUANT_ROW: a row's first issue slot reads the words holding its mantissa and exponent
        need_fetch = Signal()
        fetching = Signal()
        row_word = Signal(abits)
        m.d.comb += row_word.eq(row >> lg)
        m.d.comb += [
            rd_a.addr.eq(Mux(self.busy, Mux(fetching, c.scale_src + row_word, src_base + i), self.host_addr)),
            rd_b.addr.eq(Mux(fetching, c.exp_src + row_word, b_base + i)),
            rd_a.en.eq(1), rd_b.en.eq(1),
            self.host_rdata.eq(rd_a.data),
        ]
        keep = Signal(L)
        last_word = Signal()
        m.d.comb += last_word.eq(i == beats - 1)
        for j in range(L):
            elem = Signal(32, name=f"elem{j}")
            m.d.comb += elem.eq((i << lg) + j)
            in_row = Mux(last_word, j < tail, 1)
            causal_ok = Mux(c.causal, elem <= c.offset + row, 1)
            m.d.comb += keep[j].eq(in_row & causal_ok)
        x_val = Signal(signed(FX_BITS))
        m.d.comb += x_val.eq(Mux(xsrc == XSrc.MAX, r_max, Mux(xsrc == XSrc.MEAN, r_mean, 0)))
        # the fetched row scalars are on the read ports in the row's first beat; kept for the rest
        row_m_now = Signal(ROW_MANT_BITS)
        row_sum = Signal(signed(FX_BITS + 2))
        row_sh_now = Signal(signed(8))
        row_m = Signal(ROW_MANT_BITS)
        row_sh = Signal(signed(8))
        first_beat = Signal()
        lo_sh, hi_sh = ROW_SHIFT_RANGE
        m.d.comb += [
            row_m_now.eq(rd_a.data.as_value().word_select(row[:lg], FX_BITS)[:ROW_MANT_BITS]),
            row_sum.eq(rd_b.data.as_value().word_select(row[:lg], FX_BITS).as_signed() + c.shift),
            row_sh_now.eq(Mux(row_sum < lo_sh, lo_sh, Mux(row_sum > hi_sh, hi_sh, row_sum))),
            first_beat.eq(issue & fetch_op & (i == 0)),
        ]
        with m.If(first_beat):
            m.d.sync += [row_m.eq(row_m_now), row_sh.eq(row_sh_now)]
        m_val = Signal(24)
        m.d.comb += m_val.eq(Mux(msrc == MSrc.SCALAR, r_m, Mux(msrc == MSrc.COMMAND, c.mantissa,
                                                                 Mux(msrc == MSrc.ROW, Mux(first_beat, row_m_now, row_m), 0))))
        sh_val = Signal(signed(8))
        with m.Switch(shsrc):
            with m.Case(ShSrc.COMMAND_PLUS_ROW):
                m.d.comb += sh_val.eq(Mux(first_beat, row_sh_now, row_sh))
            with m.Case(ShSrc.COMMAND):
                m.d.comb += sh_val.eq(c.shift)
            with m.Case(ShSrc.E_MINUS_16):
                m.d.comb += sh_val.eq(r_e - FX_FRAC)
            with m.Case(ShSrc.E_PLUS_S_MINUS_16):
                m.d.comb += sh_val.eq(r_e + pre_s - FX_FRAC)
            with m.Case(ShSrc.S):
                m.d.comb += sh_val.eq(pre_s)
            with m.Case(ShSrc.CMD_EXP_MINUS_16):
                m.d.comb += sh_val.eq(c.exponent - FX_FRAC)
        # the beat's control follows its read by one cycle (QUANTIZE's per-unit mantissa comes
        # from the scale memory, read in the issue cycle like the VMEM word)
        m_reg = Signal(24)
        qb_d = Signal()
        m.d.sync += [
            lanes.i_valid.eq(issue),
            lanes.op.eq(lane_op),
            lanes.reduce.eq(red),
            lanes.keep.eq(keep),
            lanes.x.eq(x_val),
            m_reg.eq(m_val),
            qb_d.eq(qb),
            lanes.sh.eq(sh_val),
            lanes.q.eq(Mux(c.qmax != 0, c.qmax, Mux(c.bits4, 7, 127))),
        ]
        m.d.comb += [lanes.a.eq(rd_a.data), lanes.b.eq(rd_b.data),
                     lanes.m.eq(Mux(qb_d, s_rd.data, m_reg))]

        # write-back and fold bookkeeping travel with the beat: 1 (read) + LANE_LATENCY cycles
        line = [(Signal(name="wv_0"), Signal(abits, name="wa_0"), Signal(3, name="wr_0"))]
        m.d.comb += [line[0][0].eq(issue & write), line[0][1].eq(d_base + i), line[0][2].eq(Mux(issue, red, 0))]
        for k in range(1, LANE_LATENCY + 2):
            v, addr, rk = Signal(name=f"wv_{k}"), Signal(abits, name=f"wa_{k}"), Signal(3, name=f"wr_{k}")
            m.d.sync += [v.eq(line[-1][0]), addr.eq(line[-1][1]), rk.eq(line[-1][2])]
            line.append((v, addr, rk))
        wv, wa, wk = line[-1]
        q_vwrite = Signal()                   # a QMANT step writes a word of mantissas
        q_vaddr = Signal(abits)
        q_vdata = Signal(L * FX_BITS)
        m.d.comb += [
            wr.en.eq(Mux(self.busy, wv | q_vwrite, self.host_we)),
            wr.addr.eq(Mux(self.busy, Mux(q_vwrite, q_vaddr, wa), self.host_addr)),
            wr.data.eq(Mux(self.busy, Mux(q_vwrite, q_vdata, lanes.y.as_value()), self.host_wdata)),
        ]
        rv = lanes.r
        qline = [(qa, ub == 0, ub == ub_last, uidx)]
        for k in range(1, LANE_LATENCY + 2):
            regs = (Signal(name=f"qa_{k}"), Signal(name=f"qf_{k}"), Signal(name=f"ql_{k}"), Signal(sbits, name=f"qi_{k}"))
            m.d.sync += [r.eq(v) for r, v in zip(regs, qline[-1])]
            qline.append(regs)
        qa_o, qf_o, ql_o, qi_o = qline[-1]
        unit_max = Signal(FX_BITS + 1)
        m.d.comb += unit_max.eq(Mux(qf_o | (rv[:FX_BITS + 1] > q_fold), rv[:FX_BITS + 1], q_fold))
        with m.If(qa_o):
            m.d.sync += q_fold.eq(unit_max)
            with m.If(ql_o):
                m.d.sync += top.eq(Mux(unit_max > top, unit_max, top))
                m.d.comb += [s_wr.en.eq(1), s_wr.addr.eq(qi_o), s_wr.data.eq(unit_max)]
        with m.Switch(wk):
            with m.Case(Reduce.MAX):
                m.d.sync += r_max.eq(Mux(rv.as_signed() > r_max, rv, r_max))
            with m.Case(Reduce.AMAX, Reduce.AMAX_Y):
                m.d.sync += r_amax.eq(Mux(rv > r_amax, rv, r_amax))
            with m.Case(Reduce.SUM, Reduce.SUM_Y):
                m.d.sync += r_sum.eq(r_sum + rv.as_signed())
            with m.Case(Reduce.SUMSQ):
                m.d.sync += r_sumsq.eq(r_sumsq + rv)

        # ---------------------------------------------------------------- scalar operand
        eps_shift = Signal(range(2 * FX_BITS))
        m.d.comb += eps_shift.eq(pre_s << 1)
        eps_term = Signal(48)
        half = Signal(48)
        m.d.comb += half.eq((Const(1, 64) << eps_shift) >> 1)
        lsb = Signal()
        m.d.comb += lsb.eq((c.eps_code >> eps_shift)[0])
        m.d.comb += eps_term.eq(Mux(eps_shift > 0, (c.eps_code + half - 1 + lsb) >> eps_shift, c.eps_code))

        # ---------------------------------------------------------------- FSM
        # the type of the step after this one (a pass or a scalar step), decoded like the step
        next_index = Signal(range(9))
        m.d.comb += next_index.eq(Mux(last_step, 0, step + 1))
        next_is_pass = Signal()
        with m.Switch(c.op):
            for op in SfuOp:
                steps = _steps(op)
                if steps:
                    with m.Case(op):
                        with m.Switch(next_index):
                            for k, s_ in enumerate(steps):
                                with m.Case(k):
                                    m.d.comb += next_is_pass.eq(isinstance(s_, Pass))

        def enter(pass_state: bool) -> None:
            m.next = "ISSUE" if pass_state else "SPREP"

        def advance() -> None:
            """End of a step: the next step of this row, the first of the next row, or done."""
            with m.If(~last_step):
                m.d.sync += [step.eq(step + 1), i.eq(0)]
                with m.If(next_is_pass):
                    enter(True)
                with m.Else():
                    enter(False)
            with m.Elif(~last_row):
                m.d.sync += [step.eq(0), i.eq(0), row.eq(row + 1), a_base.eq(a_base + beats),
                             d_base.eq(d_base + beats), b_base.eq(b_base + c.b_step)]
                with m.If(next_is_pass):
                    enter(True)
                with m.Else():
                    enter(False)
            with m.Else():
                m.next = "DONE"

        m.d.comb += scalar.op.eq(skind)
        m.d.comb += [scalar.d.eq(d_op), scalar.n.eq(c.n), scalar.e_in.eq(r_qe),
                     scalar.qmax.eq(Mux(c.bits4, 7, 127)), scalar.mantissa_bits.eq(c.mantissa_bits)]
        quant = Signal()
        m.d.comb += quant.eq(c.op == SfuOp.QUANTIZE)

        def stream_beat(last_state: str) -> None:
            """Advance a pass that streams across rows (element-wise, QUANTIZE); at its last beat
            go to ``last_state`` with the drain counter loaded."""
            with m.If(ub == ub_last):
                m.d.sync += [ub.eq(0), uidx.eq(uidx + 1)]
            with m.Else():
                m.d.sync += ub.eq(ub + 1)
            with m.If(~last_word):
                m.d.sync += i.eq(i + 1)
            with m.Elif(~last_row & ~c.row_exponent):
                m.d.sync += [i.eq(0), row.eq(row + 1), a_base.eq(a_base + beats), d_base.eq(d_base + beats),
                             b_base.eq(b_base + c.b_step)]
            with m.Else():
                m.d.sync += drain.eq(LANE_LATENCY)
                m.next = last_state

        @contextlib.contextmanager
        def drained():
            """A drain state: count ``drain`` down; the block runs in its last cycle (the pass's
            last result is written and folded then)."""
            m.d.comb += self.busy.eq(1)
            with m.If(drain == 0):
                yield
            with m.Else():
                m.d.sync += drain.eq(drain - 1)

        def quantize_restart() -> None:
            """Back to the first beat of the tensor (or, with row_exponent, of this row)."""
            m.d.sync += [i.eq(0), ub.eq(0), uidx.eq(0)]
            with m.If(~c.row_exponent):
                m.d.sync += [row.eq(0), a_base.eq(c.a), d_base.eq(c.dst)]

        with m.FSM(name="sfu"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [c.eq(self.cmd.payload), row.eq(0), step.eq(0), i.eq(0),
                                 a_base.eq(self.cmd.payload.a), b_base.eq(self.cmd.payload.b),
                                 d_base.eq(self.cmd.payload.dst), self.error.eq(0), need_fetch.eq(1)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                nb = Signal(16)
                m.d.comb += nb.eq((c.n + (L - 1)) >> lg)
                m.d.sync += [beats.eq(nb), tail.eq(c.n - ((nb - 1) << lg))]
                with m.If(quant):
                    # a per-token unit is the whole row, its last word maybe partly padding
                    m.d.sync += [ub.eq(0), uidx.eq(0), ub_last.eq(Mux(c.unit == c.n, nb - 1, (c.unit >> lg) - 1)),
                                 top.eq(0), ug.eq(0), pack.eq(0), epack.eq(0)]
                    m.next = "QA"
                with m.Elif(~supported):
                    m.d.sync += self.error.eq(1)
                    m.next = "DONE"
                with m.Elif(is_pass):
                    m.next = "ISSUE"
                with m.Else():
                    m.next = "SPREP"
            with m.State("ISSUE"):
                m.d.comb += [self.busy.eq(1), fetching.eq(fetch_op & need_fetch), issue.eq(~fetching)]
                with m.If(fetching):
                    m.d.sync += need_fetch.eq(0)
                with m.Elif(i == 0):
                    with m.Switch(red):
                        with m.Case(Reduce.MAX):
                            m.d.sync += r_max.eq(-(1 << (FX_BITS - 1)))
                        with m.Case(Reduce.AMAX, Reduce.AMAX_Y):
                            m.d.sync += r_amax.eq(0)
                        with m.Case(Reduce.SUM, Reduce.SUM_Y):
                            m.d.sync += r_sum.eq(0)
                        with m.Case(Reduce.SUMSQ):
                            m.d.sync += r_sumsq.eq(0)
                with m.If(fetching):
                    pass
                with m.Elif(~last_word):
                    m.d.sync += i.eq(i + 1)
                with m.Elif(elementwise & ~last_row):
                    m.d.sync += [i.eq(0), row.eq(row + 1), a_base.eq(a_base + beats), d_base.eq(d_base + beats),
                                 b_base.eq(b_base + c.b_step), need_fetch.eq(1)]
                with m.Else():
                    m.d.sync += drain.eq(LANE_LATENCY)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with drained():
                    with m.If(elementwise):
                        m.next = "DONE"
                    with m.Else():
                        advance()
            with m.State("SPREP"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(skind):
                    with m.Case(ScalarOp.RSQRT):
                        m.d.sync += d_op.eq(r_sumsq + eps_term)
                    with m.Default():
                        m.d.sync += d_op.eq(r_sum)
                m.next = "SSTART"
            with m.State("SSTART"):
                m.d.comb += [self.busy.eq(1), scalar.start.eq(1)]
                m.next = "SWAIT"
            with m.State("SWAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(scalar.done):
                    with m.If(skind == ScalarOp.DIV):
                        m.d.sync += r_mean.eq(scalar.q)
                    with m.Elif(d_op == 0):
                        # an all-zero row with eps 0: outputs are zeros (m = 0), as in the reference
                        m.d.sync += [r_m.eq(0), r_e.eq(0)]
                    with m.Else():
                        m.d.sync += [r_m.eq(scalar.m), r_e.eq(scalar.e)]
                    advance()
            # ------------------------------------------------ QUANTIZE (tensor-wide)
            with m.State("QA"):                       # pass A: each unit's max |x| into the scale memory
                m.d.comb += [self.busy.eq(1), issue.eq(1), qa.eq(1), lane_op.eq(LaneOp.PASS), red.eq(Reduce.AMAX),
                             write.eq(0)]
                with m.If(last_word & (last_row | c.row_exponent)):
                    m.d.sync += u_total.eq(uidx + 1)
                stream_beat("QA_DRAIN")
            with m.State("QA_DRAIN"):
                with drained():
                    m.next = "QE_PREP"
            with m.State("QE_PREP"):                  # EXPO: the shared exponent from the tensor's max
                m.d.comb += self.busy.eq(1)
                m.d.sync += d_op.eq(top)
                m.next = "QE_START"
            with m.State("QE_START"):
                m.d.comb += [self.busy.eq(1), scalar.start.eq(1), scalar.op.eq(ScalarOp.EXPO)]
                m.next = "QE_WAIT"
            with m.State("QE_WAIT"):
                m.d.comb += [self.busy.eq(1), scalar.op.eq(ScalarOp.EXPO)]
                with m.If(scalar.done):
                    m.d.sync += [r_qe.eq(scalar.e), u.eq(0)]
                    with m.If(c.row_exponent):        # the row's exponent into its lane of exp_dst
                        e32 = Signal(signed(FX_BITS))
                        m.d.comb += e32.eq(scalar.e)
                        epacked = Cat(*[Mux(row[:lg] == j, e32.as_unsigned(), epack[j]) for j in range(L)])
                        with m.If((row[:lg] == L - 1) | last_row):
                            m.d.comb += [q_vwrite.eq(1), q_vaddr.eq(c.exp_dst + row_word), q_vdata.eq(epacked)]
                            m.d.sync += epack.eq(0)
                        with m.Else():
                            for j in range(L):
                                with m.If(row[:lg] == j):
                                    m.d.sync += epack[j].eq(e32)
                    m.next = "QM_PREP"
            with m.State("QM_PREP"):                  # QMANT per unit: read its max
                m.d.comb += [self.busy.eq(1), s_rd.addr.eq(u)]
                m.next = "QM_START"
            with m.State("QM_START"):
                m.d.comb += [self.busy.eq(1), scalar.start.eq(1), scalar.op.eq(ScalarOp.QMANT),
                             scalar.d.eq(s_rd.data)]
                m.next = "QM_WAIT"
            with m.State("QM_WAIT"):
                m.d.comb += [self.busy.eq(1), scalar.op.eq(ScalarOp.QMANT)]
                with m.If(scalar.done):
                    m.d.comb += [s_wr.en.eq(1), s_wr.addr.eq(u), s_wr.data.eq(scalar.m)]
                    packed = Cat(*[Mux(ug[:lg] == j, scalar.m, pack[j]) for j in range(L)]) if lg else scalar.m
                    last_unit = u == u_total - 1
                    m.d.sync += ug.eq(ug + 1)
                    # the word is full, or this is the command's last unit (in QM, row is the last
                    # row unless row_exponent runs row by row)
                    with m.If((ug[:lg] == L - 1) | (last_unit & last_row)):
                        m.d.comb += [q_vwrite.eq(1), q_vaddr.eq(c.scale_dst + (ug >> lg)), q_vdata.eq(packed)]
                        m.d.sync += pack.eq(0)
                    with m.Else():
                        for j in range(L):
                            with m.If(ug[:lg] == j):
                                m.d.sync += pack[j].eq(scalar.m)
                    with m.If(last_unit):
                        quantize_restart()
                        m.next = "QB"
                    with m.Else():
                        m.d.sync += u.eq(u + 1)
                        m.next = "QM_PREP"
            with m.State("QB"):                       # pass B: codes, each unit's mantissa from the scale memory
                m.d.comb += [self.busy.eq(1), issue.eq(1), qb.eq(1), lane_op.eq(LaneOp.QDIV), red.eq(Reduce.NONE),
                             write.eq(1), s_rd.addr.eq(uidx), sh_val.eq(r_qe - FX_FRAC)]
                stream_beat("QB_DRAIN")
            with m.State("QB_DRAIN"):
                with drained():
                    with m.If(c.row_exponent & ~last_row):     # the next row's steps
                        m.d.sync += [i.eq(0), ub.eq(0), uidx.eq(0), top.eq(0), row.eq(row + 1),
                                     a_base.eq(a_base + beats), d_base.eq(d_base + beats)]
                        m.next = "QA"
                    with m.Else():
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
