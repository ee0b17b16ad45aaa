"""Compile one transformer block into one machine program (docs/block.md, "The compiled block").

The program does what :func:`sparsa.models.block.block_prefill` / ``block_decode`` do, step for
step, with the same integer arithmetic, so every rung equals the reference bit for bit:

* a linear layer is QUANTIZE (``row_exponent``: each token its own scale) -> GEMM of the codes
  (raw int32 sums into VMEM) -> REQUANT_ROW (the token's mantissa and exponent times the
  column's, one rounding) -> ADD of the bias;
* Q, K and V are split into heads with MOVE; RoPE, QSTATIC (the KV head's static scale) and
  KV_STORE append K and V to the cache in device memory at the token's positions;
* each query head: QUANTIZE -> GEMM against its KV head's ``K^T`` straight from the cache ->
  REQUANT_ROW with the score scale -> SOFTMAX (causal from ``start``) -> QUANTIZE -> GEMM
  against ``V`` -> REQUANT_ROW with the V scale -> MOVE into the context row;
* norms, activations, the SwiGLU product and the residual adds are SFU commands.

Constant vectors (column mantissas, biases, gains, RoPE rows, score / V mantissa vectors) live
in device memory and are LOADed into VMEM just before their command.  A KV-cache GEMM on a
4-bit weight port runs the two nibble planes and combines them on the SFU (MUL by 16, ADD;
:mod:`sparsa.compiler.attention`).
"""

from __future__ import annotations

import numpy as np

from sparsa.compiler.attention import NIBBLE_QMAX, kv_code_max, operand_passes
from sparsa.compiler.block_program import BlockProgram, DevicePlan
from sparsa.compiler.block_shape import BlockShape, LinearShape
from sparsa.compiler.datapath import compile_gemm, gemm_instruction_counts
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.formats import nm
from sparsa.isa import Opcode, opcode_of
from sparsa.machine.isa import (
    GemmInstr,
    HaltInstr,
    KvStoreInstr,
    LoadInstr,
    MoveInstr,
    Plane,
    SfuInstr,
    StoreInstr,
    WeightKind,
)
from sparsa.machine.memory import FX_BYTES, DmRegion, VmemAllocator, VmemBuffer, fx_bytes
from sparsa.machine.timing import GemmCounts, machine_cycles
from sparsa.models.block.reference import ACT_BITS
from sparsa.models.block.spec import BlockWeights
from sparsa.sfu.command import SfuCommand, SfuOp
from sparsa.sfu.fixed import FX_FRAC, FX_ONE
from sparsa.sfu.ops import norm_eps_code

__all__ = ["BlockProgram", "BlockShape", "BlockLowering", "DevicePlan", "LinearShape", "compile_block", "block_cycles",
           "check_block", "PHASES"]

#: The phases a block is compiled for.
PHASES = ("prefill", "decode")


def check_block(config: AcceleratorConfig, weights, phase: str, tokens: int, start: int) -> None:
    """Refuse a block, phase or length the machine cannot run (the value and the limit named)."""
    if config.sfu is None:
        raise ConfigError("the block runs on the machine's SFU, and the config has no sfu: section "
                          "(add one, e.g. --set sfu.lanes=8)")
    if weights.kv_qmax > kv_code_max(config, ACT_BITS):
        raise UnsupportedError(f"attention's K/V codes run as two nibble passes on the {config.weight_bits}-bit weight "
                               f"port of types.weight={config.types.weight!r}, which takes codes within "
                               f"+-{NIBBLE_QMAX}; this block's kv_qmax={weights.kv_qmax} (quantize it with "
                               f"kv_qmax={NIBBLE_QMAX}, as sparsa block does for such a config)")
    if phase not in PHASES:
        raise ConfigError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    if config.activation_bits != ACT_BITS or config.activation_is_ovp:
        raise UnsupportedError(f"the block's GEMM inputs are int8 codes; types.activation="
                               f"{config.types.activation!r} cannot take them (use int8)")
    if config.act_scale.granularity != "tensor":
        raise UnsupportedError(f"the machine keeps raw sums and scales them on the SFU (REQUANT_ROW); "
                               f"act_scale.granularity={config.act_scale.granularity!r} must be 'tensor'")
    if weights.act_group is not None:
        raise UnsupportedError(f"the compiled block has one activation scale per token; act_group="
                               f"{weights.act_group} (per-group scales) is not compiled yet")
    s, lanes = weights.spec, config.sfu.lanes
    if s.head_dim % lanes:
        raise UnsupportedError(f"head_dim={s.head_dim} must be a multiple of sfu.lanes={lanes} (heads are whole "
                               f"VMEM words)")
    if phase == "decode" and (tokens != 1 or not s.causal):
        raise ConfigError("decode runs one token of a causal block" if s.causal else
                          "decode needs a causal block: a bidirectional block runs prefill over the whole sequence")
    if phase == "prefill" and start:
        raise ConfigError(f"prefill starts at position 0, not {start}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ConfigError(f"tokens must be a positive int, not {tokens!r}")
    if start + tokens > weights.max_positions:
        raise ConfigError(f"{start} cached + {tokens} new positions exceed the block's max_positions="
                          f"{weights.max_positions}")


class BlockLowering:
    """One block lowered into machine instructions appended to ``out``, against a shared device
    plan and VMEM allocator (so a model chains its blocks, activations staying in VMEM).

    Parameters
    ----------
    config : AcceleratorConfig
        The machine.
    weights : BlockWeights or BlockShape
        The block (a :class:`BlockShape`: GEMMs costed from their shape, nothing compiled).
    tokens, start : int
        T and the position of the first token.
    plan : DevicePlan
        Where weights, constants and the KV cache live; ``prefix`` names this block's regions.
    vm : VmemAllocator
        The VMEM.
    out : list
        The instruction list.
    prefix : str
        Prefix of this block's DM region names (``L3.`` for block 3 of a model).
    """

    def __init__(self, config: AcceleratorConfig, weights, tokens: int, start: int, plan: DevicePlan,
                 vm: VmemAllocator, out: list, prefix: str = "") -> None:
        self.cfg, self.w, self.s = config, weights, weights.spec
        self.lanes = config.sfu.lanes
        self.plan, self.vm, self.out, self.prefix = plan, vm, out, prefix
        self.T, self.start = tokens, start
        self.keys = start + tokens
        self.passes = operand_passes(config, ACT_BITS)

    # -- emit helpers ------------------------------------------------------------------------
    def sfu(self, op: SfuOp, rows: int, n: int, dst: VmemBuffer, a: VmemBuffer, **kw) -> None:
        """One SFU command (checked against the VMEM now, so a bad layout fails at compile time)."""
        cmd = SfuCommand(op, rows, n, dst.addr, a.addr, **kw)
        cmd.check(self.lanes, self.cfg.sfu.vmem_words)
        self.out.append(SfuInstr(cmd))

    def const(self, name: str, values: np.ndarray, rows: "slice | None" = None, n: "int | None" = None) -> VmemBuffer:
        """LOAD rows ``rows`` (default all) and the first ``n`` elements of each (default all) of a
        constant ``[R, N]`` (its DM region made once, named by this block's prefix) into a new buffer."""
        v = np.atleast_2d(np.asarray(values, dtype=np.int64))
        reg = self.plan.region(f"{self.prefix}const.{name}", fx_bytes(v))
        r0, r1, _ = (rows or slice(0, v.shape[0])).indices(v.shape[0])
        n = v.shape[1] if n is None else n
        if n != v.shape[1] and r1 - r0 != 1:
            raise ValueError("a constant's rows are loaded whole, or one row's first n elements")
        buf = self.vm.alloc(name, r1 - r0, n)
        self.out.append(LoadInstr(reg.addr + r0 * v.shape[1] * FX_BYTES, buf.addr, r1 - r0, n))
        return buf

    def gemm(self, kind: WeightKind, w_addr: int, a: VmemBuffer, k: int, y: VmemBuffer, n: int, prog,
             plane: Plane = Plane.WHOLE) -> None:
        """A GEMM of ``a``'s rows (their first ``k`` elements) by the compiled ``prog`` (``[k, n]``) into ``y``."""
        words = prog.instruction_words()
        assert opcode_of(words[-1]) == Opcode.HALT
        self.out.append(GemmInstr(kind, w_addr, a.addr, a.row_words, y.addr, y.row_words, a.rows, k, n,
                                  tuple(words[:-1]), plane))

    # -- the block's steps -------------------------------------------------------------------
    def norm(self, x: VmemBuffer, i: int) -> VmemBuffer:
        s, w = self.s, self.w
        h = self.vm.alloc(f"norm{i}", self.T, s.hidden)
        gain = self.const(f"norm{i}.gain", getattr(w, f"norm{i}"))
        op = SfuOp.RMSNORM if s.norm == "rmsnorm" else SfuOp.LAYERNORM
        self.sfu(op, self.T, s.hidden, h, x, b=gain.addr, eps_code=norm_eps_code(s.eps, s.hidden))
        self.vm.free(gain)
        if s.norm != "rmsnorm":
            bias = self.const(f"norm{i}.bias", getattr(w, f"norm{i}_bias"))
            self.sfu(SfuOp.ADD, self.T, s.hidden, h, h, b=bias.addr)
            self.vm.free(bias)
        return h

    def quantize(self, x: VmemBuffer, n: int) -> tuple[VmemBuffer, VmemBuffer, VmemBuffer]:
        codes = self.vm.alloc(f"{x.name}.codes", x.rows, n)
        mant = self.vm.alloc(f"{x.name}.mant", 1, x.rows)
        expo = self.vm.alloc(f"{x.name}.exp", 1, x.rows)
        self.sfu(SfuOp.QUANTIZE, x.rows, n, codes, x, unit=n, bits=ACT_BITS, scale_dst=mant.addr,
                 row_exponent=True, exp_dst=expo.addr)
        return codes, mant, expo

    def requant(self, dots: VmemBuffer, mant: VmemBuffer, expo: VmemBuffer, col_mant: np.ndarray,
                col_exp: int, name: str, bias: "np.ndarray | None" = None) -> VmemBuffer:
        """REQUANT_ROW of raw sums (and ADD of ``bias``), in place over ``dots``."""
        n = dots.n
        b = self.const(f"{name}.mant", col_mant, n=n)                    # a longer vector: its first n
        self.sfu(SfuOp.REQUANT_ROW, dots.rows, n, dots, dots, b=b.addr, shift=col_exp - FX_FRAC,
                 scale_src=mant.addr, exp_src=expo.addr)
        self.vm.free(b)
        if bias is not None:
            bb = self.const(f"{name}.bias", bias)
            self.sfu(SfuOp.ADD, dots.rows, n, dots, dots, b=bb.addr)
            self.vm.free(bb)
        return dots

    def linear(self, x: VmemBuffer, name: str) -> VmemBuffer:
        """fx ``x`` -> fx output of linear layer ``name`` (a new buffer; ``x`` kept)."""
        lin = self.w.linear[name]
        out_f, in_f = lin.shape
        codes, mant, expo = self.quantize(x, in_f)
        y = self.vm.alloc(name, self.T, out_f)
        if lin.codes is None:                                                  # a BlockShape: costed only
            self.out.append(GemmCounts(gemm_instruction_counts(self.cfg, self.T, in_f, out_f, lin.pattern)))
        else:
            wt = lin.codes.T.astype(np.int64)                                  # W[k=in, n=out]
            addr, prog = self.plan.weight_image(           # the image follows the schedule for T rows
                f"{self.prefix}w.{name}.m{self.T}", self.cfg,
                lambda: compile_gemm(self.cfg, wt, self.T, self._pattern(wt), prune=False))
            self.gemm(WeightKind.IMAGE, addr, codes, in_f, y, out_f, prog)
        self.vm.free(codes)
        self.requant(y, mant, expo, lin.mantissa, lin.exponent, name, lin.bias)
        self.vm.free(mant, expo)
        return y

    def _pattern(self, w: np.ndarray) -> str:
        """The config's default N:M pattern when ``w`` (``[k, n]``) satisfies it, else dense."""
        p = self.cfg.sparsity.default
        n_, m_ = nm.parse_nm(p) or (0, 0)
        if m_ and n_ < m_ and w.shape[0] % m_ == 0 and nm.is_nm_sparse(w, n_, m_, axis=0):
            return p
        return "dense"

    def heads(self, y: VmemBuffer, n_heads: int, name: str) -> list[VmemBuffer]:
        """MOVE each head's columns of ``y [T, n_heads * hd]`` into its own ``[T, hd]`` buffer."""
        hd = self.s.head_dim
        out = []
        for j in range(n_heads):
            buf = self.vm.alloc(f"{name}{j}", self.T, hd)
            self.out.append(MoveInstr(y.addr + j * (hd // self.lanes), y.row_words, buf.addr, buf.row_words,
                                      self.T, buf.row_words))
            out.append(buf)
        return out

    def rope(self, heads: list[VmemBuffer]) -> None:
        w, s = self.w, self.s
        if s.rope is None:
            return
        table = np.empty((w.max_positions, s.head_dim), dtype=np.int64)
        table[:, 0::2], table[:, 1::2] = w.rope_cos, w.rope_sin
        tb = self.const("rope", table, slice(self.start, self.start + self.T))
        for h in heads:
            self.sfu(SfuOp.ROPE, self.T, s.head_dim, h, h, b=tb.addr, b_step=tb.row_words)
        self.vm.free(tb)

    def kv_store(self, heads: list[VmemBuffer], scale, kind: str) -> None:
        for h, buf in enumerate(heads):
            self.sfu(SfuOp.QSTATIC, self.T, self.s.head_dim, buf, buf, mantissa=int(scale.mantissa[h]),
                     exponent=int(scale.exponent[h]), bits=ACT_BITS, qmax=self.w.kv_qmax)
            reg = self.kv_region(kind, h)
            self.out.append(KvStoreInstr(reg.addr, buf.addr, self.T, self.start, self.s.head_dim))

    def cache_gemm(self, kind: WeightKind, h: int, a: VmemBuffer, k: int, y: VmemBuffer, n: int) -> None:
        """A GEMM against KV head ``h`` (K^T or V), in nibble planes on a 4-bit weight port."""
        reg = self.kv_region("k" if kind is WeightKind.KEYS else "v", h)
        shape = (self.s.head_dim, self.keys) if kind is WeightKind.KEYS else (self.keys, self.s.head_dim)
        if isinstance(self.w, BlockShape):
            for _ in range(self.passes):
                self.out.append(GemmCounts(gemm_instruction_counts(self.cfg, a.rows, *shape, "dense")))
            if self.passes == 2:
                self._combine(y, n, self.vm.alloc("lo", y.rows, n))
            return
        # The schedule of a dense GEMM does not depend on the values: compile it on zeros; the
        # machine forms the weight beats from the cache's codes when it runs (docs/isa.md).
        prog = self.plan.schedule(self.cfg, shape, a.rows)
        if self.passes == 1:
            self.gemm(kind, reg.addr, a, k, y, n, prog)
            return
        lo = self.vm.alloc("lo", y.rows, n)
        self.gemm(kind, reg.addr, a, k, y, n, prog, Plane.HIGH)
        self.gemm(kind, reg.addr, a, k, lo, n, prog, Plane.LOW)
        self._combine(y, n, lo)

    def kv_region(self, kind: str, h: int) -> DmRegion:
        """KV head ``h``'s ``k`` or ``v`` cache: int8 ``[max_positions, head_dim]``."""
        return self.plan.region(f"{self.prefix}{kind}{h}", self.w.max_positions * self.s.head_dim)

    def _combine(self, y: VmemBuffer, n: int, lo: VmemBuffer) -> None:
        """``y = 16 * y + lo``: the nibble planes' sums combined on the SFU (MUL by 16.0, ADD)."""
        sixteen = self.const(f"nibble.16.{n}", np.full(n, 16 * FX_ONE))
        self.sfu(SfuOp.MUL, y.rows, n, y, y, b=sixteen.addr)
        self.sfu(SfuOp.ADD, y.rows, n, y, y, b=lo.addr, b_step=lo.row_words)
        self.vm.free(sixteen, lo)

    def attention(self, q_heads: list[VmemBuffer]) -> VmemBuffer:
        s, w = self.s, self.w
        ctx = self.vm.alloc("ctx", self.T, s.q_width)
        for j, qh in enumerate(q_heads):
            h = j // s.group
            qc, qm, qe = self.quantize(qh, s.head_dim)
            scores = self.vm.alloc("scores", self.T, self.keys)
            self.cache_gemm(WeightKind.KEYS, h, qc, s.head_dim, scores, self.keys)
            self.vm.free(qc)
            self.requant(scores, qm, qe, np.full(w.max_positions, w.score_scale.mantissa[h]),
                         int(w.score_scale.exponent[h]), f"score{h}")
            self.vm.free(qm, qe)
            self.sfu(SfuOp.SOFTMAX, self.T, self.keys, scores, scores, causal=s.causal,
                     offset=self.start if s.causal else 0)
            pc, pm, pe = self.quantize(scores, self.keys)
            self.vm.free(scores)
            part = self.vm.alloc("ctx.head", self.T, s.head_dim)
            self.cache_gemm(WeightKind.VALUES, h, pc, self.keys, part, s.head_dim)
            self.vm.free(pc)
            self.requant(part, pm, pe, np.full(s.head_dim, w.v_scale.mantissa[h]), int(w.v_scale.exponent[h]),
                         f"v{h}")
            self.vm.free(pm, pe)
            self.out.append(MoveInstr(part.addr, part.row_words, ctx.addr + j * (s.head_dim // self.lanes),
                                      ctx.row_words, self.T, part.row_words))
            self.vm.free(part)
        return ctx

    def mlp(self, h: VmemBuffer) -> VmemBuffer:
        s = self.s
        up = self.linear(h, "up")
        act = self.linear(h, "gate") if s.gated else up
        self.sfu(SfuOp[s.activation.upper()], self.T, s.ffn, act, act)
        if s.gated:
            self.sfu(SfuOp.MUL, self.T, s.ffn, act, act, b=up.addr, b_step=up.row_words)
            self.vm.free(up)
        out = self.linear(act, "down")
        self.vm.free(act)
        return out

    def token_rows_attention(self, q: VmemBuffer, k: VmemBuffer, v: VmemBuffer) -> VmemBuffer:
        """Attention of T > 1 tokens: each head's ``[T, hd]`` moved out of the projections' rows,
        RoPE, the KV appends, then :meth:`attention` head by head; frees ``q, k, v``."""
        s, w = self.s, self.w
        q_heads = self.heads(q, s.heads, "q")
        k_heads = self.heads(k, s.kv_heads, "k")
        v_heads = self.heads(v, s.kv_heads, "v")
        self.vm.free(q, k, v)
        self.rope(q_heads + k_heads)
        self.kv_store(k_heads, w.k_scale, "k")
        self.kv_store(v_heads, w.v_scale, "v")
        self.vm.free(*k_heads, *v_heads)
        ctx = self.attention(q_heads)
        self.vm.free(*q_heads)
        return ctx

    def _stacked(self, y: VmemBuffer, rows: int, name: str) -> VmemBuffer:
        """The one-token row ``y [1, rows * hd]`` seen as ``[rows, hd]`` (heads are whole words)."""
        return VmemBuffer(name, y.addr, rows, self.s.head_dim, self.lanes)

    def one_token_attention(self, q: VmemBuffer, k: VmemBuffer, v: VmemBuffer) -> VmemBuffer:
        """Attention of one token: its projections' row already is ``[heads, hd]``, so no head moves;
        one RoPE over all query heads (and one over the KV heads), and per KV head the ``group``
        query heads that share it stacked as the rows of one QUANTIZE, one K^T GEMM, one
        REQUANT_ROW, one SOFTMAX, one V GEMM and one REQUANT_ROW, the context written in place
        (GQA: the KV head's K and V stream once for its group); frees ``q, k, v``."""
        s, w = self.s, self.w
        qs, ks, vs = self._stacked(q, s.heads, "q"), self._stacked(k, s.kv_heads, "k"), self._stacked(v, s.kv_heads, "v")
        if s.rope is not None:
            table = np.empty((w.max_positions, s.head_dim), dtype=np.int64)
            table[:, 0::2], table[:, 1::2] = w.rope_cos, w.rope_sin
            tb = self.const("rope", table, slice(self.start, self.start + 1))
            for buf in (qs, ks):
                self.sfu(SfuOp.ROPE, buf.rows, s.head_dim, buf, buf, b=tb.addr, b_step=0)
            self.vm.free(tb)
        rows = [VmemBuffer(f"k{h}", ks.row(h), 1, s.head_dim, self.lanes) for h in range(s.kv_heads)]
        self.kv_store(rows, w.k_scale, "k")
        rows = [VmemBuffer(f"v{h}", vs.row(h), 1, s.head_dim, self.lanes) for h in range(s.kv_heads)]
        self.kv_store(rows, w.v_scale, "v")
        ctx = self.vm.alloc("ctx", 1, s.q_width)
        g = s.group
        for h in range(s.kv_heads):
            qc, qm, qe = self.quantize(VmemBuffer(f"q.kv{h}", qs.row(h * g), g, s.head_dim, self.lanes), s.head_dim)
            scores = self.vm.alloc("scores", g, self.keys)
            self.cache_gemm(WeightKind.KEYS, h, qc, s.head_dim, scores, self.keys)
            self.vm.free(qc)
            self.requant(scores, qm, qe, np.full(w.max_positions, w.score_scale.mantissa[h]),
                         int(w.score_scale.exponent[h]), f"score{h}")
            self.vm.free(qm, qe)
            # every row is at position ``start``: causal keeps all the cached keys, as one row would
            self.sfu(SfuOp.SOFTMAX, g, self.keys, scores, scores, causal=s.causal, offset=self.start if s.causal else 0)
            pc, pm, pe = self.quantize(scores, self.keys)
            self.vm.free(scores)
            part = VmemBuffer(f"ctx.kv{h}", ctx.addr + h * g * (s.head_dim // self.lanes), g, s.head_dim, self.lanes)
            self.cache_gemm(WeightKind.VALUES, h, pc, self.keys, part, s.head_dim)
            self.vm.free(pc)
            self.requant(part, pm, pe, np.full(s.head_dim, w.v_scale.mantissa[h]), int(w.v_scale.exponent[h]),
                         f"v{h}")
            self.vm.free(pm, pe)
        self.vm.free(q, k, v)
        return ctx

    def block(self, x: VmemBuffer) -> VmemBuffer:
        """The block on the hidden states in ``x [T, hidden]``; returns the buffer of its output
        (``x`` itself or a new one; the caller frees it)."""
        s, w = self.s, self.w
        for kind in ("k", "v"):
            for h in range(s.kv_heads):
                self.kv_region(kind, h)
        h = self.norm(x, 1) if s.prenorm else x
        q, k, v = (self.linear(h, name) for name in ("q", "k", "v"))
        if h is not x:
            self.vm.free(h)
        ctx = self.one_token_attention(q, k, v) if self.T == 1 else self.token_rows_attention(q, k, v)
        o = self.linear(ctx, "o")
        self.vm.free(ctx)
        self.sfu(SfuOp.ADD, self.T, s.hidden, x, x, b=o.addr, b_step=o.row_words)
        self.vm.free(o)
        if s.prenorm:
            h2 = self.norm(x, 2)
            m = self.mlp(h2)
            self.vm.free(h2)
            self.sfu(SfuOp.ADD, self.T, s.hidden, x, x, b=m.addr, b_step=m.row_words)
            result = x
        else:
            x1 = self.norm(x, 1)
            self.vm.free(x)
            m = self.mlp(x1)
            self.sfu(SfuOp.ADD, self.T, s.hidden, x1, x1, b=m.addr, b_step=m.row_words)
            result = self.norm(x1, 2)
            self.vm.free(x1)
        self.vm.free(m)
        return result


def compile_block(config: AcceleratorConfig, weights: BlockWeights, phase: str, tokens: int,
                  start: int = 0) -> BlockProgram:
    """Compile one block for ``config``'s machine.

    Parameters
    ----------
    config : AcceleratorConfig
        A config with an ``sfu:`` section, int8 activations and tensor activation scales.
    weights : BlockWeights
        The block (:mod:`sparsa.models.block`); its linear weights run in the config's default
        N:M pattern when they satisfy it, else dense.
    phase : str
        ``prefill`` (``tokens`` tokens from position 0) or ``decode`` (one token at ``start``).
    tokens : int
        T.
    start : int
        Cached positions before the first token (decode: the context length C).

    Returns
    -------
    BlockProgram

    Raises
    ------
    ConfigError, UnsupportedError
        Before any work, for a config, phase or length the machine cannot run (the value and the
        limit are named), including a program whose buffers do not fit ``sfu.vmem_words``.
    """
    if not isinstance(weights, BlockWeights):
        raise ConfigError(f"compile_block takes BlockWeights, not {type(weights).__name__} (a BlockShape is "
                          f"costed by block_cycles)")
    check_block(config, weights, phase, tokens, start)
    bp = BlockProgram(config, weights, phase, tokens, start)
    bp.vmem_peak = _lower_one_block(bp)
    return bp


def _lower_one_block(bp: BlockProgram) -> int:
    """LOAD ``x_in``, the block, STORE ``x_out``, HALT; returns the VMEM peak."""
    cfg, s = bp.config, bp.weights.spec
    vm = VmemAllocator(cfg.sfu.lanes, cfg.sfu.vmem_words, f"block ({bp.phase}, {bp.tokens} tokens)")
    x_in = bp.plan.region("x_in", bp.tokens * s.hidden * FX_BYTES)
    x_out = bp.plan.region("x_out", bp.tokens * s.hidden * FX_BYTES)
    x = vm.alloc("x", bp.tokens, s.hidden)
    bp.instructions.append(LoadInstr(x_in.addr, x.addr, bp.tokens, s.hidden))
    y = BlockLowering(cfg, bp.weights, bp.tokens, bp.start, bp.plan, vm, bp.instructions).block(x)
    bp.instructions += [StoreInstr(x_out.addr, y.addr, bp.tokens, s.hidden), HaltInstr()]
    return vm.peak



def block_cycles(config: AcceleratorConfig, shape: BlockShape, phase: str, tokens: int,
                 start: int = 0) -> dict[str, int]:
    """Cycles of the block's machine program from its structure alone: ``{"total", "matrix", "sfu", "memory"}``.

    The same lowering as :func:`compile_block`, with each GEMM costed from the datapath's tiling
    (:class:`~sparsa.machine.timing.GemmCounts`) instead of compiled: equal, cycle for cycle, to
    the compiled block's count on the cycle rung (tested), for any weights of that structure.

    Raises
    ------
    ConfigError, UnsupportedError
        As :func:`compile_block`.
    """
    if not isinstance(shape, BlockShape):
        raise ConfigError(f"block_cycles takes a BlockShape, not {type(shape).__name__}")
    check_block(config, shape, phase, tokens, start)
    bp = BlockProgram(config, shape, phase, tokens, start)
    _lower_one_block(bp)
    return machine_cycles(config, bp.instructions)
