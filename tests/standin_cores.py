"""Stand-ins with the interfaces of ``hw.encoder.EncoderCore`` and ``hw.decoder.DecoderCore``
(tests only: they compute something trivial, with a numpy reference, so that the board logic can be
checked before or independently of the real cores).

Encoder: code bit j of a frame is ``x[j % D] >= 0``.  Decoder: word i is ``+i`` if code bit
``i % B_K`` is 1 else ``-i``, then ``+ k`` (so K matters).
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from hw.decoder import DecoderCore
from hw.encoder import EncoderCore


def standin_encode(cfg, x):
    D, B = cfg.coefficients, cfg.code_bits_total
    x = np.asarray(x)
    return (x[:, np.arange(B) % D] >= 0).astype(np.int64)


def standin_decode(cfg, bits, k):
    D = cfg.coefficients
    nb = cfg.network.code_offsets[k]
    bits = np.asarray(bits)[:, :nb]
    i = np.arange(D)
    return np.where(bits[:, i % nb] == 1, i, -i) + k


class StandinEncoder(wiring.Component):
    def __init__(self, model, lanes):
        cfg = model.config
        self._cfg = cfg
        super().__init__(EncoderCore.ports(cfg))     # the real core's ports, from the one definition

    @property
    def cycles_per_frame(self):
        return self._cfg.coefficients + self._cfg.code_bits_total

    def elaborate(self, platform):
        m = Module()
        D, B = self._cfg.coefficients, self._cfg.code_bits_total
        m.submodules.buf = buf = Memory(shape=1, depth=D, init=[])
        wp, rp = buf.write_port(), buf.read_port(domain="comb")
        cnt = Signal(range(max(D, B) + 1))
        with m.FSM():
            with m.State("IN"):
                m.d.comb += [self.i.ready.eq(1), wp.addr.eq(cnt), wp.data.eq(self.i.payload >= 0),
                             wp.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == D - 1):
                        m.d.sync += cnt.eq(0)
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [rp.addr.eq(cnt % D), self.o.payload.eq(rp.data), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == B - 1):
                        m.d.sync += cnt.eq(0)
                        m.next = "IN"
        return m


class StandinDecoder(wiring.Component):
    def __init__(self, model, lanes):
        cfg = model.config
        self._cfg = cfg
        super().__init__(DecoderCore.ports(cfg))

    @property
    def cycles_per_frame(self):
        return self._cfg.coefficients + self._cfg.code_bits_total

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        D, B, N = cfg.coefficients, cfg.code_bits_total, cfg.network.stages
        m.submodules.buf = buf = Memory(shape=1, depth=B, init=[])
        wp, rp = buf.write_port(), buf.read_port(domain="comb")
        k = Signal(range(N + 1))
        nb = Signal(range(B + 1))
        cnt = Signal(range(max(D, B) + 1))
        src = Signal(range(B + 1))
        prefix = cfg.network.code_offsets
        with m.FSM():
            with m.State("K"):
                m.d.comb += self.k.ready.eq(1)
                with m.If(self.k.valid):
                    m.d.sync += k.eq(self.k.payload)
                    with m.Switch(self.k.payload):
                        for j in range(1, N + 1):
                            with m.Case(j):
                                m.d.sync += nb.eq(prefix[j])
                    m.next = "IN"
            with m.State("IN"):
                m.d.comb += [self.i.ready.eq(1), wp.addr.eq(cnt), wp.data.eq(self.i.payload),
                             wp.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == nb - 1):
                        m.d.sync += [cnt.eq(0), src.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                i = Signal(signed(16))
                m.d.comb += [i.eq(cnt), rp.addr.eq(src)]
                m.d.comb += [self.o.payload.eq(Mux(rp.data, i, -i) + k), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    m.d.sync += [cnt.eq(cnt + 1), src.eq(Mux(src == nb - 1, 0, src + 1))]
                    with m.If(cnt == D - 1):
                        m.d.sync += cnt.eq(0)
                        m.next = "K"
        return m
