"""SoC tops: the core behind a UART bridge (boards, simulation) or an AXI4-Lite port (Xilinx shells).

Both are clock-domain agnostic (``sync``); board wrappers in :mod:`sparsa.hdl.soc.board`
add the clock generator, reset synchroniser and pins.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.axi import AxiLiteBridge, axi_lite_signature
from sparsa.hdl.soc.core import SocCore
from sparsa.hdl.soc.params import DmaConfig, SocParams
from sparsa.hdl.soc.uart import UartBridge, check_divisor

__all__ = ["UartSoc", "AxiSoc", "STATUS_BITS"]

#: Width of the ``status`` output of :class:`UartSoc` (LEDs): busy, done, UART error, rx activity.
STATUS_BITS = 4


class UartSoc(wiring.Component):
    """The SoC core driven over a UART.

    Parameters
    ----------
    params : SocParams
        Memories and address map.
    divisor : int
        Clock cycles per UART bit (``clk_hz // baud``).
    timeout : int, optional
        Bridge command timeout in cycles (default: 1024 byte times).

    Attributes
    ----------
    uart_rx : In(1)
        Serial data from the host.
    uart_tx : Out(1)
        Serial data to the host.
    status : Out(4)
        ``busy, done, uart framing error, rx line low`` (for LEDs).
    """

    def __init__(self, params: SocParams, divisor: int, *, timeout: "int | None" = None) -> None:
        if not isinstance(params, SocParams):
            raise TypeError(f"params must be a SocParams, not {params!r}")
        self._params = params
        self._divisor = check_divisor(divisor)
        self._core = SocCore(params)
        self._bridge = UartBridge(divisor, params.addr_width, timeout=timeout)
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "status": Out(STATUS_BITS),
        })

    @property
    def params(self) -> SocParams:
        """Memories and address map."""
        return self._params

    @property
    def divisor(self) -> int:
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def core(self) -> SocCore:
        """The SoC core (ports for tests)."""
        return self._core

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.bridge = bridge = self._bridge
        wiring.connect(m, bridge.bus, core.bus)
        m.d.comb += [
            bridge.rx.eq(self.uart_rx),
            self.uart_tx.eq(bridge.tx),
            self.status.eq(Cat(core.busy, core.done, bridge.error, ~self.uart_rx)),
        ]
        return m


class AxiSoc(wiring.Component):
    """The SoC core behind an AXI4-Lite slave port (Vitis RTL kernel style), optionally with
    an AXI4 master to device memory.

    Parameters
    ----------
    params : SocParams
        Memories and address map.
    dma : DmaConfig, optional
        Add the AXI4 master (``m_axi_gmem``) and the RUN_DMA sequencer
        (:class:`~sparsa.hdl.soc.dma.AxiDma`, docs/fpga.md).

    Attributes
    ----------
    s_axi_control : In(AXI4-Lite)
        Registers and memory windows (byte address = word address * 4).
    m_axi_gmem : Out(axi4_signature(64, dma.data_width))
        Only with ``dma``: device memory (HBM / DDR).
    irq : Out(1)
        High while the run is done (level; the shell wrapper calls it ``interrupt``); with
        ``dma``, once the whole RUN_DMA sequence is over (done and stored, or failed).
    """

    def __init__(self, params: SocParams, *, dma: "DmaConfig | None" = None) -> None:
        if not isinstance(params, SocParams):
            raise TypeError(f"params must be a SocParams, not {params!r}")
        self._params = params
        self._core = SocCore(params, dma=dma)
        members = {"s_axi_control": In(axi_lite_signature(params.byte_addr_width))}
        if dma is not None:
            members["m_axi_gmem"] = Out(self._core.m_axi.signature)
        members["irq"] = Out(1)
        super().__init__(members)

    @property
    def params(self) -> SocParams:
        """Memories and address map."""
        return self._params

    @property
    def dma(self) -> "DmaConfig | None":
        """The AXI4 master's shape (None: no m_axi port)."""
        return self._core.dma

    @property
    def core(self) -> SocCore:
        """The SoC core."""
        return self._core

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.axi = axi = AxiLiteBridge(self._params.addr_width)
        wiring.connect(m, wiring.flipped(self.s_axi_control), axi.axi)
        wiring.connect(m, axi.bus, core.bus)
        if core.dma is None:
            m.d.comb += self.irq.eq(core.done)
        else:
            wiring.connect(m, wiring.flipped(self.m_axi_gmem), core.m_axi)
            m.d.comb += self.irq.eq((core.done | core.dma_error) & ~core.dma_busy)
        return m
