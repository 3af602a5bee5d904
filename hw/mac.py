"""MAC engine for binary weights: P lanes that add or subtract one broadcast activation."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacEngine"]


class MacEngine(wiring.Component):
    """P accumulators ``acc_l += (+a if w[l] else -a)`` and a shadow register bank.

    Computes one group of P output neurons of a binary layer: over ``fan_in`` cycles the
    sequencer presents input ``a_j`` (broadcast to all lanes) and the weight word ``w`` (bit l is
    the weight of lane l, 1 = +1, 0 = -1).  ``first`` restarts the sums (the accumulator is
    loaded, not cleared, so groups follow each other without a bubble); on ``last`` the finished
    sums ``sum_j (+-a_j)`` are copied into ``shadow`` at the clock edge, where the post unit reads
    them while the next group accumulates.  No multipliers: each lane is one adder/subtractor.

    The post unit reads lane 0 only: each cycle with ``shift`` high, shadow lane l takes lane
    l + 1's value (lane P - 1 keeps its own), so lane 0 presents lane k of the group k shifts after
    the load, with no P-to-1 multiplexer (on the iCE40 the shift's LUT packs with its flip-flop,
    where a multiplexer would be LUTs of its own).  A load wins over a shift in the same cycle.

    Latency: ``shadow`` holds the sums from the cycle after the one with ``valid & last``.

    Number formats: ``a`` signed ``act_bits``; ``shadow`` lanes signed ``acc_bits``
    (``cfg.fixed.acc_bits(fan_in)``, wide enough that no sum can overflow).

    Parameters
    ----------
    lanes : int
        P.
    act_bits, acc_bits : int
    """

    def __init__(self, lanes: int, act_bits: int, acc_bits: int):
        self._lanes, self._act_bits, self._acc_bits = int(lanes), int(act_bits), int(acc_bits)
        if self._lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "shift": In(1),
            "a": In(signed(self._act_bits)),
            "w": In(unsigned(self._lanes)),
            "shadow": Out(data.ArrayLayout(signed(self._acc_bits), self._lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        neg = Signal(signed(self._act_bits + 1))
        m.d.comb += neg.eq(-self.a)
        for l in range(self._lanes):
            acc = Signal(signed(self._acc_bits), name=f"acc{l}")
            nxt = Signal(signed(self._acc_bits), name=f"nxt{l}")
            m.d.comb += nxt.eq(Mux(self.first, 0, acc) + Mux(self.w[l], self.a, neg))
            with m.If(self.valid):
                m.d.sync += acc.eq(nxt)
            with m.If(self.valid & self.last):
                m.d.sync += self.shadow[l].eq(nxt)
            with m.Elif(self.shift & (l < self._lanes - 1)):
                m.d.sync += self.shadow[l].eq(self.shadow[min(l + 1, self._lanes - 1)])
        return m
