"""8N1 UART receiver and transmitter with stream interfaces.

(``amaranth-stdio`` on PyPI is an empty placeholder package, so the link to the host is written
here.)  Both blocks count ``divisor`` clock cycles per bit: ``divisor = round(clk_freq / baud)``.
Bytes travel least significant bit first, framed by one start bit (0) and one stop bit (1); the
line idles high.
"""


import operator

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "baud_divisor"]


def baud_divisor(clk_freq: float, baud: int) -> int:
    """Clock cycles per bit; raises ValueError when the rate error would exceed 2 %."""
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"baud {baud} is too fast for a {clk_freq / 1e6:g} MHz clock (need >= 4 cycles per bit)")
    error = abs(clk_freq / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud {baud} at {clk_freq / 1e6:g} MHz is off by {error:.1%} (divisor {divisor})")
    return divisor


class _BitTimed(wiring.Component):
    """A UART block that counts ``divisor`` clock cycles per bit (at least 4)."""

    def __init__(self, divisor: int):
        divisor = operator.index(divisor)
        if divisor < 4:
            raise ValueError(f"divisor must be at least 4 cycles per bit, not {divisor}")
        self._divisor = divisor
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor


class UARTTx(_BitTimed):
    """Transmitter.  ``i``: bytes to send (accepted when the shifter is idle); ``tx``: the line.

    A byte takes ``10 * divisor`` cycles on the line; ``i.ready`` rises again one cycle after the
    stop bit ends.
    """
    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)  # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))
        timer = Signal(range(self._divisor))

        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq((1 << 9) | (self.i.payload << 1)), bits.eq(10),
                             timer.eq(self._divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1),
                         timer.eq(self._divisor - 1)]
        return m


class UARTRx(_BitTimed):
    """Receiver.  ``rx``: the line (synchronized here); ``o``: received bytes.

    The start bit's falling edge starts a timer; each bit is sampled once, in its middle.  A byte
    whose stop bit reads 0 is dropped (``frame_error`` pulses).  ``o`` holds one byte: a byte that
    completes while the previous one has not been taken is dropped (``overrun`` pulses), so the
    consumer must take each byte within about ``10 * divisor`` cycles (put a FIFO behind it if not).
    """
    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self._divisor))
        bits = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(self._divisor // 2 - 1), bits.eq(8)]
                    m.next = "START"
            with m.State("START"):
                # check the start bit in its middle: a glitch shorter than half a bit is ignored
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += timer.eq(self._divisor - 1)
                    with m.If(rx):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq((rx << 7) | (shreg >> 1)), bits.eq(bits - 1),
                                 timer.eq(self._divisor - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    # wait for the line to be high before looking for the next start bit
                    m.next = "IDLE"
        return m
