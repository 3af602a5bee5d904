"""PostUnit and MacEngine in the Amaranth simulator against model.golden."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.mac import MacEngine
from hw.post import PostUnit
from hw.schedule import MODE_CODE, MODE_IN, MODE_OUT, MODE_OUT_ADD, MODE_OUT_SUB, MODE_RES
from model.config import preset
from model.golden import IntLayer, layer_forward, sat

CFG = preset("tiny")
A, F = CFG.fixed.act_bits, CFG.fixed.act_frac
ACC, SB = CFG.fixed.acc_bits(64), CFG.fixed.scale_bits
BB = CFG.fixed.bias_bits


def post_ref(acc, mult, bias, shift, mode, res):
    """golden.layer_forward on a one-weight layer whose accumulator is ``acc``, plus the cascade's
    residual/sum updates of golden.encode/decode."""
    def layer(kind, a):
        lay = IntLayer(kind, np.ones((1, 1), np.uint8), np.array([mult]), np.array([bias]), shift, F)
        return int(layer_forward(lay, np.array([[a]]), CFG)[0, 0])
    # a "res" layer adds its own input: feed acc through a layer whose input is acc, then
    # re-add res in place of that input
    bit = layer("code", acc)
    out = layer("out", acc)
    act = layer("in", acc)
    value = {MODE_IN: act, MODE_RES: int(sat(res + act, A)), MODE_CODE: 1 if bit else -1,
             MODE_OUT: out, MODE_OUT_ADD: int(sat(res + out, A)),
             MODE_OUT_SUB: int(sat(res - out, A))}[mode]
    return value, bit


def post_cases(n, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        acc = int(rng.integers(-(1 << (ACC - 1)), 1 << (ACC - 1)))
        if rng.random() < 0.5:
            acc = int(rng.integers(-4096, 4096))
        mult = int(rng.integers(-(1 << (SB - 1)), 1 << (SB - 1)))
        shift = int(rng.integers(0, 15))
        bias = int(rng.integers(-(1 << (BB - 1)), 1 << (BB - 1))) >> int(rng.integers(0, BB))
        cases.append((acc, mult, bias, shift, int(rng.integers(0, 6)), int(rng.integers(-(1 << (A - 1)), 1 << (A - 1)))))
    # exact rounding ties, extremes of every field
    cases += [(1, 1, 1, 1, MODE_OUT, 0), (-1, 1, 0, 1, MODE_OUT, 0), (-3, 1, 0, 1, MODE_OUT, 0),
              (0, 0, 0, 0, MODE_CODE, 0), (0, 0, -1, 0, MODE_CODE, 0),
              ((1 << (ACC - 1)) - 1, (1 << (SB - 1)) - 1, 0, 14, MODE_OUT_SUB, -(1 << (A - 1))),
              (-(1 << (ACC - 1)), -(1 << (SB - 1)), 0, 0, MODE_OUT_ADD, (1 << (A - 1)) - 1)]
    # z = acc (mult 1, shift 0) at and next to every clamp and saturation bound, in every mode
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    for zb in (1 << F, -(1 << F), hi, lo, 0, -1, 1 << (BB - 1), -(1 << (BB - 1))):
        for dz in (-1, 0, 1):
            for mode in range(6):
                for res in (lo, hi, 0, -(1 << F), 1 << F):
                    cases.append((zb + dz, 1, 0, 0, mode, res))
                    cases.append((zb + dz + 5, 1, -5, 0, mode, res))
    return cases


def run_post(cases):
    """One case per cycle (back to back, then idle); results in order, each exactly
    ``PostUnit.LATENCY`` cycles after its inputs."""
    dut = PostUnit(A, F, SB, ACC, BB, 14)
    out, valid_at = [], []

    async def tb(ctx):
        n = len(cases) + dut.LATENCY + 2
        for t in range(n):
            if t < len(cases):
                acc, mult, bias, shift, mode, res = cases[t]
                for s, v in ((dut.acc, acc), (dut.mult, mult), (dut.bias, bias), (dut.shift, shift),
                             (dut.mode, mode), (dut.res, res), (dut.valid, 1)):
                    ctx.set(s, v)
            else:
                ctx.set(dut.valid, 0)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                valid_at.append(t)
                out.append((ctx.get(dut.value), ctx.get(dut.bit)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    # after the tick of cycle t the outputs show the inputs of cycle t - (LATENCY - 1)
    assert valid_at == [t + dut.LATENCY - 1 for t in range(len(cases))]
    return out


def test_post_unit_matches_golden():
    cases = post_cases(300, 1)
    got = run_post(cases)
    exp = [post_ref(*c) for c in cases]
    assert got == exp


def test_mac_engine_accumulates_groups():
    P, n, groups = 4, 9, 3
    rng = np.random.default_rng(2)
    a = rng.integers(-(1 << (A - 1)), 1 << (A - 1), (groups, n))
    a[0, :] = -(1 << (A - 1))                       # all minimum: largest magnitude sums
    w = rng.integers(0, 2, (groups, n, P))
    w[0] = 0
    dut = MacEngine(P, A, CFG.fixed.acc_bits(n))
    got = []

    async def tb(ctx):
        for g in range(groups):
            for j in range(n):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, j == 0)
                ctx.set(dut.last, j == n - 1)
                ctx.set(dut.a, int(a[g, j]))
                ctx.set(dut.w, int(sum(int(b) << l for l, b in enumerate(w[g, j]))))
                await ctx.tick()
            got.append([ctx.get(dut.shadow[l]) for l in range(P)])
        ctx.set(dut.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    exp = [[int(sum(a[g, j] * (2 * w[g, j, l] - 1) for j in range(n))) for l in range(P)] for g in range(groups)]
    assert got == exp
    assert exp[0][0] == n << (A - 1)                # the extreme case really was extreme


def test_mac_engine_shadow_shifts_to_lane0():
    P, n = 4, 3
    dut = MacEngine(P, A, CFG.fixed.acc_bits(n))
    w = [0b0101, 0b0011, 0b1111]                    # lane sums: 1+-2+-3 for a = 1, 2, 3
    exp = [sum(a * (1 if w[j] >> l & 1 else -1) for j, a in enumerate((1, 2, 3))) for l in range(P)]
    got = []

    async def tb(ctx):
        for j in range(n):
            ctx.set(dut.valid, 1)
            ctx.set(dut.first, j == 0)
            ctx.set(dut.last, j == n - 1)
            ctx.set(dut.a, j + 1)
            ctx.set(dut.w, w[j])
            await ctx.tick()
        ctx.set(dut.valid, 0)
        ctx.set(dut.shift, 1)
        for _ in range(P):
            got.append(ctx.get(dut.shadow[0]))
            await ctx.tick()
        assert ctx.get(dut.shadow[P - 1]) == exp[P - 1]      # the top lane keeps its value
        # a load in a cycle with shift wins
        ctx.set(dut.valid, 1)
        ctx.set(dut.first, 1)
        ctx.set(dut.last, 1)
        ctx.set(dut.a, 5)
        ctx.set(dut.w, 0b0001)
        await ctx.tick()
        assert [ctx.get(dut.shadow[l]) for l in range(P)] == [5, -5, -5, -5]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == exp


@pytest.mark.parametrize("bad", [0, 1])
def test_mac_engine_rejects_bad_lanes(bad):
    with pytest.raises(ValueError):
        MacEngine(bad - 1, A, 16)
