"""Reading bytes from the board's configuration SPI flash: how a RAM-stored board gets its weights
at power-up without a host.

The image the board reads is a ``W`` request frame (``hw.protocol.flash_image``: start byte, tag,
command, length, the load image of every RAM-stored core, CRC-16) at
``protocol.FLASH_IMAGE_OFFSET``, after the FPGA's own bitstream.  :class:`hw.board.BoardCore` feeds
the bytes read here to the same receiver that checks a ``W`` from the UART, so an image from flash
is checked (length, CRC) exactly like one from the host, and the self-test then runs on it.

The flash commands used are the two every 25-series SPI NOR flash (the iCEBreaker's W25Q128, the
ULX3S's IS25LP128, ...) implements in its power-up mode: *release power-down* and *read data*
(single I/O, 24-bit address, SPI mode 0).
"""

from __future__ import annotations

import operator

from amaranth import Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FlashCommand", "SPIBus", "SPIFlashReader", "ADDRESS_BYTES", "WAKE_SECONDS"]


class FlashCommand(enum.IntEnum, shape=8):
    """The SPI flash commands the reader sends (also what ``sim``'s flash model answers)."""
    RELEASE_POWER_DOWN = 0xAB    #: wakes a flash left in deep power-down; harmless otherwise
    READ = 0x03                  #: then a 24-bit address; data follow for as long as SCK runs


#: Bytes of the address after :attr:`FlashCommand.READ`.
ADDRESS_BYTES = 3
#: The wait after *release power-down* before the next command (tRES1: 3 us on the W25Q and IS25LP
#: parts; with margin).
WAKE_SECONDS = 5e-6

#: A single-I/O SPI bus as the controller sees it.
SPIBus = wiring.Signature({
    "sck": Out(1),
    "cs_n": Out(1, init=1),
    "copi": Out(1),
    "cipo": In(1),
})


class SPIFlashReader(wiring.Component):
    """Reads ``length`` bytes from byte address ``offset`` of a SPI flash once, after reset.

    Sends *release power-down* (``0xAB``), waits ``wake_cycles`` with chip select high, then *read*
    (``0x03``) with the 24-bit ``offset`` and clocks in ``length`` bytes, most significant bit
    first, each handed to ``o``; SCK stops while ``o`` is not ready (a flash keeps its place while
    the clock stands), so the consumer sets the pace.

    Timing: SCK is the system clock divided by 2 (one cycle low, one high; the flash samples COPI
    on the rising edge, the reader samples CIPO at the end of the high half).  At 20.25 MHz that is
    about 10 Mbit/s, well inside the 50 MHz the read command allows: 16 cycles a byte, plus one
    per byte for the hand-off when ``o`` is always ready.

    Ports
    -----
    bus : Out(:data:`SPIBus`)
        To the flash pins.
    o : Out(stream.Signature(8))
        The bytes read, in address order.
    done : Out(1)
        High once all ``length`` bytes have been taken from ``o``; chip select is released then.
    """

    #: Cycles per byte while ``o`` is always ready: 8 SCK periods of 2 cycles, 1 to hand it off.
    CYCLES_PER_BYTE = 17

    def __init__(self, offset: int, length: int, wake_cycles: int = 64):
        self._offset = operator.index(offset)
        self._length = operator.index(length)
        self._wake = operator.index(wake_cycles)
        if not 0 <= self._offset < 1 << (8 * ADDRESS_BYTES):
            raise ValueError(f"a flash offset has {8 * ADDRESS_BYTES} bits, not {self._offset:#x}")
        if self._length < 1 or self._offset + self._length > 1 << (8 * ADDRESS_BYTES):
            raise ValueError(f"cannot read {self._length} bytes at {self._offset:#x}")
        if self._wake < 1:
            raise ValueError("wake_cycles must be at least 1")
        super().__init__({"bus": Out(SPIBus), "o": Out(stream.Signature(8)), "done": Out(1)})

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def length(self) -> int:
        return self._length

    def elaborate(self, platform):
        m = Module()
        cmd_bits = 8 * (1 + ADDRESS_BYTES)
        shift = Signal(cmd_bits)                 # bits to send, the next one on top
        left = Signal(range(cmd_bits + 1))       # bits left in the current command or byte
        rx = Signal(8)
        wait = Signal(range(self._wake + 1))
        count = Signal(range(self._length + 1))  # bytes handed on
        sck = Signal()
        m.d.comb += [self.bus.sck.eq(sck), self.bus.copi.eq(shift[-1])]

        def clock_bit(then):
            """One SCK period: low half, then high half; shift out at its end, sample in."""
            with m.If(~sck):
                m.d.sync += sck.eq(1)
            with m.Else():
                m.d.sync += [sck.eq(0), shift.eq(shift << 1), rx.eq((rx << 1) | self.bus.cipo),
                             left.eq(left - 1)]
                with m.If(left == 1):
                    then()

        with m.FSM(init="WAKE_START"):
            with m.State("WAKE_START"):
                m.d.sync += [shift.eq(FlashCommand.RELEASE_POWER_DOWN << (cmd_bits - 8)), left.eq(8),
                             self.bus.cs_n.eq(0)]
                m.next = "WAKE"
            with m.State("WAKE"):
                def woken():
                    m.d.sync += [self.bus.cs_n.eq(1), wait.eq(self._wake)]
                    m.next = "WAKE_WAIT"
                clock_bit(woken)
            with m.State("WAKE_WAIT"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.d.sync += [shift.eq((FlashCommand.READ << (cmd_bits - 8)) | self._offset),
                                 left.eq(cmd_bits), self.bus.cs_n.eq(0)]
                    m.next = "READ_CMD"
            with m.State("READ_CMD"):
                def addressed():
                    m.d.sync += left.eq(8)
                    m.next = "BYTE"
                clock_bit(addressed)
            with m.State("BYTE"):
                def received():
                    m.next = "HAND_OFF"
                clock_bit(received)
            with m.State("HAND_OFF"):            # SCK stands low until the byte is taken
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(rx)]
                with m.If(self.o.ready):
                    m.d.sync += [count.eq(count + 1), left.eq(8)]
                    with m.If(count == self._length - 1):
                        m.d.sync += self.bus.cs_n.eq(1)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "BYTE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m
