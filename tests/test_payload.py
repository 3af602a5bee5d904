"""The board's payload adapters (``hw/payload.py``) in Amaranth's simulator, under random valid and
ready, against the byte layouts of ``hw/protocol.py`` (words little-endian, code bits
``np.packbits(..., bitorder="little")``), twice in a row from one ``start`` each."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.payload import BitsFromBytes, BytesFromBits, BytesFromWords, WordsFromBytes


def _run(dut, items, take_count, valid_p, ready_p, count=None, seed=3, rounds=2):
    """Feed ``items`` (one list per round) into ``dut.i`` after ``start`` (and ``count``), collect
    ``dut.o`` until ``done``; returns one list per round and whether ``done`` came exactly once."""
    got = []

    async def bench(ctx):
        rng = random.Random(seed)
        for r in range(rounds):
            ctx.set(dut.start, 1)
            if count is not None:
                ctx.set(dut.count, count)
            await ctx.tick()
            ctx.set(dut.start, 0)
            queue, out, done = list(items[r]), [], 0
            for _ in range(40 * (len(items[r]) + take_count) + 50):
                offer = bool(queue) and rng.random() < valid_p
                ready = rng.random() < ready_p
                ctx.set(dut.i.valid, offer)
                ctx.set(dut.i.payload, int(queue[0]) if offer else 0)
                ctx.set(dut.o.ready, ready)
                took = offer and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid) and ready:
                    out.append(ctx.get(dut.o.payload))
                done += ctx.get(dut.done)
                await ctx.tick()
                if took:
                    queue.pop(0)
                if done:
                    break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 1)
            for _ in range(5):              # idle after done: takes and offers nothing
                assert not ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)
                await ctx.tick()
            got.append((out, queue, done))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


PACES = [(1.0, 1.0), (0.4, 0.6)]


@pytest.mark.parametrize("valid_p,ready_p", PACES)
def test_words_from_bytes(valid_p, ready_p):
    A, D = 10, 7
    rng = np.random.default_rng(0)
    words = [rng.integers(-(1 << (A - 1)), 1 << (A - 1), D) for _ in range(2)]
    data = [list(w.astype("<i2").tobytes()) + [0xAA] * 3 for w in words]     # a next record follows
    for (out, left, done), w in zip(_run(WordsFromBytes(A, D), data, D, valid_p, ready_p), words):
        assert out == list(w) and left == [0xAA] * 3 and done == 1


@pytest.mark.parametrize("valid_p,ready_p", PACES)
def test_bytes_from_words(valid_p, ready_p):
    A, D = 10, 5
    rng = np.random.default_rng(1)
    words = [list(rng.integers(-(1 << (A - 1)), 1 << (A - 1), D)) for _ in range(2)]
    for (out, left, done), w in zip(_run(BytesFromWords(A, D), words, 2 * D, valid_p, ready_p), words):
        assert bytes(out) == np.array(w, "<i2").tobytes() and not left and done == 1


@pytest.mark.parametrize("valid_p,ready_p", PACES)
def test_bytes_from_bits(valid_p, ready_p):
    B = 21
    rng = np.random.default_rng(2)
    bits = [list(rng.integers(0, 2, B)) for _ in range(2)]
    for (out, left, done), b in zip(_run(BytesFromBits(B), bits, B, valid_p, ready_p), bits):
        assert bytes(out) == np.packbits(np.array(b, np.uint8), bitorder="little").tobytes()
        assert not left and done == 1


@pytest.mark.parametrize("valid_p,ready_p", PACES)
@pytest.mark.parametrize("count", [8, 13])
def test_bits_from_bytes(valid_p, ready_p, count):
    rng = np.random.default_rng(3)
    bits = [rng.integers(0, 2, count).astype(np.uint8) for _ in range(2)]
    data = [list(np.packbits(b, bitorder="little")) + [0x55] for b in bits]
    for (out, left, done), b in zip(_run(BitsFromBytes(16), data, count, valid_p, ready_p, count=count), bits):
        assert out == list(b) and left == [0x55] and done == 1
