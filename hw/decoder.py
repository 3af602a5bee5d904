"""Decoder core: code bits of the first K stages in, integer frames out (``model.golden.decode``)."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from model.golden import IntModel

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

    Parameters
    ----------
    model : IntModel
    lanes : int
        P, 1 <= P <= smallest fan-in of the schedule.
    storage : str
        ``"rom"`` (weights in the bitstream), ``"ram"`` or ``"spram"`` (loaded at run time
        through the ``load`` stream; see :class:`~hw.core.CascadeCore`).
    """

    def __init__(self, model: IntModel, lanes: int, storage: str = "rom"):
        if not isinstance(model, IntModel):
            raise TypeError(f"model must be an IntModel, not {type(model).__name__}")
        cfg = model.config
        super().__init__(model, lanes, "decoder", {
            "k": In(stream.Signature(range(1, cfg.network.stages + 1))),
            "i": In(stream.Signature(1)),
            "o": Out(stream.Signature(signed(cfg.fixed.act_bits))),
        }, storage)

