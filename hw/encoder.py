"""Encoder core: integer frames in, code bits of all N stages out (``model.golden.encode``)."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .core import CascadeCore

__all__ = ["EncoderCore"]


class EncoderCore(CascadeCore):
    """Bit-exact hardware form of ``model.golden.encode``.

    Runs, per frame, every stage's encoder and the decoders of stages 1..N-1 with the residual
    update ``r <- sat_A(r - y)`` (layer schedule ``cfg.layer_shapes(stage)``), on a MAC engine of
    P lanes and one shared post unit (see ``hw/core.py``, ``hw/schedule.py``).

    Interface
    ---------
    i : In(stream.Signature(signed(A)))
        D = ``cfg.coefficients`` transfers per frame, coefficient 0 first; A = ``act_bits``,
        ``act_frac`` fraction bits.  Double-buffered: the next frame loads while one computes.
    o : Out(stream.Signature(1))
        ``sum(cfg.network.code_bits)`` transfers per frame, stage 0 bit 0 first; 1 means +1.
        Through a FIFO of two frames; a frame starts only when its output fits.

    Latency and throughput: ``cycles_per_frame`` cycles between frame starts in steady state
    (stream I/O overlapped), close to ``ideal_cycles_per_frame`` = MACs / P.

    Parameters: as :class:`~hw.core.CascadeCore` (``model``, ``lanes``, ``storage``).
    """

    SIDE = "encoder"

    @classmethod
    def ports(cls, cfg) -> dict:
        A = cfg.fixed.act_bits
        return {"i": In(stream.Signature(signed(A))), "o": Out(stream.Signature(1))}
