"""The boards ``sparsa build`` knows: device, flow, clock, UART and real resource counts.

Resource counts are the vendors' data-sheet numbers (Lattice FPGA-DS-02012 ECP5 family
table; Xilinx DS962 / UltraScale+ product tables): hard multipliers or DSP slices, LUTs,
flip-flops, block RAMs (ECP5 EBR = DP16KD, 18 kbit; Xilinx BRAM36 = 36 kbit), UltraRAMs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sparsa.errors import ConfigError

__all__ = ["Board", "BOARDS", "get_board", "board_names"]


@dataclass(frozen=True)
class Board:
    """One board.

    Attributes
    ----------
    name : str
        What ``--board`` takes.
    flow : str
        ``"ecp5"`` (open toolchain: Yosys + nextpnr + ecppack) or ``"vivado"`` (export only).
    device, package, speed : str
        The FPGA.
    dsp, lut, ff, bram, uram : int
        Resources: DSP slices / 18x18 multipliers, LUTs (LUT4 on ECP5, LUT6 on Xilinx),
        flip-flops, block RAMs (``bram_kbit`` each), UltraRAMs (288 kbit each).
    dsp_cell, bram_cell : str
        Their cell names in Yosys / nextpnr reports.
    clock_mhz : float
        The board oscillator the clock generator starts from.
    baud : int
        Default UART baud rate (the board's USB-UART bridge must support it).
    """

    name: str
    description: str
    flow: str
    device: str
    package: str
    speed: str
    dsp: int
    lut: int
    ff: int
    bram: int
    bram_kbit: int
    uram: int
    dsp_cell: str
    bram_cell: str
    clock_mhz: float
    baud: int
    platform_factory: Callable[[], object] = field(repr=False, compare=False, default=None)
    clock_resource: str = "clk25"

    @property
    def bram_total_kbit(self) -> int:
        """Block RAM capacity in kbit."""
        return self.bram * self.bram_kbit

    @property
    def uram_total_kbit(self) -> int:
        """UltraRAM capacity in kbit."""
        return self.uram * 288

    def platform(self):
        """A fresh Amaranth platform instance for the board."""
        return self.platform_factory()


def _ulx3s(variant: str):
    def make():
        from amaranth_boards import ulx3s

        return getattr(ulx3s, f"ULX3S_{variant}_Platform")()
    return make


def _ecpix5(variant: str):
    def make():
        from amaranth_boards import ecpix5

        return getattr(ecpix5, f"ECPIX5{variant}Platform")()
    return make


def _u280():
    from sparsa.fpga.platforms import AlveoU280Platform

    return AlveoU280Platform()


def _vcu1525():
    from sparsa.fpga.platforms import VCU1525Platform

    return VCU1525Platform()


_ECP5 = dict(flow="ecp5", package="CABGA381", speed="6", dsp_cell="MULT18X18D", bram_cell="DP16KD", bram_kbit=18,
             uram=0, clock_mhz=25.0, baud=1_000_000, clock_resource="clk25")
_XILINX = dict(flow="vivado", speed="2L-e", dsp_cell="DSP48E2", bram_cell="RAMB36E2", bram_kbit=36,
               baud=115_200)

#: Known boards by name.
BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("ulx3s-12f", "Radiona ULX3S with LFE5U-12F", device="LFE5U-12F", dsp=28, lut=12288, ff=12288, bram=32,
          platform_factory=_ulx3s("12F"), **_ECP5),
    Board("ulx3s-25f", "Radiona ULX3S with LFE5U-25F", device="LFE5U-25F", dsp=28, lut=24288, ff=24288, bram=56,
          platform_factory=_ulx3s("25F"), **_ECP5),
    Board("ulx3s-45f", "Radiona ULX3S with LFE5U-45F", device="LFE5U-45F", dsp=72, lut=43848, ff=43848, bram=108,
          platform_factory=_ulx3s("45F"), **_ECP5),
    Board("ulx3s-85f", "Radiona ULX3S with LFE5U-85F", device="LFE5U-85F", dsp=156, lut=83640, ff=83640, bram=208,
          platform_factory=_ulx3s("85F"), **_ECP5),
    # LambdaConcept ECPIX-5: the ECP5-5G parts in speed grade 8 (the ULX3S has grade 6), a 100 MHz
    # oscillator, an FT2232 USB-UART and four RGB LEDs.
    Board("ecpix5-45f", "LambdaConcept ECPIX-5 with LFE5UM5G-45F", device="LFE5UM5G-45F", dsp=72, lut=43848,
          ff=43848, bram=108, platform_factory=_ecpix5("45"),
          **(_ECP5 | dict(package="CABGA554", speed="8", clock_mhz=100.0, clock_resource="clk100"))),
    Board("ecpix5-85f", "LambdaConcept ECPIX-5 with LFE5UM5G-85F", device="LFE5UM5G-85F", dsp=156, lut=83640,
          ff=83640, bram=208, platform_factory=_ecpix5("85"),
          **(_ECP5 | dict(package="CABGA554", speed="8", clock_mhz=100.0, clock_resource="clk100"))),
    Board("u280", "Xilinx Alveo U280 (HBM2)", device="xcu280", package="fsvh2892", dsp=9024, lut=1303680,
          ff=2607360, bram=2016, uram=960, clock_mhz=100.0, platform_factory=_u280, clock_resource="sysclk",
          **_XILINX),
    Board("vcu1525", "Xilinx VCU1525 (VU9P)", device="xcvu9p", package="fsgd2104", dsp=6840, lut=1182240,
          ff=2364480, bram=2160, uram=960, clock_mhz=300.0, platform_factory=_vcu1525, clock_resource="clk300",
          **_XILINX),
)}


def board_names() -> list[str]:
    """Names ``--board`` accepts."""
    return list(BOARDS)


def get_board(name: str) -> Board:
    """The board called ``name``.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known boards).
    """
    if not isinstance(name, str) or name.lower() not in BOARDS:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[name.lower()]
