"""cocotb testbench of hw/huffman.py against model/huffman.py (run by tests/test_hw_huffman.py).

Vectors come in an .npz named by $HUFFMAN_VECTORS: ``stages`` (S,), ``counts`` (S,) symbols per
section, ``bits`` all sections' code bits concatenated, ``sec_bytes`` (S,) bytes per section,
``data`` all sections' bytes concatenated (from ``Codebook.encode_bits``).  Valid and ready are
random (back-pressure on both sides).
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.streams import receive, send

V = np.load(os.environ["HUFFMAN_VECTORS"])
K = int(os.environ["HUFFMAN_K"])


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("i__valid", "o__ready", "cmd__valid"):
        try:
            handle = getattr(dut, name)
        except AttributeError:
            continue
        handle.value = 0          # an undriven (z) valid would match Amaranth's casez
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def drive(dut, prefix, payloads, p_valid=0.6):
    """Send payloads on stream ``prefix`` with random idle cycles (``sim.streams.send``)."""
    await send(dut, prefix, payloads, p_valid=p_valid)


async def collect(dut, n, p_ready=0.5, timeout=200000):
    return (await receive(dut, "o", n, p_ready=p_ready, max_cycles=timeout))[0]


@cocotb.test()
async def encoder_matches_model(dut):
    random.seed(int(os.environ.get("HUFFMAN_SEED", "1")))
    await reset(dut)
    stages, counts = V["stages"], V["counts"]
    bits = V["bits"]
    words = []
    pos = 0
    for s, c in zip(stages, counts):
        nb = int(c) * K
        for j in range(nb):
            words.append(int(bits[pos + j]) | (int(j == nb - 1) << 1) | (int(s) << 2))
        pos += nb
    expect = [int(x) for x in V["data"]]
    cocotb.start_soon(drive(dut, "i", words))
    got = await collect(dut, len(expect))
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, f"byte {i}: hardware {g:#04x}, model {e:#04x}"
    assert len(got) == len(expect), f"{len(got)} bytes of {len(expect)}"
    for _ in range(50):                       # nothing more comes out
        dut.o__ready.value = 1
        await ReadOnly()
        assert dut.o__valid.value == 0, "encoder sent a byte too many"
        await RisingEdge(dut.clk)


@cocotb.test()
async def decoder_matches_model(dut):
    random.seed(int(os.environ.get("HUFFMAN_SEED", "1")) + 7)
    await reset(dut)
    stages, counts = V["stages"], V["counts"]
    cw = len(dut.cmd__payload.value) - int(os.environ["HUFFMAN_STAGE_BITS"])
    sb = int(os.environ["HUFFMAN_STAGE_BITS"])
    cmds = [int(s) | (int(c) << sb) for s, c in zip(stages, counts)]
    assert all(int(c) < (1 << cw) for c in counts)
    cocotb.start_soon(drive(dut, "cmd", cmds, p_valid=0.3))
    cocotb.start_soon(drive(dut, "i", [int(x) for x in V["data"]]))
    bits = [int(x) for x in V["bits"]]
    got = await collect(dut, len(bits))
    ends = set(np.cumsum(np.asarray(counts) * K) - 1)
    for i, g in enumerate(got):
        b, last = g & 1, g >> 1
        assert b == bits[i], f"bit {i}: hardware {b}, model {bits[i]}"
        assert last == (i in ends), f"bit {i}: last={last}"
    assert len(got) == len(bits), f"{len(got)} bits of {len(bits)}"
    assert dut.error.value == 0
