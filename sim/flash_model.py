"""A behavioural SPI NOR flash for the testbenches (written for them; not a model of any part's
timing): the two commands ``hw.flash.SPIFlashReader`` sends (``hw.flash.FlashCommand``), SPI mode
0, a 24-bit address space of 0xFF bytes with ``data`` at ``offset``.

Call :meth:`SPIFlashModel.step` once per clock cycle with the pins as they are in the middle of
the cycle; it returns the level to drive on CIPO.  Like a real part after ``0xB9`` (deep
power-down), a model made with ``asleep=True`` ignores every command but *release power-down*.
"""

from __future__ import annotations

from hw.flash import ADDRESS_BYTES, FlashCommand

__all__ = ["SPIFlashModel"]


class SPIFlashModel:
    def __init__(self, data: bytes, offset: int, asleep: bool = False):
        self.data, self.offset = bytes(data), int(offset)
        self.asleep = asleep
        self.commands = []          # (command byte, address or None) in the order received
        self.bytes_read = 0
        self._sck = 0
        self._cipo = 1
        self._end()

    def _end(self):
        self._sr, self._nin, self._reading, self._out = 0, 0, False, 0

    def byte(self, addr: int) -> int:
        i = addr - self.offset
        return self.data[i] if 0 <= i < len(self.data) else 0xFF

    def step(self, cs_n: int, sck: int, copi: int) -> int:
        rising, falling = sck and not self._sck, self._sck and not sck
        self._sck = sck
        if cs_n:
            self._end()
            return self._cipo
        if rising and not self._reading:
            self._sr = (self._sr << 1) | (copi & 1)
            self._nin += 1
            cmd = (self._sr >> (self._nin - 8)) & 0xFF if self._nin >= 8 else None
            if self._nin == 8:
                if cmd == FlashCommand.RELEASE_POWER_DOWN:
                    self.asleep = False
                    self.commands.append((cmd, None))
            elif self._nin == 8 * (1 + ADDRESS_BYTES) and not self.asleep:
                cmd = self._sr >> (8 * ADDRESS_BYTES)
                if cmd == FlashCommand.READ:
                    self._addr = self._sr & ((1 << (8 * ADDRESS_BYTES)) - 1)
                    self._reading = True
                    self.commands.append((cmd, self._addr))
        elif falling and self._reading:
            addr = self._addr + self._out // 8
            self._cipo = (self.byte(addr) >> (7 - self._out % 8)) & 1
            if self._out % 8 == 7:
                self.bytes_read += 1
            self._out += 1
        return self._cipo
