"""UART (8N1) receiver and transmitter, and the UART-to-bus bridge the host talks to.

``divisor`` is clock cycles per bit (``clk_hz / baud``, at least 4).  Simulations use a
tiny divisor (4) so a byte costs 40 cycles; a board build uses the real baud rate.

Byte protocol (all multi-byte fields little-endian; see docs/fpga.md)::

    host -> device                                   device -> host
    'W' (0x57) addr[4] n[2] data[4*n]                'K' (0x4B) after the n-th word is written
    'R' (0x52) addr[4] n[2]                          data[4*n]
    any other byte                                   (ignored)

The command and answer bytes (``CMD_WRITE``, ``CMD_READ``, ``ACK``) are defined in
:mod:`sparsa.hdl.soc.params`, which the host driver imports without Amaranth.
``addr`` is a word address on the SoC bus (:mod:`sparsa.hdl.soc.params`); it increments
after every word.  ``n = 0`` does nothing (a 'W' with n = 0 still answers 'K').  If a
command stops arriving for ``timeout`` cycles (default 1024 byte times) the bridge drops it
and waits for a new command byte, so a host can always resynchronise by pausing.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.bus import DATA_WIDTH, READ_LATENCY, BusSignature
from sparsa.hdl.soc.params import ACK, CMD_READ, CMD_WRITE

__all__ = ["UartRx", "UartTx", "UartBridge", "MIN_DIVISOR", "check_divisor"]

#: Smallest supported clock cycles per bit.
MIN_DIVISOR = 4


def check_divisor(divisor: object) -> int:
    """Return ``divisor`` if it is an integer >= :data:`MIN_DIVISOR`, else raise ValueError."""
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR} (clock cycles per bit), not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver: samples each bit in its middle.

    Attributes
    ----------
    rx : In(1)
        Serial input (idle high); synchronised with two flip-flops.
    data : Out(8)
        The last byte received.
    strobe : Out(1)
        High for one cycle when ``data`` holds a new byte.
    error : Out(1)
        Sticky: a stop bit was low (framing error) or a start bit vanished.
    """

    def __init__(self, divisor: int) -> None:
        self._divisor = check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(8), "strobe": Out(1), "error": Out(1)})

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform) -> Module:
        d = self._divisor
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):            # glitch, not a start bit
                    m.d.sync += self.error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.comb += self.strobe.eq(1)
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.data.eq(shreg)
        return m


class UartTx(wiring.Component):
    """8N1 transmitter with a stream input.

    Attributes
    ----------
    data : In(stream.Signature(8))
        Bytes to send; ``ready`` while idle.
    tx : Out(1)
        Serial output (idle high, registered).
    """

    def __init__(self, divisor: int) -> None:
        self._divisor = check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform) -> Module:
        d = self._divisor
        m = Module()
        timer = Signal(range(d))
        bits = Signal(range(10))
        shreg = Signal(10)
        busy = Signal()
        m.d.comb += self.data.ready.eq(~busy)
        with m.If(~busy):
            with m.If(self.data.valid):
                # start bit, 8 data bits LSB first, stop bit
                frame = Cat(Const(0, 1), self.data.payload, Const(1, 1))
                m.d.sync += [busy.eq(1), self.tx.eq(0), shreg.eq(frame[1:]), bits.eq(9), timer.eq(d - 1)]
        with m.Else():
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(bits != 0):
                m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg[1:]), bits.eq(bits - 1), timer.eq(d - 1)]
            with m.Else():
                m.d.sync += [busy.eq(0), self.tx.eq(1)]
        return m


class UartBridge(wiring.Component):
    """Serial byte protocol (see the module docstring) to SoC bus master.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.
    addr_width : int
        Word-address width of the bus.
    timeout : int, optional
        Cycles of silence after which a half-received command is dropped (default
        1024 byte times, ``10240 * divisor``).

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        Serial lines.
    bus : Out(BusSignature(addr_width))
        The bus it masters.
    error : Out(1)
        Sticky framing error of the receiver.
    """

    def __init__(self, divisor: int, addr_width: int, *, timeout: "int | None" = None) -> None:
        self._divisor = check_divisor(divisor)
        if timeout is None:
            timeout = 10240 * divisor
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 20 * divisor:
            raise ValueError(f"timeout must be an integer >= 2 byte times ({20 * divisor} cycles), not {timeout!r}")
        self._timeout = timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(BusSignature(addr_width)),
            "error": Out(1),
        })

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    @property
    def timeout(self) -> int:
        """Cycles of silence that abort a half-received command."""
        return self._timeout

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.rx = rx = UartRx(self._divisor)
        m.submodules.tx = tx = UartTx(self._divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.error.eq(rx.error)]

        aw = len(self.bus.addr)
        is_write = Signal()
        addr = Signal(32)
        count = Signal(16)
        word = Signal(DATA_WIDTH)
        index = Signal(range(max(4, READ_LATENCY)))   # byte index inside addr / count / word; RWAIT's cycle count
        idle = Signal(range(self._timeout + 1))
        m.d.comb += self.bus.addr.eq(addr[:aw])
        byte = rx.data

        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self._timeout)

        with m.FSM() as fsm:
            with m.State("CMD"):
                with m.If(rx.strobe & ((byte == CMD_WRITE) | (byte == CMD_READ))):
                    m.d.sync += [is_write.eq(byte == CMD_WRITE), index.eq(0)]
                    m.next = "ADDR"
            with m.State("ADDR"):
                with m.If(timed_out):
                    m.next = "CMD"
                with m.Elif(rx.strobe):
                    m.d.sync += [addr.eq(Cat(addr[8:], byte)), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.sync += index.eq(0)
                        m.next = "COUNT"
            with m.State("COUNT"):
                with m.If(timed_out):
                    m.next = "CMD"
                with m.Elif(rx.strobe):
                    m.d.sync += [count.eq(Cat(count[8:], byte)), index.eq(index + 1)]
                    with m.If(index == 1):
                        m.d.sync += index.eq(0)
                        with m.If((Cat(count[8:], byte) == 0) & is_write):
                            m.next = "ACK"
                        with m.Elif(Cat(count[8:], byte) == 0):
                            m.next = "CMD"
                        with m.Elif(is_write):
                            m.next = "WDATA"
                        with m.Else():
                            m.next = "RREQ"
            with m.State("WDATA"):
                with m.If(timed_out):
                    m.next = "CMD"
                with m.Elif(rx.strobe):
                    m.d.sync += [word.eq(Cat(word[8:], byte)), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.comb += [self.bus.w_en.eq(1), self.bus.w_data.eq(Cat(word[8:], byte))]
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), index.eq(0)]
                        with m.If(count == 1):
                            m.next = "ACK"
            with m.State("ACK"):
                m.d.comb += [tx.data.valid.eq(1), tx.data.payload.eq(ACK)]
                with m.If(tx.data.ready):
                    m.next = "CMD"
            with m.State("RREQ"):
                m.d.comb += self.bus.r_en.eq(1)
                m.d.sync += index.eq(0)
                m.next = "RWAIT"
            with m.State("RWAIT"):                 # READ_LATENCY cycles after r_en
                m.d.sync += index.eq(index + 1)
                with m.If(index == READ_LATENCY - 1):
                    m.d.sync += [word.eq(self.bus.r_data), index.eq(0)]
                    m.next = "RSEND"
            with m.State("RSEND"):
                m.d.comb += [tx.data.valid.eq(1), tx.data.payload.eq(word[:8])]
                with m.If(tx.data.ready):
                    m.d.sync += [word.eq(word >> 8), index.eq(index + 1)]
                    with m.If(index == 3):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "CMD"
                        with m.Else():
                            m.next = "RREQ"
        receiving = fsm.ongoing("ADDR") | fsm.ongoing("COUNT") | fsm.ongoing("WDATA")
        with m.If(rx.strobe | ~receiving):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        return m
