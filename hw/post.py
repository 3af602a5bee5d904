"""Post unit: scale, bias, round, activation and residual of one output neuron per cycle (4 stages)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .schedule import MODE_CODE, MODE_IN, MODE_OUT, MODE_OUT_ADD, MODE_OUT_SUB, MODE_RES, POST_UNIT_LATENCY

__all__ = ["PostUnit"]


def _clamp(v, lo, hi):
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


class PostUnit(wiring.Component):
    """The per-output part of ``model.golden.layer_forward``.

    Computes, for one neuron per cycle (fully pipelined)::

        p = acc * mult
        z = ((p + 2**(shift-1)) >> shift) + bias  # round half up (no rounding when shift == 0)
        MODE_IN:      value = clamp(z, -2**F, 2**F)                (hardtanh)
        MODE_RES:     value = sat_A(res + clamp(z, -2**F, 2**F))
        MODE_CODE:    bit = z >= 0, value = +1 if bit else -1      (sign; +-1 for the next decoder)
        MODE_OUT:     value = sat_A(z)
        MODE_OUT_ADD: value = sat_A(res + sat_A(z))                (decoder running sum)
        MODE_OUT_SUB: value = sat_A(res - sat_A(z))                (encoder residual r - y)

    Number formats (``model/golden.py``): ``acc`` signed ``acc_bits``, ``mult`` signed
    ``scale_bits``, ``bias`` signed ``bias_bits`` with F fraction bits, ``res`` and ``value``
    signed A = ``act_bits`` with F = ``act_frac`` fraction bits.  One multiplier.

    Latency: :attr:`LATENCY` = 4 cycles, one result per cycle.  Pipeline stages (each ends in a
    register)::

        s0  input register: acc, mult, bias, res, shift, mode  (memory read data may feed it directly)
        s1  p  = acc * mult                                     (product_bits)
        s2  zr = (p + half) >> shift                            (product_bits + 1)
        s3  z = zr + bias; clamp / saturate / residual add-sub  -> value, bit, o_valid

    Inputs are sampled at the clock edge where ``valid`` is sampled; ``o_valid``, ``value`` and
    ``bit`` are registers, valid ``LATENCY`` cycles later (the caller's memory write port then
    writes ``value`` at the end of that cycle).

    Parameters
    ----------
    cfg : CodecConfig
    acc_bits, bias_bits : int
        Widths of the accumulator and of the bias.
    max_shift : int
        Largest layer shift the unit must support.
    """

    LATENCY = POST_UNIT_LATENCY

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
        return self._acc_bits + self._scale_bits

    def elaborate(self, platform):
        m = Module()
        A, F = self._A, self._F
        pw = self.product_bits
        lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1

        # valid, bias, res, shift and mode travel along the pipeline: ``r<s>`` are the copies in
        # the register at the end of stage s
        def stage_regs(s):
            return {n: Signal(sig.shape(), name=f"s{s}_{n}")
                    for n, sig in (("valid", self.valid), ("bias", self.bias), ("res", self.res),
                                   ("shift", self.shift), ("mode", self.mode))}

        # ---- s0: input register ------------------------------------------------------------
        r0 = stage_regs(0)
        acc0, mult0 = Signal.like(self.acc, name="s0_acc"), Signal.like(self.mult, name="s0_mult")
        m.d.sync += [acc0.eq(self.acc), mult0.eq(self.mult)]
        m.d.sync += [r0[n].eq(getattr(self, n)) for n in r0]

        # ---- s1: multiply ------------------------------------------------------------------
        r1 = stage_regs(1)
        prod = Signal(signed(pw), name="s1_prod")
        m.d.sync += prod.eq(acc0 * mult0)
        m.d.sync += [r1[n].eq(r0[n]) for n in r1]

        # ---- s2: round half up and shift ---------------------------------------------------
        r2 = stage_regs(2)
        half = Signal(unsigned(self._max_shift + 1))
        zr = Signal(signed(pw + 1), name="s2_zr")
        m.d.comb += half.eq((Const(1, 1) << r1["shift"]) >> 1)
        m.d.sync += zr.eq((prod + half) >> r1["shift"])
        m.d.sync += [r2[n].eq(r1[n]) for n in r2]

        # ---- s3: bias, activation / saturation, residual -> output registers ---------------
        bias, res, mode = r2["bias"], r2["res"], r2["mode"]
        z = Signal(signed(max(pw + 1, self._bias_bits) + 1))
        act = Signal(signed(F + 2))
        zs = Signal(signed(A))
        value = Signal.like(self.value)
        m.d.comb += [
            z.eq(zr + bias),
            act.eq(_clamp(z, -(1 << F), 1 << F)),
            zs.eq(_clamp(z, lo, hi)),
        ]
        with m.Switch(mode):
            with m.Case(MODE_IN):
                m.d.comb += value.eq(act)
            with m.Case(MODE_RES):
                m.d.comb += value.eq(_clamp(res + act, lo, hi))
            with m.Case(MODE_CODE):
                m.d.comb += value.eq(Mux(z >= 0, 1, -1))
            with m.Case(MODE_OUT):
                m.d.comb += value.eq(zs)
            with m.Case(MODE_OUT_ADD):
                m.d.comb += value.eq(_clamp(res + zs, lo, hi))
            with m.Case(MODE_OUT_SUB):
                m.d.comb += value.eq(_clamp(res - zs, lo, hi))
        m.d.sync += [self.o_valid.eq(r2["valid"]), self.value.eq(value), self.bit.eq(z >= 0)]
        return m
