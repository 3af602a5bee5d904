"""Post unit: scale, bias, round, activation and residual of one output neuron per cycle."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .schedule import MODE_CODE, MODE_IN, MODE_OUT, MODE_OUT_ADD, MODE_OUT_SUB, MODE_RES

__all__ = ["PostUnit"]


def _clamp(v, lo, hi):
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


class PostUnit(wiring.Component):
    """The per-output part of ``model.golden.layer_forward``.

    Computes, for one neuron per cycle::

        p = acc * mult + bias
        z = (p + 2**(shift-1)) >> shift          # round half up (z = p when shift == 0)
        MODE_IN:      value = clamp(z, -2**F, 2**F)                (hardtanh)
        MODE_RES:     value = sat_A(res + clamp(z, -2**F, 2**F))
        MODE_CODE:    bit = p >= 0, value = +1 if bit else -1      (sign; +-1 for the next decoder)
        MODE_OUT:     value = sat_A(z)
        MODE_OUT_ADD: value = sat_A(res + sat_A(z))                (decoder running sum)
        MODE_OUT_SUB: value = sat_A(res - sat_A(z))                (encoder residual r - y)

    Number formats (``model/golden.py``): ``acc`` signed ``acc_bits``, ``mult`` signed
    ``scale_bits``, ``bias`` signed ``bias_bits`` (aligned to ``acc * mult``), ``res`` and ``value``
    signed A = ``act_bits`` with F = ``act_frac`` fraction bits.  One multiplier.

    Latency: inputs are registered with the product ``acc * mult`` at the clock edge when ``valid``
    is sampled; ``o_valid``, ``value`` and ``bit`` are combinational from those registers, i.e.
    valid one cycle after the inputs (the caller's memory write port adds the final register).

    Parameters
    ----------
    cfg : CodecConfig
    acc_bits, bias_bits : int
        Widths of the accumulator and of the bias.
    max_shift : int
        Largest layer shift the unit must support.
    """

    def __init__(self, cfg, acc_bits: int, bias_bits: int, max_shift: int):
        fx = cfg.fixed
        self._A, self._F = fx.act_bits, fx.act_frac
        self._acc_bits, self._bias_bits, self._scale_bits = int(acc_bits), int(bias_bits), fx.scale_bits
        self._max_shift = int(max_shift)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(self._acc_bits)),
            "mult": In(signed(self._scale_bits)),
            "bias": In(signed(self._bias_bits)),
            "res": In(signed(self._A)),
            "shift": In(range(self._max_shift + 1)),
            "mode": In(range(6)),
            "o_valid": Out(1),
            "value": Out(signed(self._A)),
            "bit": Out(1),
        })

    @property
    def product_bits(self) -> int:
        return max(self._acc_bits + self._scale_bits, self._bias_bits) + 1

    def elaborate(self, platform):
        m = Module()
        A, F = self._A, self._F
        pw = self.product_bits
        lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1

        prod = Signal(signed(self._acc_bits + self._scale_bits))
        bias = Signal.like(self.bias)
        res = Signal.like(self.res)
        shift = Signal.like(self.shift)
        mode = Signal.like(self.mode)
        m.d.sync += [
            self.o_valid.eq(self.valid),
            prod.eq(self.acc * self.mult),
            bias.eq(self.bias), res.eq(self.res), shift.eq(self.shift), mode.eq(self.mode),
        ]

        p = Signal(signed(pw))
        half = Signal(unsigned(self._max_shift + 1))
        z = Signal(signed(pw + 1))
        act = Signal(signed(F + 2))
        zs = Signal(signed(A))
        m.d.comb += [
            p.eq(prod + bias),
            half.eq((Const(1, 1) << shift) >> 1),
            z.eq((p + half) >> shift),
            act.eq(_clamp(z, -(1 << F), 1 << F)),
            zs.eq(_clamp(z, lo, hi)),
            self.bit.eq(p >= 0),
        ]
        with m.Switch(mode):
            with m.Case(MODE_IN):
                m.d.comb += self.value.eq(act)
            with m.Case(MODE_RES):
                m.d.comb += self.value.eq(_clamp(res + act, lo, hi))
            with m.Case(MODE_CODE):
                m.d.comb += self.value.eq(Mux(p >= 0, 1, -1))
            with m.Case(MODE_OUT):
                m.d.comb += self.value.eq(zs)
            with m.Case(MODE_OUT_ADD):
                m.d.comb += self.value.eq(_clamp(res + zs, lo, hi))
            with m.Case(MODE_OUT_SUB):
                m.d.comb += self.value.eq(_clamp(res - zs, lo, hi))
        return m
