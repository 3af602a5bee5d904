"""The one cocotb driver and monitor of an Amaranth ``stream.Interface`` port (``NAME__valid``,
``NAME__payload``, ``NAME__ready`` on the generated Verilog), used by every stream bench in
``sim/`` (imported inside the simulator).

Both act at the falling clock edge and look at the other side 1 ns later, so a transfer is what
the DUT sees at the next rising edge (valid and ready both high); random idle cycles on either side
exercise back-pressure.  A driver keeps ``valid`` and its payload until the word is taken, as the
stream rules require.
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, Timer

__all__ = ["send", "receive"]


async def send(dut, name: str, words, *, bits: int | None = None, p_valid: float = 1.0, rng=random) -> None:
    """Send ``words`` (ints, masked to ``bits`` if given) on input stream ``name``, offering each
    one with probability ``p_valid`` per cycle until taken; ``valid`` is low at the end."""
    valid, payload, ready = (getattr(dut, f"{name}__{n}") for n in ("valid", "payload", "ready"))
    mask = (1 << bits) - 1 if bits is not None else -1
    idx, holding = 0, False
    words = list(words)
    while idx < len(words):
        await FallingEdge(dut.clk)
        if holding or rng.random() < p_valid:
            valid.value, holding = 1, True
            payload.value = int(words[idx]) & mask
        else:
            valid.value = 0
        await Timer(1, "ns")
        if holding and int(ready.value):
            idx, holding = idx + 1, False
    await FallingEdge(dut.clk)
    valid.value = 0


async def receive(dut, name: str, n: int, *, p_ready: float = 1.0, rng=random, max_cycles: int,
                  signed: bool = False) -> tuple[list[int], list[int]]:
    """Up to ``n`` words from output stream ``name`` within ``max_cycles`` cycles, ``ready`` high
    with probability ``p_ready`` per cycle: ``(words, cycle of each)``; ``ready`` is low at the end."""
    valid, payload, ready = (getattr(dut, f"{name}__{k}") for k in ("valid", "payload", "ready"))
    got, times, cycle = [], [], 0
    while len(got) < n and cycle < max_cycles:
        await FallingEdge(dut.clk)
        cycle += 1
        r = rng.random() < p_ready
        ready.value = int(r)
        await Timer(1, "ns")
        if r and int(valid.value):
            val = payload.value
            got.append(val.to_signed() if signed else int(val))
            times.append(cycle)
    await FallingEdge(dut.clk)
    ready.value = 0
    return got, times
