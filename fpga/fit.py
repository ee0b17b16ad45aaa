"""Will the SoC fit a board?  DSP and block-RAM estimates checked before place and route.

The estimates follow what Yosys infers for this design (checked by the synthesis tests):

* **DSP**: one hard multiplier per PE (``rows * cols``): Yosys maps every ``wb x ab`` product
  to one ``MULT18X18D`` (ECP5) or ``DSP48E2`` (Xilinx); it does not pack two INT8 products
  into one DSP48E2 (the config's ``macs_per_dsp`` describes hand-packed designs, not this RTL).
* **Block RAM**: each memory (instruction, weight, activation, result buffers and the
  accumulator bank) takes the cheapest tiling of the block RAM's aspect ratios
  (ECP5 DP16KD: 16384x1 ... 512x36; Xilinx RAMB36E2: 32768x1 ... 512x72, RAMB18E2 halves).
  On ECP5 every one of them is a :class:`sparsa.hdl.bram.PipelinedBlockRam` grid of DP16KD
  (the four SoC buffers with the output register, the accumulator bank without), which never
  uses the 512x36 mode: their tiling is the one that class instantiates
  (:func:`sparsa.hdl.bram.cheapest_tiling` over :data:`~sparsa.hdl.bram.DP16KD_OUTREG_ASPECTS`).
  On Xilinx they are inferred (all aspects), and small memories may end up in LUT RAM
  instead, so this is an upper bound there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsa.errors import UnsupportedError
from sparsa.fpga.boards import Board
from sparsa.hdl.bram import DP16KD_ASPECTS, DP16KD_OUTREG_ASPECTS, cheapest_tiling
from sparsa.hdl.soc.params import SocParams

__all__ = ["FitEstimate", "estimate", "check_fit", "block_rams"]

#: (depth, width) aspect ratios of one block RAM, simple dual port.
_DP16KD = DP16KD_ASPECTS
_RAMB36 = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))
_RAMB18 = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def block_rams(depth: int, width: int, family: str, *, instantiated: bool = False) -> float:
    """Block RAMs (ECP5: DP16KD; Xilinx: RAMB36 units, a RAMB18 counts 0.5) for one memory.

    ``instantiated``: the memory is a :class:`sparsa.hdl.bram.PipelinedBlockRam` (on ECP5
    its DP16KD grid, without the 512x36 mode); otherwise any aspect ratio.
    """
    def tiles(aspects):
        return cheapest_tiling(depth, width, aspects)[2]
    if family == "ecp5":
        return float(tiles(DP16KD_OUTREG_ASPECTS if instantiated else _DP16KD))
    return min(float(tiles(_RAMB36)), 0.5 * tiles(_RAMB18))


@dataclass(frozen=True)
class FitEstimate:
    """Estimated use of one design on one board."""

    board: str
    dsp: int
    bram: float
    memory_kbit: float
    memories: dict[str, float]

    def as_dict(self) -> dict:
        """Plain-dict form."""
        return {"board": self.board, "dsp": self.dsp, "bram": self.bram, "memory_kbit": round(self.memory_kbit, 1),
                "bram_by_memory": dict(self.memories)}


def estimate(params: SocParams, board: Board) -> FitEstimate:
    """DSP and block-RAM use of the SoC for ``params`` on ``board``."""
    cfg = params.config
    family = "ecp5" if board.flow == "ecp5" else "xilinx"
    # The four SoC buffers (sparsa.hdl.soc.buffers) and the accumulator bank
    # (sparsa.hdl.accumulator) are PipelinedBlockRams.
    memories = {region.name.lower(): block_rams(mem.depth, mem.bits, family, instantiated=True)
                for region, mem in params.memories.items()}
    memories["accumulator"] = block_rams(cfg.buffers.accumulator_depth, cfg.output_beat_bits, family,
                                         instantiated=True)
    return FitEstimate(board=board.name, dsp=cfg.rows * cfg.cols, bram=sum(memories.values()),
                       memory_kbit=params.memory_kbit, memories=memories)


def _over(need: float, have: float) -> str:
    return f"+{need - have:g}, {100 * (need / have - 1):.0f} % over" if have else "the device has none"


def check_fit(params: SocParams, board: Board) -> FitEstimate:
    """Return the estimate, or refuse a design that cannot fit, naming the resource and the excess.

    Raises
    ------
    UnsupportedError
        e.g. ``systolic-8x8-2of4 needs 64 MULT18X18D but ulx3s-25f (LFE5U-25F) has 28 (+36, 129 % over)``.
    """
    est = estimate(params, board)
    cfg = params.config
    where = f"{board.name} ({board.device})"
    if est.dsp > board.dsp:
        raise UnsupportedError(
            f"{cfg.name}: the {cfg.rows}x{cfg.cols} array needs {est.dsp} {board.dsp_cell} but {where} has "
            f"{board.dsp} ({_over(est.dsp, board.dsp)}); use a smaller array")
    if board.flow == "ecp5":
        if est.bram > board.bram:
            worst = max(est.memories, key=est.memories.get)
            raise UnsupportedError(
                f"{cfg.name}: the SoC memories need about {est.bram:g} {board.bram_cell} ({board.bram_kbit} kbit block "
                f"RAMs; largest: {worst} {est.memories[worst]:g}) but {where} has {board.bram} "
                f"({_over(est.bram, board.bram)}); reduce buffers.weight_buffer_bytes / activation_buffer_bytes")
    else:
        capacity = board.bram_total_kbit + board.uram_total_kbit
        if est.memory_kbit > capacity:
            raise UnsupportedError(
                f"{cfg.name}: the SoC memories need {est.memory_kbit:.0f} kbit but {where} has {capacity} kbit of "
                f"block RAM + UltraRAM ({_over(round(est.memory_kbit), capacity)}); reduce the buffers")
    return est
