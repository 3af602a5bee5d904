"""Parameter storage of a core: binary weight rows or post-unit parameters, as ROM or loadable RAM.

Three kinds, one interface (``read_addr``/``read_data`` for the datapath, ``write_*`` for a loader):

``"rom"``
    ``amaranth.lib.memory.Memory`` initialized from the model: the bitstream carries the weights.
    The write port is left out (its signals are ignored).  Block RAM on ECP5 and iCE40 EBR.
``"ram"``
    The same memory without an initial value, plus a write port: the weights are loaded at run
    time (``hw/board.py``: command ``W``).  Maps to true dual-port block RAM.
``"spram"``
    iCE40 UltraPlus single-port RAM: ``ceil(depth / 16384)`` ``SB_SPRAM256KA`` primitives (16,384 x
    16 bits each) stacked in depth.  The configuration bitstream cannot initialize SPRAM, so these
    are always loaded at run time.  Single port: while ``write_en`` is high the write address
    drives the RAM and no read happens (the cores load only while their datapath is idle).

Latency: ``read_data`` is the word at the ``read_addr`` of the previous cycle (one-cycle
synchronous read, like an Amaranth ``Memory`` read port), for every kind.  Words are unsigned
``width``-bit values; for SPRAM ``width`` must be at most 16 (the upper bits of the RAM are zero).
"""

from __future__ import annotations

import math
import operator

from amaranth import Array, ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["STORAGES", "SPRAM_DEPTH", "SPRAM_WIDTH", "ParamStore", "spram_banks", "spram_misfit"]

STORAGES = ("rom", "ram", "spram")
SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16


def spram_banks(depth: int) -> int:
    """SB_SPRAM256KA primitives a store of ``depth`` words needs."""
    return math.ceil(depth / SPRAM_DEPTH)


def spram_misfit(lanes: int, scale_bits: int, bias_bits: int) -> str | None:
    """Why a core of ``lanes`` lanes and these parameter widths cannot keep its weight rows and
    parameter words in SPRAM (one line), or None when it can."""
    if lanes > SPRAM_WIDTH or scale_bits + bias_bits > SPRAM_WIDTH:
        return (f"SPRAM words have {SPRAM_WIDTH} bits: weights in SPRAM need lanes <= {SPRAM_WIDTH} "
                f"(is {lanes}) and scale_bits + bias_bits <= {SPRAM_WIDTH} (is {scale_bits} + {bias_bits})")
    return None


class ParamStore(wiring.Component):
    """``depth`` words of ``width`` bits: one synchronous read port, one write port for loading.

    Parameters
    ----------
    width, depth : int
        Word width and number of words.
    kind : str
        ``"rom"``, ``"ram"`` or ``"spram"`` (module docstring).
    init : list of int
        The ROM image (kind ``"rom"`` only; ``len(init) == depth``).
    """

    def __init__(self, width: int, depth: int, kind: str = "rom", init=None):
        self.width, self.depth = operator.index(width), max(operator.index(depth), 1)
        if kind not in STORAGES:
            raise ValueError(f"kind must be one of {STORAGES}, not {kind!r}")
        if kind == "spram" and self.width > SPRAM_WIDTH:
            raise ValueError(f"an SPRAM word has {SPRAM_WIDTH} bits; this store needs {self.width}")
        if kind == "rom":
            init = [int(v) for v in (init or [])] or [0]
            if len(init) != self.depth:
                raise ValueError(f"ROM image has {len(init)} words, depth is {self.depth}")
        elif init:
            raise ValueError("only a ROM takes an initial image (RAMs are loaded at run time)")
        self.kind, self._init = kind, init
        addr = range(self.depth)
        super().__init__({
            "read_addr": In(addr), "read_data": Out(self.width),
            "write_addr": In(addr), "write_data": In(self.width), "write_en": In(1),
        })

    @property
    def banks(self) -> int:
        """SPRAM primitives used (0 for the other kinds)."""
        return spram_banks(self.depth) if self.kind == "spram" else 0

    def elaborate(self, platform):
        m = Module()
        if self.kind != "spram":
            m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth,
                                            init=self._init if self.kind == "rom" else [])
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(self.read_addr), self.read_data.eq(rd.data)]
            if self.kind == "ram":
                wr = mem.write_port()
                m.d.comb += [wr.addr.eq(self.write_addr), wr.data.eq(self.write_data),
                             wr.en.eq(self.write_en)]
            return m

        addr = Signal(range(self.depth))
        m.d.comb += addr.eq(Mux(self.write_en, self.write_addr, self.read_addr))
        n = self.banks
        bank = Signal(range(max(n, 2)))              # bank of this cycle's access
        bank_q = Signal.like(bank)                   # ... of the word now on read_data
        if n > 1:
            m.d.comb += bank.eq(addr[14:])
        m.d.sync += bank_q.eq(bank)
        addr14, din = Signal(14), Signal(SPRAM_WIDTH)
        m.d.comb += [addr14.eq(addr), din.eq(self.write_data)]
        outs = []
        for b in range(n):
            dout = Signal(SPRAM_WIDTH, name=f"bank{b}_data")
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr14, i_DATAIN=din, i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.write_en & (bank == b), i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal(),
                i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                o_DATAOUT=dout)
            outs.append(dout)
        m.d.comb += self.read_data.eq(Array(outs)[bank_q][:self.width] if n > 1 else outs[0][:self.width])
        return m
