"""Payload adapters of the board top: the link's byte streams to and from the cores' streams.

Each adapter moves one request's (or one reply's) payload: ``start`` (while idle) begins it,
``done`` pulses in the cycle its last item is taken, and outside that both its input ``ready`` and
its output ``valid`` stay low, so it can sit on a byte stream that carries other records
(``hw.board.BoardCore`` grants it the stream only while its command runs).  The byte layouts are
those of ``hw/protocol.py`` (``docs/board.md``): words little-endian, 2 bytes each; code bits
least significant bit first, ``np.packbits(..., bitorder="little")``.

* :class:`WordsFromBytes`: ``E`` request bytes -> the encoder's input words.
* :class:`BytesFromBits`: the encoder's code bits -> ``E`` reply bytes.
* :class:`BitsFromBytes`: ``D`` request bytes -> the decoder's code bits.
* :class:`BytesFromWords`: the decoder's output words -> ``D`` reply bytes.
* :class:`SelfTest`: the stored self-test frames through both cores, every output compared.

Every adapter takes one item per cycle on the side it waits for and adds no cycle of its own
beyond its registers: a byte or a bit per cycle in, a word every two cycles out (and the
reverse), as the byte-wide UART link is the slower side anyway.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from model import golden
from model.golden import IntModel

__all__ = ["WordsFromBytes", "BytesFromBits", "BitsFromBytes", "BytesFromWords", "SelfTest", "SequentialROM",
           "selftest_vectors"]

#: Bytes per word on the link (``hw/protocol.py``: 16-bit words, little-endian).
WORD_BYTES = 2


def _idle(m, start, first: str, *clear):
    """The ``IDLE`` state of an adapter: on ``start`` the registers ``clear`` go to 0 and the
    adapter goes to state ``first``."""
    with m.State("IDLE"):
        with m.If(start):
            m.d.sync += [r.eq(0) for r in clear]
            m.next = first


def _count(m, n, count, done, again: str):
    """One more item done (``n`` counts them): after the ``count``-th, pulse ``done`` and go back
    to ``IDLE``, else go to state ``again``."""
    m.d.sync += n.eq(n + 1)
    with m.If(n == count - 1):
        m.d.comb += done.eq(1)
        m.next = "IDLE"
    with m.Else():
        m.next = again


class WordsFromBytes(wiring.Component):
    """``count`` words of ``signed(width)`` from ``2 * count`` bytes (little-endian; the low
    ``width`` bits of each 16-bit word are kept).  Latency: a word is offered in the cycle after
    its second byte was taken."""

    def __init__(self, width: int, count: int):
        self._width, self._count = int(width), int(count)
        super().__init__({"start": In(1), "done": Out(1), "i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(signed(self._width)))})

    def elaborate(self, platform):
        m = Module()
        n = Signal(range(self._count))
        lo = Signal(8)
        word = Signal(8 * WORD_BYTES)
        m.d.comb += self.o.payload.eq(word[:self._width])
        with m.FSM():
            _idle(m, self.start, "LO", n)
            with m.State("LO"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += lo.eq(self.i.payload)
                    m.next = "HI"
            with m.State("HI"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += word.eq(lo | (self.i.payload << 8))
                    m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    _count(m, n, self._count, self.done, "LO")
        return m


class BytesFromBits(wiring.Component):
    """``count`` code bits into ``ceil(count / 8)`` bytes, the first bit in bit 0 of the first
    byte, the last byte padded with zeros.  Latency: a byte is offered in the cycle after its
    eighth (or the last) bit was taken."""

    def __init__(self, count: int):
        self._count = int(count)
        super().__init__({"start": In(1), "done": Out(1), "i": In(stream.Signature(1)),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        n = Signal(range(self._count + 1))
        pos = Signal(range(8))
        sh = Signal(8)
        m.d.comb += self.o.payload.eq(sh)
        with m.FSM():
            _idle(m, self.start, "BITS", n, pos, sh)
            with m.State("BITS"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [sh.bit_select(pos, 1).eq(self.i.payload), pos.eq(pos + 1), n.eq(n + 1)]
                    with m.If((pos == 7) | (n == self._count - 1)):
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += [sh.eq(0), pos.eq(0)]
                    with m.If(n == self._count):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BITS"
        return m


class BitsFromBytes(wiring.Component):
    """``count`` code bits (sampled at ``start``, 1..``max_count``) from ``ceil(count / 8)``
    bytes, bit 0 of the first byte first; the padding bits of the last byte are dropped.
    Latency: a byte's first bit is offered in the cycle after the byte was taken."""

    def __init__(self, max_count: int):
        self._max = int(max_count)
        super().__init__({"start": In(1), "count": In(range(self._max + 1)), "done": Out(1),
                          "i": In(stream.Signature(8)), "o": Out(stream.Signature(1))})

    def elaborate(self, platform):
        m = Module()
        n = Signal(range(self._max + 1))
        last = Signal(range(self._max + 1))
        pos = Signal(range(8))
        sh = Signal(8)
        m.d.comb += self.o.payload.eq(sh.bit_select(pos, 1))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n.eq(0), last.eq(self.count - 1)]
                    m.next = "BYTE"
            with m.State("BYTE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [sh.eq(self.i.payload), pos.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += [pos.eq(pos + 1), n.eq(n + 1)]
                    with m.If(n == last):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif(pos == 7):
                        m.next = "BYTE"
        return m


class BytesFromWords(wiring.Component):
    """``count`` words of ``signed(width)`` into ``2 * count`` bytes, each word sign-extended to
    16 bits, low byte first.  Latency: a word's low byte is offered in the cycle after the word
    was taken."""

    def __init__(self, width: int, count: int):
        self._width, self._count = int(width), int(count)
        super().__init__({"start": In(1), "done": Out(1), "i": In(stream.Signature(signed(self._width))),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        n = Signal(range(self._count))
        word = Signal(signed(8 * WORD_BYTES))
        with m.FSM():
            _idle(m, self.start, "WORD", n)
            with m.State("WORD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += word.eq(self.i.payload)
                    m.next = "LO"
            with m.State("LO"):
                m.d.comb += [self.o.payload.eq(word[:8]), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    m.next = "HI"
            with m.State("HI"):
                m.d.comb += [self.o.payload.eq(word[8:]), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    _count(m, n, self._count, self.done, "WORD")
        return m


def selftest_vectors(model: IntModel, frames: int, seed: int = 1):
    """``(x, bits, y)``: ``frames`` random integer frames (T, D), their code bits (T, B) from
    ``golden.encode`` (stage 0 first) and ``golden.decode`` of those codes with all stages (T, D)."""
    cfg = model.config
    A = cfg.fixed.act_bits
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << (A - 1)), 1 << (A - 1), (frames, cfg.coefficients), dtype=np.int64)
    codes = golden.encode(model, x)
    y = golden.decode(model, codes)
    return x, np.concatenate(codes, axis=1), y


class SequentialROM(wiring.Component):
    """A ROM read in order: ``data`` is ``init[addr]``, where the address moves on by one in the
    cycle after ``advance`` and goes back to 0 in the cycle after ``restart`` (a synchronous
    read port addressed with the next address, so ``data`` is valid in every cycle).

    ``block``: ask for block RAM (``ram_style``).  On the iCE40 Yosys's cost model builds a small
    ROM (the 1-bit code ROM) out of about 80 LUTs, while block RAM is left over; elsewhere (ECP5:
    LUT ROM is cheap, block RAM may be what limits P) Yosys chooses."""

    def __init__(self, shape, init, block: bool = False):
        self._init = [int(v) for v in init] or [0]
        self._shape, self._block = shape, bool(block)
        super().__init__({"restart": In(1), "advance": In(1), "data": Out(shape)})

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._shape, depth=len(self._init), init=self._init,
                                        attrs={"ram_style": "block"} if self._block else None)
        port = mem.read_port()
        addr = Signal(range(len(self._init) + 1))
        nxt = Signal.like(addr)
        m.d.comb += nxt.eq(addr)
        with m.If(self.restart):
            m.d.comb += nxt.eq(0)
        with m.Elif(self.advance):
            m.d.comb += nxt.eq(addr + 1)
        m.d.comb += [port.addr.eq(nxt), self.data.eq(port.data)]
        m.d.sync += addr.eq(nxt)
        return m


class SelfTest(wiring.Component):
    """The board's self-test: stored frames through the encoder and the expected codes through
    the decoder, every output compared with what ``model.golden`` computed.

    ``vectors`` is ``(x, bits, y)`` as :func:`selftest_vectors` gives it: T frames of D input
    words, their B code bits each, and the decoder's D words for those codes with all N stages.
    ``encoder``/``decoder``: whether that core exists (its streams are then driven; otherwise they
    are left idle and its part of the test is skipped).

    ``start`` (while idle) clears ``flags`` and ``tested`` and runs the test: T frames through the
    encoder (``enc_i`` -> ``enc_o``), then T frames (K = N on ``dec_k``) through the decoder
    (``dec_i`` -> ``dec_o``).  ``flags`` bit 0: some code bit differed, bit 1: some decoder word
    differed.  ``tested`` rises in the cycle after the last compare and stays until the next
    ``start``; ``busy`` is high from the cycle after ``start`` until then.  ``block``: the ROMs ask
    for block RAM (:class:`SequentialROM`)."""

    def __init__(self, model: IntModel, vectors, *, encoder: bool = True, decoder: bool = True,
                 block: bool = False):
        cfg = model.config
        self._A, self._D, self._N = cfg.fixed.act_bits, cfg.coefficients, cfg.network.stages
        self._B = cfg.code_bits_total
        x, bits, y = (np.asarray(v) for v in vectors)
        self._T = x.shape[0]
        self._vectors, self._enc, self._dec, self._block = (x, bits, y), bool(encoder), bool(decoder), bool(block)
        A, N = self._A, self._N
        super().__init__({
            "start": In(1), "busy": Out(1), "tested": Out(1), "flags": Out(2),
            "enc_i": Out(stream.Signature(signed(A))), "enc_o": In(stream.Signature(1)),
            "dec_k": Out(stream.Signature(range(1, N + 1))), "dec_i": Out(stream.Signature(1)),
            "dec_o": In(stream.Signature(signed(A))),
        })

    def elaborate(self, platform):
        m = Module()
        A, D, N, B, T = self._A, self._D, self._N, self._B, self._T
        x, bits, y = self._vectors
        mask = (1 << A) - 1
        x_rom = SequentialROM(A, [int(v) & mask for v in x.reshape(-1)], self._block) if self._enc else None
        c_rom = SequentialROM(1, bits.reshape(-1), self._block)
        y_rom = SequentialROM(A, [int(v) & mask for v in y.reshape(-1)], self._block) if self._dec else None
        for name, rom in (("x_rom", x_rom), ("c_rom", c_rom), ("y_rom", y_rom)):
            if rom is not None:
                m.submodules[name] = rom
        word_cnt = Signal(range(D + 1))
        bit_cnt = Signal(range(B + 2))
        frame = Signal(range(T + 1))
        k_pending = Signal()
        m.d.comb += [self.dec_k.payload.eq(N), self.dec_k.valid.eq(k_pending)]
        with m.If(self.dec_k.valid & self.dec_k.ready):
            m.d.sync += k_pending.eq(0)
        if x_rom is not None:
            m.d.comb += self.enc_i.payload.eq(x_rom.data)
        m.d.comb += self.dec_i.payload.eq(c_rom.data)

        with m.FSM() as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.flags.eq(0), self.tested.eq(0), frame.eq(0), word_cnt.eq(0),
                                 bit_cnt.eq(0)]
                    for rom in (x_rom, c_rom, y_rom):
                        if rom is not None:
                            m.d.comb += rom.restart.eq(1)
                    m.next = "EIN" if self._enc else "DK"

            if self._enc:
                with m.State("EIN"):
                    m.d.comb += self.enc_i.valid.eq(1)
                    with m.If(self.enc_i.ready):
                        m.d.comb += x_rom.advance.eq(1)
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(word_cnt == D - 1):
                            m.d.sync += [word_cnt.eq(0), bit_cnt.eq(0)]
                            m.next = "EOUT"
                with m.State("EOUT"):
                    m.d.comb += self.enc_o.ready.eq(1)
                    with m.If(self.enc_o.valid):
                        m.d.comb += c_rom.advance.eq(1)
                        m.d.sync += bit_cnt.eq(bit_cnt + 1)
                        with m.If(self.enc_o.payload != c_rom.data):
                            m.d.sync += self.flags[0].eq(1)
                        with m.If(bit_cnt == B - 1):
                            m.d.sync += [frame.eq(frame + 1), bit_cnt.eq(0)]
                            with m.If(frame == T - 1):
                                m.next = "DSTART" if self._dec else "DONE"
                            with m.Else():
                                m.next = "EIN"

            if self._dec:
                with m.State("DSTART"):
                    m.d.comb += c_rom.restart.eq(1)
                    m.d.sync += [frame.eq(0), bit_cnt.eq(0), word_cnt.eq(0)]
                    m.next = "DK"
                with m.State("DK"):
                    m.d.sync += [k_pending.eq(1), bit_cnt.eq(0), word_cnt.eq(0)]
                    m.next = "DIN"
                with m.State("DIN"):
                    m.d.comb += self.dec_i.valid.eq(1)
                    with m.If(self.dec_i.ready):
                        m.d.comb += c_rom.advance.eq(1)
                        m.d.sync += bit_cnt.eq(bit_cnt + 1)
                        with m.If(bit_cnt == B - 1):
                            m.next = "DOUT"
                with m.State("DOUT"):
                    m.d.comb += self.dec_o.ready.eq(1)
                    with m.If(self.dec_o.valid):
                        m.d.comb += y_rom.advance.eq(1)
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(self.dec_o.payload.as_unsigned() != y_rom.data):
                            m.d.sync += self.flags[1].eq(1)
                        with m.If(word_cnt == D - 1):
                            m.d.sync += frame.eq(frame + 1)
                            with m.If(frame == T - 1):
                                m.next = "DONE"
                            with m.Else():
                                m.next = "DK"

            with m.State("DONE"):
                m.d.sync += self.tested.eq(1)
                m.next = "IDLE"
        return m

