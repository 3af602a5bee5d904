"""Post unit: scale, bias, round, activation and residual of one output neuron per cycle (4 stages)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .schedule import POST_UNIT_LATENCY, PostMode

__all__ = ["PostUnit"]


def _sat(v, bits):
    """Saturate signed ``v`` to signed ``bits`` bits with a sign-extension check (no comparator)."""
    top = v[bits - 1:]
    return Mux(top.all() | ~top.any(), v[:bits].as_signed(),
               Mux(v[-1], -(1 << (bits - 1)), (1 << (bits - 1)) - 1))


def _hardtanh(v, F):
    """``clamp(v, -2**F, 2**F)`` for signed ``v`` (F + 2 bits out), without comparators: ``v`` is in
    [-2**F, 2**F - 1] iff bits F and up are all equal; ``v >= 2**F`` gives ``2**F``."""
    top, low = v[F:], v[:F + 1].as_signed()
    return Mux(v[-1], Mux(top.all(), low, -(1 << F)), Mux(top.any(), 1 << F, low))


class PostUnit(wiring.Component):
    """The per-output part of ``model.golden.layer_forward``.

    Computes, for one neuron per cycle (fully pipelined)::

        p = acc * mult
        z = ((p + 2**(shift-1)) >> shift) + bias  # round half up (no rounding when shift == 0)
        IN:      value = clamp(z, -2**F, 2**F)                (hardtanh)
        RES:     value = sat_A(res + clamp(z, -2**F, 2**F))
        CODE:    bit = z >= 0, value = +1 if bit else -1      (sign; +-1 for the next decoder)
        OUT:     value = sat_A(z)
        OUT_ADD: value = sat_A(res + sat_A(z))                (decoder running sum)
        OUT_SUB: value = sat_A(res - sat_A(z))                (encoder residual r - y)

    (``mode``: :class:`hw.schedule.PostMode`.)
        margin = |sat_A(z)|  (with ``margin=True``: how far a code bit is from flipping)

    Number formats (``model/golden.py``): ``acc`` signed ``acc_bits``, ``mult`` signed
    ``scale_bits``, ``bias`` signed ``bias_bits`` with F fraction bits, ``res`` and ``value``
    signed A = ``act_bits`` with F = ``act_frac`` fraction bits, ``margin`` unsigned A bits.  One
    multiplier.

    Latency: :attr:`LATENCY` = 4 cycles, one result per cycle.  Pipeline stages (each ends in a
    register)::

        s0  input register: acc, mult, bias, res, shift, mode  (memory read data may feed it directly)
        s1  p  = acc * mult                                     (product_bits)
        s2  zr = sat_W((p + half) >> shift)                     (W = zr_bits = max(A, bias_bits) + 1)
        s3  z = zr + bias; clamp / saturate / residual add-sub  -> value, bit, o_valid
            (clamps and saturations as sign-extension checks: one carry chain for the bias add,
            one for the residual add)

    ``sat_W`` does not change any result: a rounded product beyond the W-bit range gives, with
    any bias, a z beyond [-2**(A-1), 2**(A-1) - 1], where every mode saturates; it keeps the
    bias add and the clamps of s3 short (W + 1 bits, not ``product_bits`` + 2).

    Inputs are sampled at the clock edge where ``valid`` is sampled; ``o_valid``, ``value``,
    ``bit`` and ``margin`` are registers, valid ``LATENCY`` cycles later (the caller's memory write port then
    writes ``value`` at the end of that cycle).

    Parameters
    ----------
    act_bits, act_frac : int
        A and F of the activations (``cfg.fixed``).
    scale_bits, acc_bits, bias_bits : int
        Widths of the per-output scale, the accumulator and the bias.
    max_shift : int
        Largest layer shift the unit must support.
    margin : bool
        Add the ``margin`` output (the encoder's code search needs it).
    """

    LATENCY = POST_UNIT_LATENCY

    def __init__(self, act_bits: int, act_frac: int, scale_bits: int, acc_bits: int, bias_bits: int,
                 max_shift: int, margin: bool = False):
        self._A, self._F = int(act_bits), int(act_frac)
        self._acc_bits, self._bias_bits, self._scale_bits = int(acc_bits), int(bias_bits), int(scale_bits)
        self._max_shift = int(max_shift)
        self._margin = bool(margin)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(self._acc_bits)),
            "mult": In(signed(self._scale_bits)),
            "bias": In(signed(self._bias_bits)),
            "res": In(signed(self._A)),
            "shift": In(range(self._max_shift + 1)),
            "mode": In(PostMode),
            "o_valid": Out(1),
            "value": Out(signed(self._A)),
            "bit": Out(1),
            **({"margin": Out(unsigned(self._A))} if self._margin else {}),
        })

    @property
    def product_bits(self) -> int:
        return self._acc_bits + self._scale_bits

    @property
    def zr_bits(self) -> int:
        """Width W of the saturated rounded product: ``max(A, bias_bits) + 1`` (at most
        ``product_bits + 1``)."""
        return min(max(self._A, self._bias_bits) + 1, self.product_bits + 1)

    def elaborate(self, platform):
        m = Module()
        A, F = self._A, self._F
        pw = self.product_bits

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
        zr_full = Signal(signed(pw + 1))
        m.d.comb += [
            half.eq((Const(1, 1) << r1["shift"]) >> 1),
            zr_full.eq((prod + half) >> r1["shift"]),
        ]
        # saturate to W bits (sign-extension check, no carry chain): exact, since with zr beyond
        # [-2**(W-1), 2**(W-1) - 1] z = zr + bias lies beyond the A-bit range for any bias
        W = self.zr_bits
        zr = Signal(signed(W), name="s2_zr")
        if W < pw + 1:
            top = zr_full[W - 1:]
            m.d.sync += zr.eq(Mux(top.all() | ~top.any(), zr_full[:W].as_signed(),
                                  Mux(zr_full[-1], -(1 << (W - 1)), (1 << (W - 1)) - 1)))
        else:
            m.d.sync += zr.eq(zr_full)
        m.d.sync += [r2[n].eq(r1[n]) for n in r2]

        # ---- s3: bias, activation / saturation, residual -> output registers ---------------
        bias, res, mode = r2["bias"], r2["res"], r2["mode"]
        z = Signal(signed(max(W, self._bias_bits) + 1))
        act = Signal(signed(F + 2))
        zs = Signal(signed(A))
        value = Signal.like(self.value)
        m.d.comb += [
            z.eq(zr + bias),
            act.eq(_hardtanh(z, F)),
            zs.eq(_sat(z, A)),
        ]
        with m.Switch(mode):
            with m.Case(PostMode.IN):
                m.d.comb += value.eq(act)
            with m.Case(PostMode.RES):
                m.d.comb += value.eq(_sat(res + act, A))
            with m.Case(PostMode.CODE):
                m.d.comb += value.eq(Mux(z[-1], -1, 1))
            with m.Case(PostMode.OUT):
                m.d.comb += value.eq(zs)
            with m.Case(PostMode.OUT_ADD):
                m.d.comb += value.eq(_sat(res + zs, A))
            with m.Case(PostMode.OUT_SUB):
                m.d.comb += value.eq(_sat(res - zs, A))
        m.d.sync += [self.o_valid.eq(r2["valid"]), self.value.eq(value), self.bit.eq(~z[-1])]
        if self._margin:
            m.d.sync += self.margin.eq(Mux(zs[-1], -zs, zs))
        return m
