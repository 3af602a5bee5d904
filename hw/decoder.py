"""Decoder core: code bits of the first K stages in, integer frames out (``model.golden.decode``)."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .core import CascadeCore

__all__ = ["DecoderCore"]


class DecoderCore(CascadeCore):
    """Bit-exact hardware form of ``model.golden.decode``.

    Runs, per frame, the decoders of stages 1..K and the saturating sum
    ``y = sat_A(... sat_A(y_1 + y_2) ...)`` on a MAC engine of P lanes and one shared post unit.

    Interface
    ---------
    k : In(stream.Signature(range(1, N+1)))
        One transfer per frame: how many stages K the frame carries.
    i : In(stream.Signature(1))
        Then ``sum(code_bits[:K])`` code bits, stage 0 bit 0 first; 1 means +1.
        Double-buffered: the next frame loads while one computes.
    o : Out(stream.Signature(signed(A)))
        D = ``cfg.coefficients`` words per frame, index 0 first (``act_frac`` fraction bits).

    Latency and throughput: ``cycles_per_frame`` (for K = N; ``schedule.cycles_per_frame(K)`` otherwise) cycles
    between frame starts in steady state, stream I/O overlapped.

    Parameters: as :class:`~hw.core.CascadeCore` (``model``, ``lanes``, ``storage``).
    """

    SIDE = "decoder"

    @classmethod
    def ports(cls, cfg) -> dict:
        return {"k": In(stream.Signature(range(1, cfg.network.stages + 1))),
                "i": In(stream.Signature(1)),
                "o": Out(stream.Signature(signed(cfg.fixed.act_bits)))}
