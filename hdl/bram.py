"""A simple dual-port block RAM whose read data passes two registers: the read latch and the output register.

::

    write port:  wen, waddr, wdata          mem[waddr] <= wdata                  (edge with wen)
    read port:   raddr, ren  -> rdata       latch <= mem[raddr]; rdata <= latch  (edge with ren)

Both read stages advance on the same enable, so ``rdata`` shows the word addressed two
enabled cycles earlier and holds still while ``ren`` is low - a stream reader can use ``ren``
as its ``advance`` and keep its payload stable while ``valid & ~ready``.

:class:`PipelinedBlockRam` has exactly that cycle behaviour on every platform:

* **ECP5** (:func:`uses_ecp5_block_ram`: a Lattice ECP5 platform, i.e. a board build):
  a grid of ``DP16KD`` instances, port A writing, port B reading, with ``REGMODE_B =
  "OUTREG"`` - the second stage is the block RAM's own output register, clocked with
  ``CEB = OCEB = ren``.  Yosys does not infer that register, and without it the RAM's
  clock-to-out (~5.8 ns) plus the route to the first fabric flip-flop was the critical path of
  the 8x8 SoC (docs/fpga.md).  The aspect ratio is the cheapest of :data:`DP16KD_OUTREG_ASPECTS`
  (:func:`cheapest_tiling`, the same code :mod:`sparsa.fpga.fit` estimates with).  The 512x36
  mode is not used: it splits a word over both ports' outputs, and which port's clock enables
  drive the low half's read registers is not documented in what this project could check
  (Yosys' ECP5 ``cells_sim.v`` has no DP16KD model), so a stalled read could not be proven to
  hold.  Words of several tiles deep are selected by the high address bits, delayed alongside
  the two read stages (a multiplexer after the output register).
* **Everywhere else** (Amaranth simulation, Verilator, Xilinx, generic Verilog): an
  :class:`amaranth.lib.memory.Memory` with a synchronous, non-transparent read port plus one
  register with the same enable.

With ``output_register=False`` the read path is the latch alone (``READ_LATENCY`` 1, ECP5
``REGMODE_B = "NOREG"``): the accumulator bank (:mod:`sparsa.hdl.accumulator`) reads that way,
because its read is in the accelerator's cycle contract.  It is instantiated rather than
inferred for another reason: Yosys emulates the old-data read-during-write of an inferred
``Memory`` on ECP5 with registered write signals, an address compare and a LUT multiplexer
behind every DOB bit, and that LUT sat on the critical path of the 8x8 (docs/fpga.md).

Reading the word that the write port writes in the same cycle returns the old word in the
Amaranth description; on ECP5 the DP16KD does not promise old or new data for that case.  The
SoC's buffers never do it (the host writes while the readers are idle), nor does the accumulator
bank (within a COMPUTE it writes row ``r - 1`` while reading row ``r + 1``, and the flush
finishes the last write before anything reads again; ``tests/hdl/test_integration.py`` runs the
accelerator on a DP16KD model that returns garbage on such a read).

The ``DP16KD`` instantiation is :func:`_dp16kd`; tests replace it by an Amaranth model of the
primitive to simulate the ECP5 flavour (the ``MULT18X18D`` of :mod:`sparsa.hdl.pe` is handled
the same way).
"""

from __future__ import annotations

import math

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedBlockRam", "check_memory_geometry", "uses_ecp5_block_ram", "cheapest_tiling", "DP16KD_ASPECTS",
           "DP16KD_OUTREG_ASPECTS", "READ_LATENCY"]

#: (depth, width) aspect ratios of one ECP5 DP16KD (18 kbit), simple dual port.
DP16KD_ASPECTS = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: The aspects :class:`PipelinedBlockRam` instantiates with the output register (no 512x36, see the module).
DP16KD_OUTREG_ASPECTS = DP16KD_ASPECTS[:-1]
#: Cycles with ``ren`` from ``raddr`` to the word on ``rdata``: the read latch, then the output register.
READ_LATENCY = 2

#: Address bit of the DP16KD's 14-bit ADA/ADB where a word address starts, by data width
#: (x1: ADx[13:0], x2: [13:1], x4: [13:2], x9: [13:3], x18: [13:4]; the bits below are 0,
#: except the x18 write port's ADA[1:0], the two byte enables).
_ADDRESS_SHIFT = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4}


def cheapest_tiling(depth: int, width: int, aspects=DP16KD_ASPECTS) -> tuple[int, int, int]:
    """The block-RAM aspect with the fewest tiles for a ``depth`` x ``width`` memory.

    Returns ``(tile_depth, tile_width, tiles)``; ties go to the first aspect in ``aspects``.

    >>> cheapest_tiling(2048, 256)
    (2048, 9, 29)
    """
    for name, value in (("depth", depth), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    best = None
    for tile_depth, tile_width in aspects:
        tiles = math.ceil(depth / tile_depth) * math.ceil(width / tile_width)
        if best is None or tiles < best[2]:
            best = (tile_depth, tile_width, tiles)
    if best is None:
        raise ValueError(f"aspects must name at least one (depth, width), not {aspects!r}")
    return best


def check_memory_geometry(width: object, depth: object) -> None:
    """Raise ``ValueError`` unless ``width`` is a positive integer and ``depth`` an integer >= 2.

    The one argument check of every RAM-backed component (:class:`PipelinedBlockRam`, the SoC
    buffers of :mod:`sparsa.hdl.soc.buffers`).
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive integer, not {width!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
        raise ValueError(f"depth must be an integer >= 2, not {depth!r}")


def uses_ecp5_block_ram(platform) -> bool:
    """Whether :class:`PipelinedBlockRam` instantiates ``DP16KD`` for ``platform`` (Lattice ECP5 platforms)."""
    if platform is None:
        return False
    try:
        from amaranth.vendor import LatticePlatform
    except ImportError:     # pragma: no cover - Amaranth 0.5 always has it
        return False
    return isinstance(platform, LatticePlatform) and getattr(platform, "family", None) == "ecp5"


def _dp16kd(m: Module, name: str, *, width: int, wen, waddr, wdata, ren, raddr, rdata,
            output_register: bool = True) -> None:
    """One ``DP16KD``: port A writes ``wdata`` at ``waddr`` (edge with ``wen``), port B reads.

    ``waddr`` / ``raddr`` are word addresses of ``14 - _ADDRESS_SHIFT[width]`` bits, ``wdata`` /
    ``rdata`` ``width`` bits.  Port B's read latch (``CEB``) and output register (``OCEB``,
    ``REGMODE_B = "OUTREG"``) both advance with ``ren``: ``rdata`` shows ``mem[raddr]`` two
    edges with ``ren`` after the address.  Without ``output_register`` (``REGMODE_B =
    "NOREG"``, ``OCEB`` low) ``rdata`` is the latch, one edge after the address.  (Tests
    replace this function by an Amaranth model.)
    """
    shift = _ADDRESS_SHIFT[width]
    ports = {}
    for port, addr in (("A", waddr), ("B", raddr)):
        for bit in range(14):
            if shift <= bit < shift + len(addr):
                ports[f"i_AD{port}{bit}"] = addr[bit - shift]
            elif port == "A" and width == 18 and bit < 2:
                ports[f"i_AD{port}{bit}"] = 1          # x18 write: both byte enables
            else:
                ports[f"i_AD{port}{bit}"] = 0
    for bit in range(18):
        ports[f"i_DIA{bit}"] = wdata[bit] if bit < width else 0
        ports[f"i_DIB{bit}"] = 0
        if bit < width:
            ports[f"o_DOB{bit}"] = rdata[bit]
    for port in "AB":
        for bit in range(3):
            ports[f"i_CS{port}{bit}"] = 0
    m.submodules[name] = Instance(
        "DP16KD",
        p_DATA_WIDTH_A=width, p_DATA_WIDTH_B=width,
        p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG" if output_register else "NOREG",
        p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
        p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
        p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
        p_GSR="DISABLED",
        i_CLKA=ClockSignal("sync"), i_CEA=wen, i_OCEA=0, i_WEA=wen, i_RSTA=0,
        i_CLKB=ClockSignal("sync"), i_CEB=ren, i_OCEB=ren if output_register else 0, i_WEB=0, i_RSTB=0,
        **ports)


class PipelinedBlockRam(wiring.Component):
    """Simple dual-port RAM with a two-register read path (read latch + output register).

    Parameters
    ----------
    width : int
        Word width in bits.
    depth : int
        Words (at least 2).
    output_register : bool
        Keep the output register (default).  ``False``: ``rdata`` is the read latch, one
        enabled cycle after ``raddr`` (ECP5 ``REGMODE_B = "NOREG"``).

    Attributes
    ----------
    wen : In(1)
        Write ``wdata`` to ``waddr`` at this clock edge.
    waddr : In(abits)
        Write address (``abits = ceil(log2(depth))``).
    wdata : In(width)
        Write data.
    ren : In(1)
        Advance the read stages: the latch takes ``mem[raddr]``, the output register the latch.
    raddr : In(abits)
        Read address.
    rdata : Out(width)
        The word addressed :attr:`read_latency` edges with ``ren`` earlier (the output register,
        or the latch without it); unchanged while ``ren`` is low.  (Undefined before that many
        enabled reads: 0 in the Amaranth description.)
    """

    def __init__(self, width: int, depth: int, *, output_register: bool = True) -> None:
        check_memory_geometry(width, depth)
        if not isinstance(output_register, bool):
            raise TypeError(f"output_register must be a bool, not {output_register!r}")
        self._output_register = output_register
        self._width = width
        self._depth = depth
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "wen": In(1),
            "waddr": In(abits),
            "wdata": In(width),
            "ren": In(1),
            "raddr": In(abits),
            "rdata": Out(width),
        })

    @property
    def width(self) -> int:
        """Word width in bits."""
        return self._width

    @property
    def depth(self) -> int:
        """Words."""
        return self._depth

    @property
    def output_register(self) -> bool:
        """Whether the read path has the output register after the latch."""
        return self._output_register

    @property
    def read_latency(self) -> int:
        """Enabled cycles from ``raddr`` to ``rdata``: :data:`READ_LATENCY` (2), or 1 without the output register."""
        return READ_LATENCY if self._output_register else 1

    def ecp5_tiling(self) -> tuple[int, int, int]:
        """``(tile_depth, tile_width, tiles)`` of the DP16KD grid on ECP5."""
        return cheapest_tiling(self._depth, self._width, DP16KD_OUTREG_ASPECTS)

    def elaborate(self, platform) -> Module:
        m = Module()
        if uses_ecp5_block_ram(platform):
            self._elaborate_ecp5(m)
            return m
        m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
        wport = mem.write_port(domain="sync")
        rport = mem.read_port(domain="sync", transparent_for=())
        m.d.comb += [
            wport.en.eq(self.wen), wport.addr.eq(self.waddr), wport.data.eq(self.wdata),
            rport.en.eq(self.ren), rport.addr.eq(self.raddr),
        ]
        if self._output_register:
            with m.If(self.ren):
                m.d.sync += self.rdata.eq(rport.data)
        else:
            m.d.comb += self.rdata.eq(rport.data)
        return m

    def _elaborate_ecp5(self, m: Module) -> None:
        tile_depth, tile_width, _ = self.ecp5_tiling()
        rows = math.ceil(self._depth / tile_depth)
        cols = math.ceil(self._width / tile_width)
        low = (tile_depth - 1).bit_length()          # word address bits inside one tile
        padded = Signal(cols * tile_width)
        m.d.comb += padded[:self._width].eq(self.wdata)
        outputs = []
        for row in range(rows):
            if rows == 1:
                row_wen = self.wen
            else:
                row_wen = self.wen & (self.waddr[low:] == row)
            out = Signal(cols * tile_width, name=f"row{row}_rdata")
            outputs.append(out)
            for col in range(cols):
                sl = slice(col * tile_width, (col + 1) * tile_width)
                _dp16kd(m, f"bram_r{row}_c{col}", width=tile_width, wen=row_wen,
                        waddr=self.waddr[:low], wdata=padded[sl], ren=self.ren,
                        raddr=self.raddr[:low], rdata=out[sl], output_register=self._output_register)
        if rows == 1:
            m.d.comb += self.rdata.eq(outputs[0][:self._width])
            return
        # The row of a deep memory: the high read-address bits follow the read stages.
        sel_latch = Signal(len(self.raddr) - low, name="row_sel_latch")
        with m.If(self.ren):
            m.d.sync += sel_latch.eq(self.raddr[low:])
        if self._output_register:
            sel = Signal(len(self.raddr) - low, name="row_sel")
            with m.If(self.ren):
                m.d.sync += sel.eq(sel_latch)
        else:
            sel = sel_latch
        with m.Switch(sel):
            for row, out in enumerate(outputs):
                with m.Case(row):
                    m.d.comb += self.rdata.eq(out[:self._width])
            with m.Default():
                m.d.comb += self.rdata.eq(Const(0, self._width))
