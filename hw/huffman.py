"""Huffman coder of the stage sections (golden model: ``model/huffman.py``).

:class:`HuffmanEncoder` turns the code bits of one stage section into the section's bytes, exactly
:meth:`model.huffman.Codebook.encode_bits`; :class:`HuffmanDecoder` does the reverse, exactly
:meth:`model.huffman.Codebook.decode_bits`.  Both hold the codebooks of all stages in ROMs and pick
one per section.  They cover the stage sections only: the stream header, packet framing, section
lengths, side information and CRCs (``model/bitstream.py``) are left to the host, which counts the
bytes of each section.

Formats (``model/huffman.py``): symbol = k code bits with the first bit in the LSB; codes MSB
first; bytes filled MSB first; a section ends zero-padded to a whole byte.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from model.huffman import Codebook

__all__ = ["HuffmanEncoder", "HuffmanDecoder"]


def _check_codebooks(codebooks) -> tuple[int, int, int]:
    codebooks = list(codebooks)
    if not codebooks:
        raise TypeError("need at least one codebook")
    for cb in codebooks:
        if not isinstance(cb, Codebook):
            raise TypeError(f"codebooks must be model.huffman.Codebook, not {type(cb).__name__}")
    ks = {cb.symbol_bits for cb in codebooks}
    if len(ks) != 1:
        raise TypeError(f"codebooks have different symbol_bits {sorted(ks)}")
    return ks.pop(), max(cb.max_len for cb in codebooks), len(codebooks)


def _stage_shape(n: int) -> unsigned:
    return unsigned(max(1, bits_for(n - 1)))


class HuffmanEncoder(wiring.Component):
    """Code bits in, section bytes out.

    Parameters
    ----------
    codebooks : list of model.huffman.Codebook
        One per stage (all with the same ``symbol_bits`` k); L = the longest code.

    Ports
    -----
    i : In(stream.Signature(StructLayout(bit=1, last=1, stage=ceil(log2 N))))
        One code bit per transfer, a stage's bits frame after frame.  ``stage`` is read with the
        k-th bit of each symbol.  ``last`` marks the final bit of a section (it is read with the
        k-th bit of a symbol; sections hold whole symbols): after that symbol's code the encoder
        pads the byte with zeros, so the next section starts on a byte boundary.
    o : Out(stream.Signature(8))
        The section's bytes; the first code bit is bit 7.

    Latency and throughput: per symbol, k cycles to collect the bits, 1 cycle of ROM read, and
    one cycle per code bit (stalled while a full byte waits on ``o``); a byte leaves 1 cycle
    after its last bit.  ROM: N * 2**k words of L + ceil(log2(L+1)) bits (code, length).
    """

    def __init__(self, codebooks):
        self._k, self._L, self._N = _check_codebooks(codebooks)
        self._codebooks = list(codebooks)
        layout = data.StructLayout({"bit": 1, "last": 1, "stage": _stage_shape(self._N)})
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(8))})

    @property
    def symbol_bits(self) -> int:
        return self._k

    @property
    def max_code_len(self) -> int:
        return self._L

    def elaborate(self, platform):
        m = Module()
        k, L = self._k, self._L
        lbits = bits_for(L)
        init = []
        for cb in self._codebooks:
            init += [int(c) | (int(ln) << L) for c, ln in zip(cb.codes, cb.lengths)]
        m.submodules.rom = rom = Memory(shape=unsigned(L + lbits), depth=len(init), init=init)
        rd = rom.read_port()

        sym = Signal(k)
        cnt = Signal(range(k))
        last = Signal()
        code = Signal(L)
        left = Signal(range(L + 1))
        acc = Signal(8)
        nacc = Signal(range(9))
        obuf = Signal(8)
        ovalid = Signal()

        m.d.comb += [self.o.payload.eq(obuf), self.o.valid.eq(ovalid)]
        can_shift = Signal()
        m.d.comb += can_shift.eq(nacc != 8)

        # output register: a full byte moves to ``obuf`` when that is free
        with m.If(self.o.ready):
            m.d.sync += ovalid.eq(0)
        with m.If((nacc == 8) & (~ovalid | self.o.ready)):
            m.d.sync += [obuf.eq(acc), ovalid.eq(1), nacc.eq(0)]

        new_sym = Cat(sym[1:], self.i.payload.bit)
        m.d.comb += rd.addr.eq(Cat(new_sym, self.i.payload.stage))

        with m.FSM():
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += sym.eq(new_sym)
                    with m.If(cnt == k - 1):
                        m.d.sync += [cnt.eq(0), last.eq(self.i.payload.last)]
                        m.next = "LOAD"
                    with m.Else():
                        m.d.sync += cnt.eq(cnt + 1)
            with m.State("LOAD"):
                m.d.sync += [code.eq(rd.data[:L]), left.eq(rd.data[L:])]
                m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(can_shift):
                    m.d.sync += [acc.eq(Cat(code.bit_select((left - 1).as_unsigned(), 1), acc[:7])),
                                 nacc.eq(nacc + 1), left.eq(left - 1)]
                    with m.If((left == 1) & last):
                        m.next = "PAD"
                    with m.Elif(left == 1):
                        m.next = "COLLECT"
            with m.State("PAD"):
                with m.If(nacc == 0):
                    m.next = "COLLECT"
                with m.Elif(can_shift):
                    m.d.sync += [acc.eq(Cat(C(0, 1), acc[:7])), nacc.eq(nacc + 1)]
        return m


class HuffmanDecoder(wiring.Component):
    """Section bytes in, code bits out (bit-serial canonical decoding).

    Parameters
    ----------
    codebooks : list of model.huffman.Codebook
        One per stage, as for :class:`HuffmanEncoder`.
    max_symbols : int
        Largest symbol count of one section (width of ``cmd.count``).

    Ports
    -----
    cmd : In(stream.Signature(StructLayout(stage, count)))
        Starts a section: which stage's codebook, how many symbols (frames * B / k).
    i : In(stream.Signature(8))
        The section's bytes, first bit in bit 7.  The padding bits after the last symbol are
        dropped: the next section starts with the next byte.
    o : Out(stream.Signature(StructLayout(bit=1, last=1)))
        The code bits, k per symbol, first bit first; ``last`` on the section's final bit.
    error : Out(1)
        Sticky: a bit pattern of L bits that is no code (only possible with an incomplete
        codebook); the decoder then emits symbol 0's table entry and goes on.

    Tables (bounded by L = max_code_len, not 2**L): per stage and length l a limit and an
    offset (N * L words), and the symbols in canonical order (N * 2**k words of k bits):
    a prefix c of l bits is a code iff c < limit[l], its symbol is symbols[c + offset[l]].

    Latency and throughput: per symbol one cycle per code bit (+1 per byte fetched), 1 cycle of
    ROM read, then k cycles of output (one bit per ``o`` transfer).
    """

    def __init__(self, codebooks, max_symbols: int = 1 << 16):
        self._k, self._L, self._N = _check_codebooks(codebooks)
        self._codebooks = list(codebooks)
        self._max_symbols = int(max_symbols)
        if self._max_symbols < 1:
            raise ValueError("max_symbols must be positive")
        cmd = data.StructLayout({"stage": _stage_shape(self._N),
                                 "count": unsigned(bits_for(self._max_symbols))})
        out = data.StructLayout({"bit": 1, "last": 1})
        super().__init__({"cmd": In(stream.Signature(cmd)), "i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(out)), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        k, L = self._k, self._L
        lim_init, sym_init = [], []
        for cb in self._codebooks:
            limit, offset, order = cb.canonical_tables(L)
            lim_init += [int(li) | ((int(of) % (1 << k)) << (L + 1)) for li, of in zip(limit, offset)]
            sym_init += [int(s) for s in order]
        # index = stage * L + (length - 1): stage-major, padded per stage to a power of two
        lw = 1 << bits_for(L - 1)
        lim_pad = []
        for s in range(self._N):
            lim_pad += lim_init[s * L:(s + 1) * L] + [0] * (lw - L)
        m.submodules.limits = limits = Memory(shape=unsigned(L + 1 + k), depth=len(lim_pad),
                                              init=lim_pad)
        m.submodules.symbols = symbols = Memory(shape=unsigned(k), depth=len(sym_init),
                                                init=sym_init)
        lrd = limits.read_port(domain="comb")
        srd = symbols.read_port()

        stage = Signal.like(self.cmd.payload.stage)
        remaining = Signal.like(self.cmd.payload.count)
        byte = Signal(8)
        nbits = Signal(range(9))
        code = Signal(L)
        ln = Signal(range(L + 1))
        sym = Signal(k)
        outcnt = Signal(range(k))

        bit = byte[7]
        code_new = Signal(L)
        m.d.comb += [code_new.eq(Cat(bit, code[:L - 1])),
                     lrd.addr.eq(Cat(ln[:bits_for(L - 1)], stage)),
                     srd.addr.eq(Cat((code_new + lrd.data[L + 1:])[:k], stage))]
        is_code = Signal()
        m.d.comb += is_code.eq(code_new < lrd.data[:L + 1])

        m.d.comb += [self.o.payload.bit.eq(sym[0]),
                     self.o.payload.last.eq((remaining == 1) & (outcnt == k - 1))]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [stage.eq(self.cmd.payload.stage),
                                 remaining.eq(self.cmd.payload.count), code.eq(0), ln.eq(0)]
                    with m.If(self.cmd.payload.count != 0):
                        m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(nbits == 0):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        m.d.sync += [byte.eq(self.i.payload), nbits.eq(8)]
                with m.Else():
                    m.d.sync += [byte.eq(byte << 1), nbits.eq(nbits - 1)]
                    with m.If(is_code | (ln == L - 1)):
                        with m.If(~is_code):
                            m.d.sync += self.error.eq(1)
                        m.next = "SYMBOL"
                    with m.Else():
                        m.d.sync += [code.eq(code_new), ln.eq(ln + 1)]
            with m.State("SYMBOL"):
                m.d.sync += [sym.eq(srd.data), outcnt.eq(0), code.eq(0), ln.eq(0)]
                m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += [sym.eq(sym >> 1), outcnt.eq(outcnt + 1)]
                    with m.If(outcnt == k - 1):
                        m.d.sync += [outcnt.eq(0), remaining.eq(remaining - 1)]
                        with m.If(remaining == 1):
                            m.d.sync += nbits.eq(0)          # drop the padding bits
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "DECODE"
        return m
