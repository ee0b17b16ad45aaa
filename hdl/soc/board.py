"""Board wrappers: clock generation, reset, UART pins and LEDs around :class:`~sparsa.hdl.soc.top.UartSoc`.

* :class:`Ecp5BoardTop` - Lattice ECP5 (amaranth-boards' ULX3S platforms): the board clock
  feeds an ``EHXPLLL`` that makes the system clock; the PLL lock releases a synchronised reset.
* :class:`XilinxBoardTop` - UltraScale+ boards (``fpga/platforms``): differential board clock,
  ``MMCME4_BASE`` + ``BUFG``, the same reset scheme.

PLL/MMCM settings come from small exhaustive solvers (:func:`ecp5_pll`, :func:`mmcm`) that
follow the vendors' documented ranges; tests compare :func:`ecp5_pll` with ``ecppll``.

LEDs (where the board has them): 0 busy, 1 done, 2 UART framing error, 3 UART rx activity,
last one a ~1.5 Hz heartbeat of the system clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from sparsa.hdl.soc.params import SocParams
from sparsa.hdl.soc.top import UartSoc

__all__ = ["PllSettings", "MmcmSettings", "ecp5_pll", "mmcm", "uart_divisor", "Ecp5BoardTop", "XilinxBoardTop"]


@dataclass(frozen=True)
class PllSettings:
    """ECP5 ``EHXPLLL`` dividers: ``f_out = f_in / refclk_div * feedback_div``, ``f_vco = f_out * output_div``."""

    refclk_div: int
    feedback_div: int
    output_div: int
    f_in_mhz: float
    f_out_mhz: float
    f_vco_mhz: float

    @property
    def cphase(self) -> int:
        """``CLKOP_CPHASE`` for a 0 degree output (as ecppll sets it)."""
        return (self.output_div - 1) // 2


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> PllSettings:
    """Best ``EHXPLLL`` settings for ``f_in -> f_out`` (exact if possible, VCO near 600 MHz).

    Ranges (Lattice TN1263, as in Project Trellis' ``ecppll``): input 8-400 MHz, PFD
    3.125-400 MHz, VCO 400-800 MHz, output 3.125-400 MHz; dividers 1-128 (feedback 1-80).

    Raises
    ------
    ValueError
        A frequency is outside the ranges.
    """
    if not 8 <= f_in_mhz <= 400:
        raise ValueError(f"ECP5 PLL input must be 8..400 MHz, not {f_in_mhz!r}")
    if not 3.125 <= f_out_mhz <= 400:
        raise ValueError(f"ECP5 PLL output must be 3.125..400 MHz, not {f_out_mhz!r}")
    best = None
    for ref in range(1, 129):
        pfd = f_in_mhz / ref
        if not 3.125 <= pfd <= 400:
            continue
        for fb in range(1, 81):
            fout = pfd * fb
            # output dividers that keep the VCO in range; prefer the VCO closest to 600 MHz
            lo, hi = max(1, math.ceil(400 / fout)), min(128, math.floor(800 / fout))
            for op in range(lo, hi + 1):
                vco = fout * op
                key = (round(abs(fout - f_out_mhz), 9), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, PllSettings(ref, fb, op, f_in_mhz, fout, vco))
    if best is None:  # pragma: no cover - every in-range request has a solution
        raise ValueError(f"no ECP5 PLL setting for {f_in_mhz} -> {f_out_mhz} MHz")
    return best[1]


@dataclass(frozen=True)
class MmcmSettings:
    """UltraScale+ ``MMCME4_BASE``: ``f_vco = f_in * mult / divclk``, ``f_out = f_vco / out_div``."""

    divclk: int
    mult: int
    out_div: int
    f_in_mhz: float
    f_out_mhz: float
    f_vco_mhz: float


def mmcm(f_in_mhz: float, f_out_mhz: float) -> MmcmSettings:
    """Best integer ``MMCME4_BASE`` settings (VCO 800-1600 MHz, PFD 10-500 MHz; UltraScale+ -2 grade).

    Raises
    ------
    ValueError
        A frequency is outside what the MMCM can make.
    """
    if not 10 <= f_in_mhz <= 800:
        raise ValueError(f"MMCM input must be 10..800 MHz, not {f_in_mhz!r}")
    if not 6.25 <= f_out_mhz <= 775:
        raise ValueError(f"MMCM output must be 6.25..775 MHz, not {f_out_mhz!r}")
    best = None
    for d in range(1, 107):
        pfd = f_in_mhz / d
        if not 10 <= pfd <= 500:
            continue
        for mult in range(2, 129):
            vco = pfd * mult
            if not 800 <= vco <= 1600:
                continue
            out = max(1, min(128, round(vco / f_out_mhz)))
            fout = vco / out
            key = (round(abs(fout - f_out_mhz), 9), d, abs(vco - 1200))
            if best is None or key < best[0]:
                best = (key, MmcmSettings(d, mult, out, f_in_mhz, fout, vco))
    if best is None:  # pragma: no cover
        raise ValueError(f"no MMCM setting for {f_in_mhz} -> {f_out_mhz} MHz")
    return best[1]


def uart_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per UART bit; refuses a baud rate more than 2 % off what the clock can make.

    Raises
    ------
    ValueError
        ``baud`` is not positive, needs a divisor below 4, or cannot be made within 2 %.
    """
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ValueError(f"baud must be a positive integer, not {baud!r}")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock (needs >= 4 cycles per bit)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud {baud} is {100 * error:.1f} % off with a {clk_hz / 1e6:g} MHz clock (divisor {divisor})")
    return divisor


def _heartbeat(m: Module, clk_hz: float) -> Signal:
    bits = max(1, int(clk_hz).bit_length() - 1)     # ~0.75..1.5 Hz
    counter = Signal(bits)
    m.d.sync += counter.eq(counter + 1)
    return counter[-1]


def _leds(platform, m: Module, status, heartbeat) -> None:
    from amaranth.build import ResourceError

    leds = []
    for i in range(8):
        try:
            port = platform.request("led", i, dir="-")
        except ResourceError:   # the board has fewer LEDs
            break
        buf = io.Buffer("o", port)
        m.submodules[f"led_{i}"] = buf
        leds.append(buf)
    if not leds:                # RGB LEDs only (ECPIX-5): their green parts show the status
        for i in range(8):
            try:
                rgb = platform.request("rgb_led", i, dir="-")
            except ResourceError:
                break
            buf = io.Buffer("o", rgb.g)
            m.submodules[f"led_{i}"] = buf
            leds.append(buf)
    for i, led in enumerate(leds[:4]):
        m.d.comb += led.o.eq(status[i])
    if len(leds) > 4:
        m.d.comb += leds[-1].o.eq(heartbeat)


def _uart(platform, m: Module, soc: UartSoc) -> None:
    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
    m.d.comb += [soc.uart_rx.eq(rx.i), tx.o.eq(soc.uart_tx)]


class Ecp5BoardTop(Elaboratable):
    """UART SoC on an ECP5 board (amaranth-boards platform with ``uart`` and a default clock).

    Parameters
    ----------
    params : SocParams
    clk_mhz : float
        System clock the PLL makes (the config's ``clock_mhz``).
    baud : int
        UART baud rate.
    """

    def __init__(self, params: SocParams, clk_mhz: float, baud: int) -> None:
        self.params = params
        self.clk_mhz = float(clk_mhz)
        self.baud = baud
        self.divisor = uart_divisor(self.clk_mhz * 1e6, baud)
        self.soc = UartSoc(params, self.divisor)
        self.pll: "PllSettings | None" = None

    def elaborate(self, platform) -> Module:
        m = Module()
        clk_in_hz = platform.default_clk_frequency
        self.pll = pll = ecp5_pll(clk_in_hz / 1e6, self.clk_mhz)
        clk_res = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_res)
        clk_sys = Signal()
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{clk_in_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=pll.refclk_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll.output_div,
            p_CLKOP_CPHASE=pll.cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll.feedback_div,
            i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, o_CLKOP=clk_sys, i_CLKFB=clk_sys,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
            i_ENCLKOP=0, o_LOCK=locked,
        )
        m.domains.sync = ClockDomain("sync")
        # nextpnr derives the PLL output's constraint from the board clock's (FREQUENCY_PIN_*)
        m.d.comb += ClockSignal("sync").eq(clk_sys)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        m.submodules.soc = soc = self.soc
        _uart(platform, m, soc)
        _leds(platform, m, soc.status, _heartbeat(m, pll.f_out_mhz * 1e6))
        return m


class XilinxBoardTop(Elaboratable):
    """UART SoC on an UltraScale+ board platform of ``fpga/platforms``.

    Parameters
    ----------
    params : SocParams
    clk_mhz : float
        System clock the MMCM makes.
    baud : int
        UART baud rate.
    clock : str
        Name of the board clock resource (index 0), e.g. ``"sysclk"``.
    """

    def __init__(self, params: SocParams, clk_mhz: float, baud: int, clock: str) -> None:
        self.params = params
        self.clk_mhz = float(clk_mhz)
        self.baud = baud
        self.clock = clock
        self.divisor = uart_divisor(self.clk_mhz * 1e6, baud)
        self.soc = UartSoc(params, self.divisor)
        self.mmcm: "MmcmSettings | None" = None

    def elaborate(self, platform) -> Module:
        m = Module()
        clk_res = platform.request(self.clock, 0, dir="-")
        clk_in_hz = platform.lookup(self.clock, 0).clock.frequency
        self.mmcm = mm = mmcm(clk_in_hz / 1e6, self.clk_mhz)
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_res)
        clk_mmcm, clk_fb, locked, clk_sys = Signal(), Signal(), Signal(), Signal()
        m.submodules.mmcm = Instance(
            "MMCME4_BASE",
            p_CLKIN1_PERIOD=round(1000 / (clk_in_hz / 1e6), 3), p_DIVCLK_DIVIDE=mm.divclk,
            p_CLKFBOUT_MULT_F=float(mm.mult), p_CLKOUT0_DIVIDE_F=float(mm.out_div),
            i_CLKIN1=clk_buf.i, i_CLKFBIN=clk_fb, o_CLKFBOUT=clk_fb, o_CLKOUT0=clk_mmcm,
            i_RST=0, i_PWRDWN=0, o_LOCKED=locked,
        )
        m.submodules.bufg = Instance("BUFG", i_I=clk_mmcm, o_O=clk_sys)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk_sys)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        m.submodules.soc = soc = self.soc
        _uart(platform, m, soc)
        _leds(platform, m, soc.status, _heartbeat(m, mm.f_out_mhz * 1e6))
        return m
