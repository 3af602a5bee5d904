"""The system clock of a board top: the board's oscillator as it is, or a PLL that multiplies it.

The encoder core's work per frame grows with its code search (``SearchConfig``: every visited bit
is one more run of a stage decoder), so a faster clock buys search trials, and search trials buy
quality.  The iCEBreaker's oscillator gives 12 MHz while its encoder top places and routes at about
22 MHz: :class:`SystemClock` drives the ``sync`` domain from the iCE40's ``SB_PLL40_PAD`` at a
frequency :func:`ice40_pll` finds, and holds the domain in reset until the PLL locks.

What this module computes by hand is what Project IceStorm's ``icepll`` prints (the same search
over the divider ranges of the iCE40 sysCLOCK PLL, Lattice TN1251), so that the frequency the
hardware runs at, the one the UART divisor and the real-time figures use, and the one nextpnr checks
timing against are one number.  ECP5 boards (``EHXPLLL``) run at their oscillator's clock.
"""
from __future__ import annotations

import dataclasses

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

from model.errors import CascadeError

__all__ = ["ClockError", "Ice40Pll", "ice40_pll", "resolve_clock", "SystemClock"]


class ClockError(CascadeError, ValueError):
    """A requested system clock the board cannot make (one line: what it can)."""


#: iCE40 sysCLOCK PLL ranges (Lattice TN1251; ``icepll``): phase detector input, VCO, output, in
#: Hz, and the divider fields' widths (DIVR 4 bits, DIVF 7 bits, DIVQ 3 bits with 1..6 legal).
ICE40_PFD = (10e6, 133e6)
ICE40_VCO = (533e6, 1066e6)
ICE40_OUT = (16e6, 275e6)


@dataclasses.dataclass(frozen=True)
class Ice40Pll:
    """One setting of the iCE40 PLL in SIMPLE feedback mode:
    ``f_out = f_in * (divf + 1) / ((divr + 1) * 2**divq)``."""
    f_in: float
    divr: int
    divf: int
    divq: int

    @property
    def f_pfd(self) -> float:
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self) -> float:
        return self.f_pfd * (self.divf + 1)

    @property
    def f_out(self) -> float:
        return self.f_vco / 2 ** self.divq

    @property
    def filter_range(self) -> int:
        """The loop filter setting for the phase detector's frequency (as ``icepll`` picks it)."""
        for n, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), start=1):
            if self.f_pfd < top:
                return n
        return 6

    def parameters(self) -> dict:
        """``SB_PLL40_PAD`` parameters (Amaranth ``Instance`` ``p_`` names without the prefix)."""
        return {"FEEDBACK_PATH": "SIMPLE", "PLLOUT_SELECT": "GENCLK", "DIVR": self.divr,
                "DIVF": self.divf, "DIVQ": self.divq, "FILTER_RANGE": self.filter_range}


def ice40_pll(f_in: float, f_want: float) -> Ice40Pll:
    """The iCE40 PLL setting whose output is nearest to ``f_want`` without exceeding it (a clock
    is asked for because timing allows it, so it is a ceiling), the smallest dividers on a tie.
    :class:`ClockError` when no setting reaches ``ICE40_OUT[0]`` .. ``f_want``."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not ICE40_PFD[0] <= f_pfd <= ICE40_PFD[1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not ICE40_VCO[0] <= f_vco <= ICE40_VCO[1]:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2 ** divq
                if ICE40_OUT[0] <= f_out <= f_want * (1 + 1e-9) and (best is None or f_out > best.f_out + 1e-3):
                    best = Ice40Pll(f_in, divr, divf, divq)
    if best is None:
        raise ClockError(f"the iCE40 PLL cannot make {f_want / 1e6:g} MHz from {f_in / 1e6:g} MHz "
                         f"(its output is {ICE40_OUT[0] / 1e6:g} to {ICE40_OUT[1] / 1e6:g} MHz)")
    return best


def resolve_clock(platform, f_want: float | None) -> float:
    """The system clock a board top runs at when ``f_want`` Hz is asked for: the oscillator's for
    None (or its own frequency), else the nearest PLL output at or below ``f_want``
    (:func:`ice40_pll`); :class:`ClockError` where the board has no PLL made here."""
    f_in = platform.default_clk_frequency
    if f_want is None or abs(f_want - f_in) <= 1:
        return f_in
    if str(getattr(platform, "family", "")).lower() != "ice40":
        raise ClockError(f"a system clock other than the board's {f_in / 1e6:g} MHz needs a PLL, "
                         f"which is made for iCE40 boards only")
    return ice40_pll(f_in, f_want).f_out


class SystemClock(Elaboratable):
    """Creates the ``sync`` domain at ``f_sync`` Hz on ``platform``.

    ``f_sync`` equal to the platform's default clock: nothing is made here (the platform makes
    ``sync`` from its oscillator, as for any Amaranth design).  Otherwise, on an iCE40 platform, the
    oscillator pin feeds ``SB_PLL40_PAD`` set by :func:`ice40_pll` (which must hit ``f_sync``
    exactly: ask it first and pass its ``f_out``), whose global output clocks ``sync``; the domain
    stays in reset until the PLL's ``LOCK`` is high, released synchronously
    (``amaranth.lib.cdc.ResetSynchronizer``, two flip-flops).  Nextpnr derives the output's timing
    constraint from the oscillator's, so post-route Fmax is checked against ``f_sync``.
    """

    def __init__(self, f_sync: float):
        self.f_sync = float(f_sync)
        self.locked = Signal()

    @staticmethod
    def plan(platform, f_sync: float) -> Ice40Pll | None:
        """The PLL :class:`SystemClock` uses for ``f_sync`` on ``platform`` (None: the oscillator
        itself); :class:`ClockError` for a clock it cannot make there."""
        f_in = platform.default_clk_frequency
        if abs(f_sync - f_in) <= 1:
            return None
        pll = ice40_pll(f_in, resolve_clock(platform, f_sync))
        if abs(pll.f_out - f_sync) > 1:
            raise ClockError(f"the iCE40 PLL makes {pll.f_out / 1e6:g} MHz, not {f_sync / 1e6:g} MHz, "
                             f"from {f_in / 1e6:g} MHz")
        return pll

    def elaborate(self, platform):
        m = Module()
        pll = self.plan(platform, self.f_sync)
        if pll is None:
            m.d.comb += self.locked.eq(1)
            return m
        m.domains.sync = ClockDomain("sync")
        pin = platform.request(platform.default_clk, dir="-")
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            **{f"p_{k}": v for k, v in pll.parameters().items()},
            i_PACKAGEPIN=pin.io if hasattr(pin, "io") else pin,
            i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=ClockSignal("sync"),
            o_LOCK=self.locked,
        )
        m.submodules.reset_sync = ResetSynchronizer(~self.locked, domain="sync")
        return m
