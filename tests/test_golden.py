"""Integer golden model (model/golden.py) against an independent exact reference.

The reference below is written from golden.py's docstring with Python ints (arbitrary precision,
so no wrap-around can hide an overflow):

    acc_i = sum_j (+a_j if w_ij else -a_j)
    p_i   = acc_i * mult_i
    z_i   = ((p_i + 2**(shift-1)) >> shift) + bias_i        (z_i = p_i + bias_i when shift == 0)
    in: clamp(z, -2**F, 2**F); res: sat_A(a + clamp(z)); code: z >= 0; out: sat_A(z)
"""

import json

import numpy as np
import pytest
from hypothesis import assume, HealthCheck, given, settings, strategies as st

from model import dsp, golden
from model.codec import Codec
from model.config import ConfigError, preset
from model.export import load_export, save_export

TINY = preset("tiny")
HSET = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


# ------------------------------------------------------------------------ exact reference

def _sat(v, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return max(lo, min(hi, v))


def ref_layer(layer, a, cfg):
    """Python-int layer: returns (outputs, accumulators, products) as nested lists."""
    A, F = cfg.fixed.act_bits, cfg.fixed.act_frac
    W = layer.weights.tolist()
    mult = [int(m) for m in layer.mult]
    bias = [int(b) for b in layer.bias]
    sh = int(layer.shift)
    outs, accs, prods = [], [], []
    for row in np.asarray(a).tolist():
        row = [int(v) for v in row]
        o_row, a_row, p_row = [], [], []
        for i in range(layer.fan_out):
            acc = sum(v if w else -v for v, w in zip(row, W[i]))
            p = acc * mult[i]
            z = ((p + (1 << (sh - 1))) >> sh) if sh > 0 else p
            z += bias[i]
            if layer.kind == "code":
                o = 1 if z >= 0 else 0
            elif layer.kind == "out":
                o = _sat(z, A)
            else:
                act = max(-(1 << F), min(1 << F, z))
                o = act if layer.kind == "in" else _sat(row[i] + act, A)
            o_row.append(o)
            a_row.append(acc)
            p_row.append(p)
        outs.append(o_row)
        accs.append(a_row)
        prods.append(p_row)
    return outs, accs, prods


def ref_encode(model, x):
    cfg, A = model.config, model.config.fixed.act_bits
    r = [[int(v) for v in row] for row in np.asarray(x).tolist()]
    codes = []
    for s, st_ in enumerate(model.stages):
        h = r
        for l in st_.encoder:
            h = ref_layer(l, h, cfg)[0]
        codes.append(h)
        if s < len(model.stages) - 1:
            y = ref_decode_stage(st_, h, cfg)
            r = [[_sat(a - b, A) for a, b in zip(ra, ya)] for ra, ya in zip(r, y)]
    return codes


def ref_decode_stage(stage, bits, cfg):
    h = [[2 * b - 1 for b in row] for row in bits]
    for l in stage.decoder:
        h = ref_layer(l, h, cfg)[0]
    return h


def ref_decode(model, codes, k):
    A = model.config.fixed.act_bits
    total = None
    for s in range(k):
        y = ref_decode_stage(model.stages[s], codes[s], model.config)
        total = y if total is None else [[_sat(a + b, A) for a, b in zip(ra, rb)] for ra, rb in zip(total, y)]
    return total


def fits(v, bits):
    return -(1 << (bits - 1)) <= v <= (1 << (bits - 1)) - 1


# --------------------------------------------------------------------------- strategies

@st.composite
def fixed_cfgs(draw):
    A = draw(st.integers(4, 24))
    I = draw(st.integers(2, A - 1))
    S = draw(st.integers(2, 32))
    B = draw(st.integers(A - I + 2, 32))
    try:   # formats whose product would not fit int64 are refused by validate(): not a case
        return TINY.replace(fixed={"act_bits": A, "act_int_bits": I, "scale_bits": S, "bias_bits": B})
    except ConfigError:
        assume(False)


def _ints(draw, lo, hi, n, mode):
    if mode == "max":
        return np.full(n, hi, np.int64)
    if mode == "min":
        return np.full(n, lo, np.int64)
    if mode == "extremes":
        return np.array(draw(st.lists(st.sampled_from([lo, hi, 0, -1, 1]), min_size=n, max_size=n)), np.int64)
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), np.int64)


@st.composite
def layer_cases(draw, symmetric=False):
    """(cfg, IntLayer, inputs) with extreme or random values over the full ranges."""
    cfg = draw(fixed_cfgs())
    fx = cfg.fixed
    A, F = fx.act_bits, fx.act_frac
    kind = draw(st.sampled_from(golden.LAYER_KINDS))
    fi = draw(st.integers(1, 70))
    fo = fi if kind == "res" else draw(st.integers(1, 6))
    T = draw(st.integers(1, 3))
    a_lo = -(1 << (A - 1)) + (1 if symmetric else 0)
    a_hi = (1 << (A - 1)) - 1
    rows = [_ints(draw, a_lo, a_hi, fi, draw(st.sampled_from(["max", "min", "extremes", "random"])))
            for _ in range(T)]
    m_lim, b_lim = 1 << (fx.scale_bits - 1), 1 << (fx.bias_bits - 1)
    mult = _ints(draw, -m_lim, m_lim - 1, fo, draw(st.sampled_from(["max", "min", "extremes", "random"])))
    bias = _ints(draw, -b_lim, b_lim - 1, fo, draw(st.sampled_from(["max", "min", "extremes", "random"])))
    wmode = draw(st.sampled_from(["ones", "zeros", "random"]))
    if wmode == "random":
        seed = draw(st.integers(0, 2 ** 32 - 1))
        w = np.random.default_rng(seed).integers(0, 2, (fo, fi), dtype=np.uint8)
    else:
        w = np.full((fo, fi), 1 if wmode == "ones" else 0, np.uint8)
    shift = draw(st.integers(0, 40))
    layer = golden.IntLayer(kind, w, mult, bias, shift, F)
    return cfg, layer, np.stack(rows)


# ------------------------------------------------------------------------- layer property

@settings(max_examples=300, **HSET)
@given(layer_cases())
def test_layer_forward_equals_exact_reference(case):
    cfg, layer, a = case
    A, F = cfg.fixed.act_bits, cfg.fixed.act_frac
    got = golden.layer_forward(layer, a, cfg)
    want, accs, prods = ref_layer(layer, a, cfg)
    assert got.shape == (a.shape[0], layer.fan_out)
    assert got.tolist() == want
    flat = [v for row in want for v in row]
    if layer.kind == "code":
        assert set(flat) <= {0, 1}
    elif layer.kind == "in":
        assert all(-(1 << F) <= v <= (1 << F) for v in flat)
    else:
        assert all(fits(v, A) for v in flat)
    # exact bound on the accumulator, whatever the inputs
    assert all(abs(v) <= layer.fan_in * (1 << (A - 1)) for row in accs for v in row)


@settings(max_examples=200, **HSET)
@given(layer_cases(symmetric=True))
def test_accumulator_and_product_fit_declared_widths(case):
    """Inputs in [-(2**(A-1)-1), 2**(A-1)-1]: acc fits acc_bits(fan_in), acc*mult fits product_bits.
    (The input -2**(A-1) is the xfail below.)"""
    cfg, layer, a = case
    fx = cfg.fixed
    _, accs, prods = ref_layer(layer, a, cfg)
    ab, pb = fx.acc_bits(layer.fan_in), fx.product_bits(layer.fan_in)
    assert all(fits(v, ab) for row in accs for v in row)
    assert all(fits(v, pb) for row in prods for v in row)


def test_acc_bits_holds_negated_most_negative_input():
    cfg = TINY
    A, n = cfg.fixed.act_bits, 64
    layer = golden.IntLayer("in", np.zeros((1, n), np.uint8), np.array([1]), np.array([0]), 0, cfg.fixed.act_frac)
    a = np.full((1, n), -(1 << (A - 1)), np.int64)
    _, accs, _ = ref_layer(layer, a, cfg)
    assert fits(accs[0][0], cfg.fixed.acc_bits(n))


def test_wide_formats_rejected_or_exact():
    try:
        cfg = TINY.replace(fixed={"act_bits": 48, "act_int_bits": 24, "bias_bits": 26})
    except ConfigError:
        return
    A = cfg.fixed.act_bits
    layer = golden.IntLayer("out", np.ones((1, 64), np.uint8), np.array([(1 << 15) - 1]),
                            np.array([0]), 20, cfg.fixed.act_frac)
    a = np.full((1, 64), (1 << (A - 1)) - 1, np.int64)
    assert golden.layer_forward(layer, a, cfg).tolist() == ref_layer(layer, a, cfg)[0]


# ------------------------------------------------------------------------- whole cascade

def _extreme_model(cfg, seed, mode):
    """random_model with its multipliers and biases pushed to the ends of their ranges."""
    m = golden.random_model(cfg, seed)
    rng = np.random.default_rng(seed)
    fx = cfg.fixed
    m_lim, b_lim = 1 << (fx.scale_bits - 1), 1 << (fx.bias_bits - 1)
    for st_ in m.stages:
        for l in st_.encoder + st_.decoder:
            n = l.fan_out
            if mode == "max":
                l.mult, l.bias = np.full(n, m_lim - 1), np.full(n, b_lim - 1)
            elif mode == "min":
                l.mult, l.bias = np.full(n, -m_lim), np.full(n, -b_lim)
            else:
                l.mult = rng.choice([-m_lim, m_lim - 1, 1, -1, 0], n)
                l.bias = rng.choice([-b_lim, b_lim - 1, 0], n)
            l.shift = int(rng.integers(0, 24))
    m.check()
    return m


@settings(max_examples=25, **HSET)
@given(seed=st.integers(0, 2 ** 16), mode=st.sampled_from(["keep", "max", "min", "mixed"]),
       xmode=st.sampled_from(["max", "min", "random", "zeros"]), act_bits=st.sampled_from([8, 12, 16]))
def test_cascade_encode_decode_against_reference(seed, mode, xmode, act_bits):
    cfg = TINY.replace(fixed={"act_bits": act_bits, "bias_bits": max(TINY.fixed.bias_bits, act_bits - 2)})
    model = golden.random_model(cfg, seed) if mode == "keep" else _extreme_model(cfg, seed, mode)
    A, D, T = act_bits, cfg.coefficients, 3
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    x = {"max": np.full((T, D), hi), "min": np.full((T, D), lo), "zeros": np.zeros((T, D), np.int64),
         "random": rng.integers(lo, hi + 1, (T, D))}[xmode].astype(np.int64)
    codes = golden.encode(model, x, search=0)   # the networks (the search: tests/test_search.py)
    assert len(codes) == cfg.network.stages
    for n, c in enumerate(codes):
        assert c.shape == (T, cfg.network.code_bits[n])
        assert set(np.unique(c).tolist()) <= {0, 1}
    assert [c.tolist() for c in codes] == ref_encode(model, x)
    for k in range(1, cfg.network.stages + 1):
        y = golden.decode(model, codes, k)
        assert y.shape == (T, D)
        assert y.min() >= lo and y.max() <= hi
        assert y.tolist() == ref_decode(model, [c.tolist() for c in codes], k)


def test_encode_trace_and_decode_errors():
    model = golden.random_model(TINY, 3)
    x = np.random.default_rng(0).integers(-2048, 2048, (4, TINY.coefficients))
    trace = []
    codes = golden.encode(model, x, trace, search=0)   # a trace is kept without search
    n_layers = sum(len(s.encoder) + len(s.decoder) for s in model.stages) - len(model.stages[-1].decoder)
    assert len(trace) == n_layers + (TINY.network.stages - 1)   # + one residual entry per inner stage
    assert all(len(t) == 5 for t in trace)
    with pytest.raises(ValueError):
        golden.decode(model, codes, 0)
    with pytest.raises(ValueError):
        golden.decode(model, codes, 3)


def test_quantize_dequantize_frames():
    cfg = TINY
    F, A = cfg.fixed.act_frac, cfg.fixed.act_bits
    x = np.array([[0.0, 1.0, -1.0, 2 ** -F, 100.0, -100.0, 1.5 * 2 ** -F]])
    q = golden.quantize_frames(x, cfg)
    assert q.tolist() == [[0, 1 << F, -(1 << F), 1, (1 << (A - 1)) - 1, -(1 << (A - 1)), 2]]
    assert golden.dequantize_frames(q, cfg)[0, 1] == 1.0


def test_random_model_and_check():
    m = golden.random_model(TINY, 0)
    m.check()
    m.stages[0].encoder[0].mult = m.stages[0].encoder[0].mult.copy()
    m.stages[0].encoder[0].mult[0] = 1 << (TINY.fixed.scale_bits - 1)
    with pytest.raises(ValueError, match="scale_bits"):
        m.check()
    m = golden.random_model(TINY, 0)
    m.stages[1].decoder[0].bias = np.full(m.stages[1].decoder[0].fan_out, 1 << (TINY.fixed.bias_bits - 1))
    with pytest.raises(ValueError, match="bias_bits"):
        m.check()
    m = golden.random_model(TINY, 0)
    m.stages.pop()
    with pytest.raises(ValueError):
        m.check()


# ------------------------------------------------------------ sub-band weight sharing

def test_subbands_run_the_shared_network_on_each_band():
    """With S sub-bands a stage is the S = 1 network of width D/S on each band: the codes are
    the bands' codes side by side (band 0 first) and each band of the output is that band's
    decoding, whole cascade, code search and trace included."""
    cfg = TINY.replace(network={"subbands": 2})
    m = golden.random_model(cfg, 7)
    half = golden.IntModel(TINY.replace(signal={"hop": 32}, network={"code_bits": [8, 8]}), m.stages)
    half.check()                                       # the same layers fit the narrow codec
    A, D = cfg.fixed.act_bits, cfg.coefficients
    x = np.random.default_rng(1).integers(-(1 << (A - 1)), 1 << (A - 1), (5, D))
    for search in (0, 1):
        codes = golden.encode(m, x, search=search)
        bands = [golden.encode(half, x[:, k * D // 2:(k + 1) * D // 2], search=search) for k in range(2)]
        for n in range(cfg.network.stages):
            assert codes[n].shape == (5, 16)
            np.testing.assert_array_equal(codes[n], np.hstack([b[n] for b in bands]))
        for k in (1, 2):
            np.testing.assert_array_equal(golden.decode(m, codes, k),
                                          np.hstack([golden.decode(half, b, k) for b in bands]))
    trace = []
    golden.encode(m, x, trace, search=0)
    assert [v.shape for _, side, i, _, v in trace if (side, i) == ("encoder", 2)] == [(5, 16)] * 2


# ------------------------------------------------------------ act_bits flows everywhere

def test_act_bits_change_reaches_golden_and_export(tiny_codec, speech, tmp_path):
    """Only ``cfg.replace(fixed={"act_bits": 10})``: quantized model, golden outputs, the export
    and the fixed-arith bitstream all follow, with no other edit."""
    c12 = Codec(tiny_codec.cfg.replace(fixed={"act_bits": 12, "bias_bits": 10}), tiny_codec.net, tiny_codec.lsf_q,
                tiny_codec.codebooks)
    cfg10 = c12.cfg.replace(fixed={"act_bits": 10})
    c10 = Codec(cfg10, c12.net, c12.lsf_q, c12.codebooks)
    m12, m10 = c12.int_model(), c10.int_model()
    assert m10.config.fixed.act_bits == 10
    b12 = np.concatenate([l.bias for s in m12.stages for l in s.encoder + s.decoder])
    b10 = np.concatenate([l.bias for s in m10.stages for l in s.encoder + s.decoder])
    assert not np.array_equal(b12, b10)                     # bias resolution F = 8 -> 6

    frames = dsp.analyze(speech, c12.cfg, c12.lsf_q).frames
    x12, x10 = golden.quantize_frames(frames, c12.cfg), golden.quantize_frames(frames, cfg10)
    assert x10.min() >= -512 and x10.max() <= 511 and not np.array_equal(x10 * 4, x12)
    y12 = golden.decode(m12, golden.encode(m12, x12))
    y10 = golden.decode(m10, golden.encode(m10, x10))
    assert y10.min() >= -512 and y10.max() <= 511
    assert not np.array_equal(golden.dequantize_frames(y10, cfg10), golden.dequantize_frames(y12, c12.cfg))
    # still the same codec, roughly: dequantized outputs correlate strongly
    assert np.corrcoef(golden.dequantize_frames(y10, cfg10).ravel(),
                       golden.dequantize_frames(y12, c12.cfg).ravel())[0, 1] > 0.8

    e12 = save_export(m12, tmp_path / "e12")
    e10 = save_export(m10, tmp_path / "e10")
    man12 = json.loads((e12 / "manifest.json").read_text())
    man10 = json.loads((e10 / "manifest.json").read_text())
    assert man10["config"]["fixed"]["act_bits"] == 10 and man12["config"]["fixed"]["act_bits"] == 12
    assert man10["config_hash"] == cfg10.config_hash != man12["config_hash"]
    assert load_export(e10).config == cfg10
    assert (e10 / "weights.npz").read_bytes() != (e12 / "weights.npz").read_bytes()

    d12, d10 = c12.encode_bytes(speech, "fixed"), c10.encode_bytes(speech, "fixed")
    assert d12[8:16] != d10[8:16]                           # config hash in the stream header
    y, _ = c10.decode_bytes(d10, "fixed")
    assert np.all(np.isfinite(y)) and len(y) == len(speech)


# ------------------------------------------------------------------ golden vs PyTorch

MAX_TOL = 16 * 2.0 ** -TINY.fixed.act_frac      # 16 LSB of the tiny preset's act format
RMS_TOL = 2 * 2.0 ** -TINY.fixed.act_frac       # 2 LSB


def test_golden_matches_torch_on_real_speech(tiny_codec, speech):
    """Tiny trained model, real held-out speech frames (gain-normalized, unit RMS).

    * Decoding the same codes: |fixed - float| <= 16 LSB everywhere and RMS <= 2 LSB (LSB =
      2**-act_frac of the act format; at Q4.8 observed about 0.015 max, 0.0034 RMS; at Q4.6
      0.0085 RMS).
    * Encoding: code bits of fixed and float arithmetic agree on >= 95 % of bits in every stage.
    """
    _assert_golden_matches_torch(tiny_codec, speech)


def test_golden_matches_torch_with_subbands(train_signals, speech):
    """The same agreement for a tiny model with sub-band weight sharing (2 bands of 32
    coefficients), trained here (which also runs the entropy-aware loss on the joined codes)."""
    from model.train import TrainOptions, train
    cfg = TINY.replace(network={"subbands": 2})
    q = dsp.LsfQuantizer.fit(dsp.training_lsfs(train_signals, cfg), cfg.lpc.lsf_bits)
    opts = TrainOptions(greedy_epochs=1, finetune_rounds=1, finetune_epochs=1, augment=False, rate_weight=0.1)
    net, hist = train(cfg, train_signals, opts, q, log=lambda m: None)
    assert hist["finetune"][0] < 0, hist             # the cascade's error in dB re. its input
    c = Codec(cfg, net.eval(), q)
    assert c.net.stages[0].enc[0].weight.shape == (cfg.network.hidden, cfg.coefficients // 2)
    _assert_golden_matches_torch(c, speech)
    frames = dsp.analyze(speech, cfg, q).frames
    for arith in ("float", "fixed"):                 # the code search on joined codes
        codes = c.encode_frames(frames, arith, search=1)
        assert [b.shape for b in codes] == [(len(frames), 16)] * 2


def _assert_golden_matches_torch(c, speech):
    frames = dsp.analyze(speech, c.cfg, c.lsf_q).frames
    fixed = c.encode_frames(frames, "fixed", search=0)   # the networks alone (no code search)
    flt = c.encode_frames(frames, "float", search=0)
    for n, (a, b) in enumerate(zip(fixed, flt)):
        assert a.shape == b.shape == (len(frames), c.cfg.network.code_bits[n])
        agree = float((a == b).mean())
        assert agree >= 0.95, f"stage {n}: {agree:.3f}"
    for k in range(1, c.cfg.network.stages + 1):
        yx = c.decode_frames(fixed[:k], "fixed")
        yf = c.decode_frames(fixed[:k], "float")
        d = yx - yf
        assert np.abs(d).max() <= MAX_TOL
        assert np.sqrt(np.mean(d ** 2)) <= RMS_TOL
        assert np.sqrt(np.mean(yf ** 2)) > 2 * RMS_TOL      # not a vacuous comparison of zeros
