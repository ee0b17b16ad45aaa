"""Compile a whole decoder LM into machine programs, one per generation step (docs/block.md, "Generation").

A :class:`ModelMachine` owns the device plan every step shares: the embedding table (fx rows),
each block's weight images and KV cache (regions prefixed ``L{i}.``), the final norm, the LM head
in vocabulary chunks and the logits.  :meth:`ModelMachine.step` compiles one step - the prompt's
prefill (T tokens at position 0) or one decode token at position p - into one program:

* LOAD of each token's embedding row (its DM address from the token id) into VMEM;
* every block in turn (:class:`~sparsa.compiler.block.BlockLowering`): the hidden states stay in
  VMEM from block to block, only weights, constants and the KV cache cross to device memory;
* the final RMSNorm of the last token, QUANTIZE, then per vocabulary chunk a GEMM against the LM
  head's image, REQUANT_ROW and a STORE of the chunk's logits to DM; HALT.

The host reads the logits, takes the greedy argmax (as :func:`sparsa.models.block.lm.greedy`) and
compiles the next step with that token.  Weight images are scheduled for the step's row count
(T for the prefill, 1 for decode), so each layer has one image per row count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsa.compiler.block import PHASES, BlockLowering, DevicePlan, check_block
from sparsa.compiler.datapath import compile_gemm
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError
from sparsa.machine.isa import (
    GemmInstr,
    HaltInstr,
    KvStoreInstr,
    LoadInstr,
    SfuInstr,
    StoreInstr,
    WeightKind,
    encode_machine,
)
from sparsa.machine.memory import FX_BYTES, VmemAllocator, VmemBuffer, fx_bytes
from sparsa.models.block.lm import IntLM
from sparsa.sfu.command import SfuCommand, SfuOp
from sparsa.sfu.ops import norm_eps_code

__all__ = ["ModelMachine", "StepProgram", "LM_HEAD_CHUNK", "dm_traffic"]

#: Vocabulary columns of the LM head per GEMM (its logits and column scales share the VMEM with
#: the step's other buffers).
LM_HEAD_CHUNK = 4096


@dataclass
class StepProgram:
    """One step: its instructions, tokens, first position and VMEM peak."""

    instructions: list = field(default_factory=list)
    tokens: int = 1
    start: int = 0
    vmem_peak: int = 0

    def words(self) -> list[int]:
        """The instruction stream."""
        return encode_machine(self.instructions)


class ModelMachine:
    """A decoder LM compiled for a config's machine, step by step.

    Parameters
    ----------
    config : AcceleratorConfig
        The machine (with ``sfu:``).
    model : IntLM
        The model.
    chunk : int
        LM-head vocabulary columns per GEMM.
    """

    def __init__(self, config: AcceleratorConfig, model: IntLM, chunk: int = LM_HEAD_CHUNK) -> None:
        if not isinstance(model, IntLM):
            raise ConfigError(f"ModelMachine takes an IntLM, not {type(model).__name__}")
        self.config, self.model, self.chunk = config, model, chunk
        self.plan = DevicePlan()
        s = model.blocks[0].spec
        self.hidden = s.hidden
        self.embedding = self.plan.region("embedding", fx_bytes(model.embedding))
        self.logits = self.plan.region("logits", model.vocab * FX_BYTES)

    def step(self, ids: "list[int] | np.ndarray", start: int) -> StepProgram:
        """The program of one step: ``ids`` at positions ``start ..`` (prefill at 0, or one decode token).

        Raises
        ------
        ConfigError, ShapeError
            A step the machine or the model cannot run (ids, positions, VMEM), before any work.
        """
        m, cfg = self.model, self.config
        ids = m.check_ids(ids)
        phase = PHASES[0] if start == 0 else PHASES[1]
        for w in m.blocks:
            check_block(cfg, w, phase, int(ids.size), start)
        prog = StepProgram(tokens=int(ids.size), start=start)
        out = prog.instructions
        vm = VmemAllocator(cfg.sfu.lanes, cfg.sfu.vmem_words, f"{m.name} step at position {start} ({ids.size} tokens)")
        x = vm.alloc("x", ids.size, self.hidden)
        for t, tok in enumerate(ids):
            out.append(LoadInstr(self.embedding.addr + int(tok) * self.hidden * FX_BYTES, x.row(t), 1, self.hidden))
        for i, w in enumerate(m.blocks):
            y = BlockLowering(cfg, w, int(ids.size), start, self.plan, vm, out, prefix=f"L{i}.").block(x)
            if y is not x:
                vm.free(x)
            x = y
        self._head(VmemBuffer("x.last", x.row(x.rows - 1), 1, self.hidden, x.lanes), vm, out, start)
        out.append(HaltInstr())
        prog.vmem_peak = vm.peak
        return prog

    def _head(self, last: VmemBuffer, vm: VmemAllocator, out: list, start: int) -> None:
        """Final RMSNorm of the last token, then the LM head chunk by chunk into the logits region."""
        m, cfg = self.model, self.config
        low = BlockLowering(cfg, m.blocks[0], 1, start, self.plan, vm, out, prefix="head.")
        h = vm.alloc("head.h", 1, self.hidden)
        gain = low.const("final_norm", m.final_norm)
        cmd = SfuCommand(SfuOp.RMSNORM, 1, self.hidden, h.addr, last.addr, b=gain.addr,
                         eps_code=norm_eps_code(m.eps, self.hidden))
        cmd.check(cfg.sfu.lanes, cfg.sfu.vmem_words)
        out.append(SfuInstr(cmd))
        vm.free(gain)
        codes, mant, expo = low.quantize(h, self.hidden)
        head = m.lm_head
        for c0 in range(0, m.vocab, self.chunk):
            n = min(self.chunk, m.vocab - c0)
            addr, prog = self.plan.weight_image(
                f"head.w.c{c0}.m1", cfg,
                lambda: compile_gemm(cfg, head.codes[c0:c0 + n].T.astype(np.int64), 1, "dense", prune=False))
            y = vm.alloc("logits", 1, n)
            low.gemm(WeightKind.IMAGE, addr, codes, self.hidden, y, n, prog)
            low.requant(y, mant, expo, head.mantissa[c0:c0 + n], head.exponent, f"c{c0}")
            out.append(StoreInstr(self.logits.addr + c0 * FX_BYTES, y.addr, 1, n))
            vm.free(y)
        vm.free(h, codes, mant, expo)

    def read_logits(self, dm: "bytes | bytearray") -> np.ndarray:
        """The fx logits ``[vocab]`` a step left in device memory."""
        from sparsa.machine.memory import bytes_fx

        reg = self.logits
        return bytes_fx(dm[reg.addr:reg.addr + reg.size], (self.model.vocab,))


def dm_traffic(instructions: list, plan: DevicePlan) -> dict[str, int]:
    """Device-memory bytes a program moves, by kind: ``weights`` (weight images streamed), ``kv_read``
    (the cache streamed as K^T / V, once per nibble plane), ``kv_write`` (KV_STORE), ``constants``,
    ``embedding`` (token rows loaded), ``activations`` (other LOAD / STORE of fx rows) and ``logits``."""
    by_addr = {r.addr: r for r in plan.dm.regions.values()}
    starts = sorted(by_addr)

    def region_of(addr: int):
        import bisect

        i = bisect.bisect_right(starts, addr) - 1
        return by_addr[starts[i]] if i >= 0 else None

    out = dict.fromkeys(("weights", "kv_read", "kv_write", "constants", "embedding", "activations", "logits"), 0)
    for ins in instructions:
        if isinstance(ins, GemmInstr):
            if ins.w_kind is WeightKind.IMAGE:
                out["weights"] += by_addr[ins.w_addr].size
            else:
                out["kv_read"] += ins.k * ins.n
        elif isinstance(ins, (LoadInstr, StoreInstr)):
            name = region_of(ins.dm_addr).name
            kind = ("logits" if name == "logits" else "embedding" if name == "embedding"
                    else "constants" if ".const." in f".{name}" else "activations")
            out[kind] += ins.rows * ins.n * FX_BYTES
        elif isinstance(ins, KvStoreInstr):
            out["kv_write"] += ins.rows * ins.row_elements
    return out
