"""Sizes, address map and register map of the SoC around the accelerator (pure Python).

Everything the hardware (:mod:`sparsa.hdl.soc.core`) and the host driver
(:mod:`sparsa.sim.backends.soc.driver`) must agree on is computed here, once, from the
:class:`~sparsa.config.AcceleratorConfig`; neither side re-derives a width or an address.
This module does not import Amaranth, so the driver runs on a host without it.

Address map (32-bit words; AXI4-Lite byte address = word address * 4)::

    word address = region << region_shift | offset

    region 0  registers     (REG_* below)
    region 1  instructions  depth SocParams.instr_depth,  32-bit beats
    region 2  weights       depth SocParams.weight_depth, weight_beat_bits beats
    region 3  activations   depth SocParams.act_depth,    activation_beat_bits beats
    region 4  results       depth SocParams.result_depth, output_beat_bits beats (read only)

A beat of ``B`` bits occupies ``words(B) = ceil(B / 32)`` words, lowest word first, at
``offset = beat * stride + word`` with ``stride`` the next power of two of ``words(B)``
(words past ``words(B)`` are padding: writes are ignored, reads return zero).  A beat is
written to memory when its **last** word is written; the lower words are staged in a
register until then, so a host writes the words of a beat in increasing order.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from sparsa.config import AcceleratorConfig

__all__ = [
    "SOC_ID", "SOC_VERSION", "Region", "Reg", "Ctrl", "Status", "MemoryRegion", "SocParams",
    "words_per_beat", "stride_for", "ceil_log2", "DEFAULT_INSTR_DEPTH", "DmaPhase", "DMA_REGS",
    "dma_caps", "parse_dma_caps", "DmaConfig", "DMA_DATA_WIDTHS", "CMD_WRITE", "CMD_READ", "ACK",
]

#: Value of the ID register: ASCII "SPSA".
SOC_ID = 0x53505341
#: Version of this register map and of the UART byte protocol.  2: the DMA registers
#: (offsets 21, 24-34), CTRL bit 2 and STATUS bits 3-5 were added; offsets 0-20 are unchanged.
#: 3: STATUS bit 6 ILLEGAL (an unassigned opcode stops the accelerator); a bitstream of version 2
#: runs such a word as a NOP and reports DONE, so this driver refuses it rather than trust its DONE.
#: 4: a word with a bit its opcode does not use (``sparsa.isa.unused_mask``) is illegal too; a
#: version-3 bitstream ignores such bits and runs the word.
SOC_VERSION = 4
#: Instruction memory depth (words) when nothing else is asked for: 4 KiB, two ECP5 EBRs.
DEFAULT_INSTR_DEPTH = 1024

# The UART byte protocol (the bridge in :mod:`sparsa.hdl.soc.uart`, the host driver in
# :mod:`sparsa.sim.backends.soc.driver`): command and answer bytes.
#: Host -> device: write words (``'W' addr[4] n[2] data[4*n]``).
CMD_WRITE = 0x57   # 'W'
#: Host -> device: read words (``'R' addr[4] n[2]``).
CMD_READ = 0x52    # 'R'
#: Device -> host: the n-th word of a write is written.
ACK = 0x4B         # 'K'


class Region(enum.IntEnum):
    """The five regions of the address map."""

    REGS = 0
    INSTR = 1
    WEIGHTS = 2
    ACTS = 3
    RESULTS = 4


class Reg(enum.IntEnum):
    """Word offsets of the registers in region 0 (R: read only, W: write only, RW)."""

    ID = 0             # R   SOC_ID
    VERSION = 1        # R   SOC_VERSION
    CONFIG_HASH = 2    # R   first 8 hex digits of sparsa.hdl.export.config_hash(config)
    GEOMETRY = 3       # R   rows | cols << 8 | group_size << 16 | weight_bits << 24 | activation_bits << 28
    CTRL = 4           # W   Ctrl bits
    STATUS = 5         # R   Status bits
    CYCLES = 6         # R   the accelerator's cycles register (frozen once done)
    RUN_CYCLES = 7     # R   SoC clock cycles from START until the accelerator's done
    INSTR_COUNT = 8    # RW  instruction words to stream at START
    WEIGHT_COUNT = 9   # RW  weight beats to stream
    ACT_COUNT = 10     # RW  activation beats to stream
    RESULT_COUNT = 11  # R   result beats written to the result memory since START
    INSTR_TAKEN = 12   # R   instruction words the accelerator accepted since START
    WEIGHT_TAKEN = 13  # R   weight beats accepted
    ACT_TAKEN = 14     # R   activation beats accepted
    INSTR_DEPTH = 16   # R   memory depths in beats
    WEIGHT_DEPTH = 17
    ACT_DEPTH = 18
    RESULT_DEPTH = 19
    SCRATCH = 20       # RW  32-bit scratch register (link tests)
    DMA_CAPS = 21      # R   0: no AXI4 master; else dma_caps(data_width, max_burst)
    # The DMA registers below exist only in SoCs with the AXI4 master (DMA_CAPS != 0).
    DMA_INSTR_ADDR_LO = 24    # RW  device byte address of the instruction image (64 bits: LO, HI)
    DMA_INSTR_ADDR_HI = 25
    DMA_WEIGHT_ADDR_LO = 26   # RW  weight image
    DMA_WEIGHT_ADDR_HI = 27
    DMA_ACT_ADDR_LO = 28      # RW  activation image
    DMA_ACT_ADDR_HI = 29
    DMA_RESULT_ADDR_LO = 30   # RW  where the result beats go
    DMA_RESULT_ADDR_HI = 31
    DMA_RESULT_COUNT = 32     # RW  result beats to store after the run
    DMA_ERROR_INFO = 33       # R   phase << 2 | resp of the first failed transfer (0: none)
    DMA_CYCLES = 34           # R   SoC cycles of the last RUN_DMA (load + run + store)


class Ctrl(enum.IntFlag):
    """Bits of the CTRL register (write 1 to act; reads return 0)."""

    START = 1   # reset the accelerator, prime the stream readers, run (ignored while busy)
    CLEAR = 2   # abort a run and go idle (the accelerator is held in reset)
    RUN_DMA = 4  # DMA SoCs: load the memories from device memory, run, store the results (ignored while busy)


class Status(enum.IntFlag):
    """Bits of the STATUS register."""

    BUSY = 1              # started, accelerator not done yet
    DONE = 2              # the accelerator raised done (CYCLES is final)
    RESULT_OVERFLOW = 4   # more result beats arrived than the result memory holds (extra ones dropped)
    DMA_BUSY = 8          # a RUN_DMA sequence is in progress (load, run or store)
    DMA_DONE = 16         # the last RUN_DMA finished without error (the results are in device memory)
    DMA_ERROR = 32        # the last RUN_DMA stopped: an error response or a misaligned address (DMA_ERROR_INFO)
    ILLEGAL = 64          # the accelerator stopped on an illegal instruction word
                          # (DONE is set too; INSTR_TAKEN - 1 is the word's index, CYCLES the stop cycle)


class DmaPhase(enum.IntEnum):
    """Which transfer of a RUN_DMA sequence failed (``DMA_ERROR_INFO >> 2``)."""

    NONE = 0
    INSTR = 1      # reading the instruction image
    WEIGHTS = 2    # reading the weight image
    ACTS = 3       # reading the activation image
    RESULTS = 4    # writing the result beats
    ALIGN = 5      # a device address is not aligned to the AXI data width (nothing was transferred)
    RANGE = 6      # a beat count is larger than its memory (nothing was transferred)


#: The DMA address registers of each memory (LO word; HI is the next offset).
DMA_REGS = {
    Region.INSTR: Reg.DMA_INSTR_ADDR_LO,
    Region.WEIGHTS: Reg.DMA_WEIGHT_ADDR_LO,
    Region.ACTS: Reg.DMA_ACT_ADDR_LO,
    Region.RESULTS: Reg.DMA_RESULT_ADDR_LO,
}


#: AXI data widths of the DMA (bits).
DMA_DATA_WIDTHS = (32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class DmaConfig:
    """Shape of the SoC's AXI4 master (:class:`~sparsa.hdl.soc.dma.AxiDma`).

    Parameters
    ----------
    data_width : int
        AXI data width in bits: 32, 64, 128, 256, 512 or 1024 (HBM pseudo channels on the
        U280 are 256 bits wide, the shells' DDR ports 512).
    max_burst : int
        Most beats per burst (AXI4 INCR: 1..256).
    """

    data_width: int = 64
    max_burst: int = 16

    def __post_init__(self) -> None:
        if self.data_width not in DMA_DATA_WIDTHS or isinstance(self.data_width, bool):
            raise ValueError(f"data_width must be one of {DMA_DATA_WIDTHS}, not {self.data_width!r}")
        if not isinstance(self.max_burst, int) or isinstance(self.max_burst, bool) or not 1 <= self.max_burst <= 256:
            raise ValueError(f"max_burst must be an integer in 1..256, not {self.max_burst!r}")

    @property
    def beat_bytes(self) -> int:
        """Bytes per AXI beat (device addresses must be multiples of it)."""
        return self.data_width // 8

    @property
    def caps(self) -> int:
        """The DMA_CAPS register value."""
        return dma_caps(self.data_width, self.max_burst)


def dma_caps(data_width: int, max_burst: int) -> int:
    """DMA_CAPS register value: ``data_width | (max_burst - 1) << 16 | 1 << 31``."""
    return int(data_width) | (int(max_burst) - 1) << 16 | 1 << 31


def parse_dma_caps(value: int) -> "tuple[int, int] | None":
    """``(data_width, max_burst)`` from a DMA_CAPS value, or None for a SoC without DMA."""
    if not value >> 31 & 1:
        return None
    return value & 0xFFFF, (value >> 16 & 0xFF) + 1


def ceil_log2(n: int) -> int:
    """Smallest ``b`` with ``2**b >= n`` (0 for ``n <= 1``)."""
    return max(0, (int(n) - 1).bit_length())


def words_per_beat(bits: int) -> int:
    """32-bit words one beat of ``bits`` bits occupies."""
    return -(-int(bits) // 32)


def stride_for(bits: int) -> int:
    """Word stride between beats: the next power of two of :func:`words_per_beat`."""
    return 1 << ceil_log2(words_per_beat(bits))


@dataclass(frozen=True)
class MemoryRegion:
    """One on-chip memory as the bus sees it."""

    region: Region
    bits: int      # beat width
    depth: int     # beats

    @property
    def words(self) -> int:
        """Words per beat."""
        return words_per_beat(self.bits)

    @property
    def stride(self) -> int:
        """Word stride between beats (power of two)."""
        return stride_for(self.bits)

    @property
    def span_words(self) -> int:
        """Words of address space the region needs."""
        return self.depth * self.stride

    @property
    def kbit(self) -> float:
        """Storage in kbit (1024 bits)."""
        return self.depth * self.bits / 1024


@dataclass(frozen=True)
class SocParams:
    """Memory sizes and the resulting address map of the SoC for one accelerator config.

    Depths come from the config's ``buffers`` section: the weight memory holds
    ``weight_buffer_bytes``, the activation memory ``activation_buffer_bytes``, the result
    memory as many bytes as the activation memory (at least ``accumulator_depth`` beats),
    the instruction memory ``instr_depth`` words.

    Parameters
    ----------
    config : AcceleratorConfig
    instr_depth : int
        Instruction memory depth in 32-bit words.
    """

    config: AcceleratorConfig
    instr_depth: int = DEFAULT_INSTR_DEPTH

    def __post_init__(self) -> None:
        if not isinstance(self.config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {self.config!r}")
        if not isinstance(self.instr_depth, int) or isinstance(self.instr_depth, bool) or self.instr_depth < 2:
            raise ValueError(f"instr_depth must be an integer >= 2, not {self.instr_depth!r}")

    # ------------------------------------------------------------------ memories
    @property
    def weight_depth(self) -> int:
        """Weight memory depth in beats (``weight_buffer_bytes`` / beat size, at least ``rows``)."""
        cfg = self.config
        return max(cfg.rows, cfg.buffers.weight_buffer_bytes * 8 // cfg.weight_beat_bits)

    @property
    def act_depth(self) -> int:
        """Activation memory depth in beats (``activation_buffer_bytes`` / beat size)."""
        cfg = self.config
        return max(2, cfg.buffers.activation_buffer_bytes * 8 // cfg.activation_beat_bits)

    @property
    def result_depth(self) -> int:
        """Result memory depth in beats (the activation buffer's bytes, >= ``accumulator_depth``)."""
        cfg = self.config
        return max(cfg.buffers.accumulator_depth, cfg.buffers.activation_buffer_bytes * 8 // cfg.output_beat_bits)

    @property
    def memories(self) -> dict[Region, MemoryRegion]:
        """The four memories by region."""
        cfg = self.config
        return {
            Region.INSTR: MemoryRegion(Region.INSTR, 32, self.instr_depth),
            Region.WEIGHTS: MemoryRegion(Region.WEIGHTS, cfg.weight_beat_bits, self.weight_depth),
            Region.ACTS: MemoryRegion(Region.ACTS, cfg.activation_beat_bits, self.act_depth),
            Region.RESULTS: MemoryRegion(Region.RESULTS, cfg.output_beat_bits, self.result_depth),
        }

    def memory(self, region: Region) -> MemoryRegion:
        """The memory of ``region`` (KeyError for REGS)."""
        return self.memories[Region(region)]

    @property
    def memory_kbit(self) -> float:
        """On-chip memory bits of the SoC buffers plus the accumulator bank, in kbit."""
        cfg = self.config
        acc = cfg.buffers.accumulator_depth * cfg.output_beat_bits / 1024
        return sum(m.kbit for m in self.memories.values()) + acc

    # ------------------------------------------------------------------ address map
    @property
    def region_shift(self) -> int:
        """Word-address bits inside one region (at least 8, for the registers)."""
        return max(8, *(ceil_log2(m.span_words) for m in self.memories.values()))

    @property
    def addr_width(self) -> int:
        """Width of a word address on the SoC bus (3 region bits above ``region_shift``)."""
        return self.region_shift + 3

    @property
    def byte_addr_width(self) -> int:
        """Width of a byte address (AXI4-Lite)."""
        return self.addr_width + 2

    @property
    def staging_words(self) -> int:
        """Words the write-staging register holds (the widest beat minus its last word)."""
        return max(1, max(m.words for m in self.memories.values()) - 1)

    def base(self, region: Region) -> int:
        """Word address of the first word of ``region``."""
        return int(region) << self.region_shift

    def reg_addr(self, reg: Reg) -> int:
        """Word address of register ``reg``."""
        return self.base(Region.REGS) + int(reg)

    def beat_addr(self, region: Region, beat: int) -> int:
        """Word address of the first word of beat ``beat`` of ``region``."""
        return self.base(region) + beat * self.memory(region).stride

    # ------------------------------------------------------------------ identity
    @property
    def config_hash32(self) -> int:
        """The CONFIG_HASH register value (from :func:`sparsa.hdl.export.config_hash`)."""
        digest = hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()
        return int(digest[:8], 16)

    @property
    def geometry(self) -> int:
        """The GEOMETRY register value."""
        cfg = self.config
        return ((cfg.rows & 0xFF) | (cfg.cols & 0xFF) << 8 | (cfg.group_size & 0xFF) << 16
                | (cfg.weight_bits & 0xF) << 24 | (cfg.activation_bits & 0xF) << 28)

    def register_values(self) -> dict[Reg, int]:
        """Constant (read-only) register values."""
        return {
            Reg.ID: SOC_ID, Reg.VERSION: SOC_VERSION, Reg.CONFIG_HASH: self.config_hash32,
            Reg.GEOMETRY: self.geometry,
            Reg.INSTR_DEPTH: self.instr_depth, Reg.WEIGHT_DEPTH: self.weight_depth,
            Reg.ACT_DEPTH: self.act_depth, Reg.RESULT_DEPTH: self.result_depth,
        }

    def describe(self) -> str:
        """Multi-line human-readable memory map."""
        lines = [f"SoC address map for {self.config.name!r} (word addresses, region shift {self.region_shift}):",
                 f"  0x{self.base(Region.REGS):08x}  registers"]
        for region, mem in self.memories.items():
            lines.append(f"  0x{self.base(region):08x}  {region.name.lower():<8} {mem.depth:>6} x {mem.bits:>5} bit "
                         f"({mem.words} words/beat, stride {mem.stride}, {mem.kbit:.0f} kbit)")
        return "\n".join(lines)
