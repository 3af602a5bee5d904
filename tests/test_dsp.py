"""Signal front/back end (model/dsp.py): LSF, transforms, analyze/synthesize, LSF quantizer."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from model import dsp
from model.config import CodecConfig, ConfigError, preset

TINY = preset("tiny")
HSET = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
CFGS = {
    "tiny-mdct": TINY,
    "tiny-stft": TINY.replace(signal={"transform": "stft"}),
    "tiny-nolpc": TINY.replace(lpc={"enabled": False}),
    "default-mdct": preset("default"),
}


def _quantizer(cfg, signals):
    return dsp.LsfQuantizer.fit(dsp.training_lsfs(signals, cfg), cfg.lpc.lsf_bits) if cfg.lpc.enabled else None


def _min_phase(a):
    return np.all(np.abs(np.roots(a)) < 1.0)


def _stable_exact(a):
    """Step-down (Schur-Cohn) test in 60-digit arithmetic on the float coefficients: all
    reflection coefficients |k| < 1 <=> 1/A(z) is stable.  (np.roots is too inaccurate for
    clustered roots.)"""
    import mpmath
    with mpmath.workdps(60):
        c = [mpmath.mpf(float(v)) / mpmath.mpf(float(a[0])) for v in a]
        for m in range(len(c) - 1, 0, -1):
            k = c[m]
            if abs(k) >= 1:
                return False
            c = [(c[i] - k * c[m - i]) / (1 - k * k) for i in range(m)]
    return True


# ------------------------------------------------------------------------------- LSF

def test_lsf_poly_round_trip_on_speech(speech):
    polys = dsp.lpc_frames(speech, TINY)
    assert polys.shape == (dsp.num_frames(len(speech), TINY.signal.hop), TINY.lpc.order + 1)
    checked = 0
    for a in polys[::3]:
        assert a[0] == 1.0 and _min_phase(a)
        lsf = dsp.poly2lsf(a)
        assert lsf.shape == (TINY.lpc.order,)
        assert np.all(np.diff(lsf) > 0) and lsf[0] > 0 and lsf[-1] < np.pi
        np.testing.assert_allclose(dsp.lsf2poly(lsf), a, atol=1e-8)
        checked += 1
    assert checked > 10


@settings(max_examples=100, **HSET)
@given(st.lists(st.floats(0.05, np.pi - 0.05), min_size=16, max_size=16, unique=True),
       st.sampled_from([2, 8, 16]))
def test_lsf_to_poly_to_lsf(raw, order):
    lsf = np.sort(np.array(raw[:order]))
    if np.min(np.diff(lsf)) < 1e-3:
        lsf = np.linspace(0.1, np.pi - 0.1, order)
    a = dsp.lsf2poly(lsf)
    assert len(a) == order + 1 and a[0] == pytest.approx(1.0)
    assert _stable_exact(a)                                  # ordered LSFs -> stable synthesis filter
    np.testing.assert_allclose(dsp.poly2lsf(a), lsf, atol=1e-6)


# ------------------------------------------------------------------ perfect reconstruction

@pytest.mark.parametrize("transform", ["mdct", "stft"])
def test_transform_perfect_reconstruction(transform):
    cfg = TINY.replace(signal={"transform": transform})
    rng = np.random.default_rng(1)
    for n in (1, 63, 64, 65, 1000):
        e = rng.standard_normal(n)
        X = dsp.transform(e, cfg)
        assert X.shape == (dsp.num_frames(n, 64), cfg.coefficients)
        np.testing.assert_allclose(dsp.inverse_transform(X, cfg, n), e, atol=1e-9)


def test_mdct_is_orthogonal_tdac():
    cfg = TINY
    rng = np.random.default_rng(2)
    e = rng.standard_normal(64 * 20)
    X = dsp.transform(e, cfg)
    # Parseval for the orthogonal lapped transform: energy is kept
    assert np.sum(X ** 2) == pytest.approx(np.sum(e ** 2), rel=1e-9)


@pytest.mark.parametrize("name", sorted(CFGS))
def test_analyze_synthesize_perfect_reconstruction(name, speech):
    cfg = CFGS[name].replace(postfilter={"enabled": False},   # these two are meant to change it
                               noise_fill={"enabled": False})
    x = speech[:8000]
    q = _quantizer(cfg, [x])
    an = dsp.analyze(x, cfg, q)
    T = dsp.num_frames(len(x), cfg.signal.hop)
    assert an.frames.shape == (T, cfg.coefficients) and an.gain_idx.shape == (T,)
    assert an.lsf_idx.shape == (T, cfg.lpc.order if cfg.lpc.enabled else 0)
    assert an.num_samples == len(x)
    if cfg.lpc.enabled:
        assert an.lsf_idx.min() >= 0 and an.lsf_idx.max() < 1 << cfg.lpc.lsf_bits
    assert an.gain_idx.min() >= 0 and an.gain_idx.max() < 1 << cfg.gain.bits
    y = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, cfg, q, pitch=an.pitch)
    assert y.shape == x.shape
    # what comes back is the input after the encoder's high-pass (InputConfig)
    np.testing.assert_allclose(y, dsp.highpass(x, cfg), atol=1e-9)


def test_postfilter_keeps_frame_energy_and_deepens_valleys(speech):
    """Energy per frame is kept; the spectrum between formants drops relative to the peaks; equal
    gammas and no tilt leave the signal as it is."""
    cfg = preset("default").replace(noise_fill={"enabled": False},   # the formant postfilter alone
                                    postfilter={"pitch_gain": 0.0})
    x = speech[:16000]
    q = _quantizer(cfg, [x])
    an = dsp.analyze(x, cfg, q)
    plain = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples,
                           cfg.replace(postfilter={"enabled": False}), q)
    post = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, cfg, q)
    hop = cfg.signal.hop
    for t in range(len(x) // hop):
        a, b = plain[t * hop:(t + 1) * hop], post[t * hop:(t + 1) * hop]
        assert np.dot(b, b) == pytest.approx(np.dot(a, a), rel=1e-9)
    # spectral contrast (peak-to-median ratio in dB) rises
    def contrast(y):
        S = np.abs(np.fft.rfft(y[:len(y) // 512 * 512].reshape(-1, 512) * np.hanning(512), axis=1)) ** 2
        S = S.mean(axis=0)
        return 10 * np.log10(S.max() / np.median(S))
    assert contrast(post) > contrast(plain) + 1.0
    same = cfg.replace(postfilter={"num_gamma": 0.9, "den_gamma": 0.9, "tilt": 0.0})
    np.testing.assert_allclose(dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, same, q),
                               plain, atol=1e-9)


def test_formant_postfilter_gamma_follows_the_decoded_stage_count(speech):
    """A per-K ``num_gamma`` schedule: decoding with K stages filters exactly as the single value
    of entry K-1 (the last entry for larger K); a single value holds for every K."""
    cfg = preset("default").replace(noise_fill={"enabled": False}, postfilter={"pitch_gain": 0.0})
    x = speech[:8000]
    q = _quantizer(cfg, [x])
    an = dsp.analyze(x, cfg, q)
    args = (an.frames, an.lsf_idx, an.gain_idx, an.num_samples)
    sched = cfg.replace(postfilter={"num_gamma": [0.6, 0.7, 0.85]})
    assert sched.postfilter.num_gamma == (0.6, 0.7, 0.85)
    assert [sched.postfilter.num_gamma_for(k) for k in (1, 2, 3, 9)] == [0.6, 0.7, 0.85, 0.85]
    for k, g in ((1, 0.6), (2, 0.7), (5, 0.85)):
        single = cfg.replace(postfilter={"num_gamma": g})
        np.testing.assert_array_equal(dsp.synthesize(*args, sched, q, k), dsp.synthesize(*args, single, q, k))
    assert not np.allclose(dsp.synthesize(*args, sched, q, 1), dsp.synthesize(*args, sched, q, 2))
    # default: all stages
    np.testing.assert_array_equal(dsp.synthesize(*args, sched, q), dsp.synthesize(*args, sched, q, 9))
    assert CodecConfig.from_dict(sched.to_dict()) == sched and sched.config_hash == cfg.config_hash
    for bad in ([], [0.5, 1.0], 1.2):
        with pytest.raises(ConfigError):
            cfg.replace(postfilter={"num_gamma": bad})


def test_pitch_postfilter_lowers_noise_between_harmonics():
    """A periodic signal (125 Hz) in white noise comes out closer to the clean periodic signal
    (the comb keeps the harmonics and averages the noise); noise alone (no correlation above the
    threshold) and a gain of 0 leave the signal as it is; the length is kept."""
    cfg = preset("default")
    sr = cfg.signal.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(sr) / sr
    clean = sum(np.sin(2 * np.pi * 125 * h * t + h) / h for h in range(1, 20)) * 0.1
    noise = rng.standard_normal(sr) * 0.03
    y = dsp.pitch_postfilter(clean + noise, cfg)
    assert y.shape == clean.shape

    def snr(z):
        mid = slice(sr // 10, -sr // 10)          # away from the zeros before the start
        return 10 * np.log10(np.sum(clean[mid] ** 2) / np.sum((z[mid] - clean[mid]) ** 2))
    assert snr(y) > snr(clean + noise) + 1.5
    np.testing.assert_allclose(dsp.pitch_postfilter(noise, cfg), noise, atol=1e-12)
    x = clean + noise
    assert not np.allclose(dsp.pitch_postfilter(x, cfg.replace(postfilter={"pitch_gain": 0.3})), x)
    off = cfg.replace(postfilter={"pitch_gain": 0.0})
    np.testing.assert_allclose(dsp.pitch_postfilter(x, off), x, atol=1e-12)
    assert cfg.config_hash == off.config_hash                 # host side only: same streams


def test_gain_normalization(speech):
    cfg = TINY
    q = _quantizer(cfg, [speech])
    an = dsp.analyze(speech, cfg, q)
    loud = an.gain_idx > 10
    rms = np.sqrt(np.mean(an.frames[loud] ** 2, axis=1))
    # quantized gain: frame RMS within half a step (0.75 dB) of 1
    assert np.all(np.abs(20 * np.log10(rms)) <= cfg.gain.step_db / 2 + 1e-9)
    idx = np.arange(1 << cfg.gain.bits)
    g = dsp.gain_dequantize(idx, cfg)
    assert np.all(np.diff(g) > 0)


# ---------------------------------------------------------------------- awkward signals

def _square(n, period=40):
    return np.where((np.arange(n) // (period // 2)) % 2 == 0, 1.0, -1.0)


SIGNALS = {
    "one-sample": lambda: np.array([0.5]),
    "shorter-than-hop": lambda: np.random.default_rng(0).uniform(-1, 1, 37),
    "exactly-one-hop": lambda: np.random.default_rng(1).uniform(-1, 1, 64),
    "silence": lambda: np.zeros(3000),
    "full-scale-square": lambda: _square(4000),
    "dc-full-scale": lambda: np.ones(2000),
    "single-click": lambda: np.eye(1, 2000, 999)[0],
}


@pytest.mark.parametrize("cfg_name", ["tiny-mdct", "tiny-stft"])
@pytest.mark.parametrize("sig", sorted(SIGNALS))
def test_awkward_signals_analyze_and_synthesize(sig, cfg_name, speech):
    cfg = CFGS[cfg_name]
    q = _quantizer(cfg, [speech[:8000]])                  # a quantizer fitted on speech
    x = SIGNALS[sig]()
    an = dsp.analyze(x, cfg, q)
    assert an.frames.shape == (dsp.num_frames(len(x), 64), cfg.coefficients)
    assert np.all(np.isfinite(an.frames))
    y = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples,
                       cfg.replace(postfilter={"enabled": False}, noise_fill={"enabled": False}), q,
                       pitch=an.pitch)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, dsp.highpass(x, cfg), atol=1e-7)
    y = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, cfg, q)   # postfilter on
    assert y.shape == x.shape and np.all(np.isfinite(y))
    # a decoder that gets zeroed frames (lost packets) still gives finite output
    z = dsp.synthesize(np.zeros_like(an.frames), an.lsf_idx, an.gain_idx, an.num_samples, cfg, q)
    assert np.all(np.isfinite(z))


def test_fit_quantizer_on_silence_and_square():
    cfg = TINY
    q = _quantizer(cfg, [np.zeros(2000), _square(4000)])
    assert q.levels.shape == (cfg.lpc.order, 1 << cfg.lpc.lsf_bits)
    assert np.all(np.isfinite(q.levels))


# ------------------------------------------------------------------------ LSF quantizer

@settings(max_examples=150, **HSET)
@given(order=st.sampled_from([1, 2, 8, 16]), bits=st.integers(1, 4), seed=st.integers(0, 2 ** 32 - 1),
       mode=st.sampled_from(["uniform", "collapsed", "edges"]))
def test_lsf_quantizer_dequantize_ordered_and_stable(order, bits, seed, mode):
    rng = np.random.default_rng(seed)
    n = 1 << bits
    if mode == "uniform":
        levels = np.sort(rng.uniform(0, np.pi, (order, n)), axis=1)
    elif mode == "collapsed":                          # every LSF grid at the same point
        levels = np.full((order, n), rng.uniform(0, np.pi))
    else:                                              # grids at 0 and pi
        levels = np.sort(rng.choice([0.0, np.pi, 1e-6, np.pi - 1e-6], (order, n)), axis=1)
    q = dsp.LsfQuantizer(levels)
    idx = rng.integers(0, n, (5, order))
    lsf = q.dequantize(idx)
    assert lsf.shape == (5, order)
    assert np.all(np.diff(lsf, axis=1) >= q.min_gap - 1e-12)
    assert np.all(lsf > 0) and np.all(lsf < np.pi)
    if order % 2 == 0 and (order <= 8 or mode == "uniform"):   # order 16 clusters: xfail below
        for row in lsf:
            assert _stable_exact(dsp.lsf2poly(row))


@pytest.mark.xfail(strict=True, reason=(
    "FINDING model/dsp.py:124 LsfQuantizer.dequantize: min_gap=0.01 rad does not keep the "
    "synthesis filter stable at lpc.order=16 (default preset) in float64: 16 LSFs 0.01 apart "
    "(e.g. a collapsed grid, levels all 0.05) give lsf2poly coefficients whose 1/A(z) is unstable "
    "(reflection coefficient 1.58); at order 8 the filter is stable but has poles at 0.9998 "
    "(synthesis output ~1e8 for unit-RMS frames)"))
def test_order16_min_gap_cluster_is_stable():
    q = dsp.LsfQuantizer(np.full((16, 8), 0.05))
    assert _stable_exact(dsp.lsf2poly(q.dequantize(np.zeros(16, int))))


def test_lsf_quantizer_fit_quantize_round_trip(speech):
    cfg = TINY
    lsfs = dsp.training_lsfs([speech], cfg)
    q = dsp.LsfQuantizer.fit(lsfs, 3)
    assert q.levels.shape == (8, 8) and np.all(np.diff(q.levels, axis=1) >= 0)
    idx = q.quantize(lsfs)
    assert idx.shape == lsfs.shape and idx.min() >= 0 and idx.max() < 8
    # quantizing a grid point gives its index back
    assert np.array_equal(q.quantize(q.levels.T[3][None, :])[0], np.full(8, 3)) or \
        np.all(np.diff(q.levels, axis=1) == 0)
    err = np.abs(q.dequantize(idx) - lsfs)
    assert np.median(err) < 0.1                      # 3 bits per LSF: coarse but close
    back = dsp.LsfQuantizer.from_dict(q.to_dict())
    np.testing.assert_array_equal(back.levels, q.levels)
    assert back.min_gap == q.min_gap


def test_noise_fill_adds_the_missing_energy_above_its_start():
    from model.dsp import noise_fill
    cfg = CodecConfig()
    D = cfg.coefficients
    rng = np.random.default_rng(1)
    y = rng.standard_normal((6, D)) * 0.6             # 36 % of the unit-RMS frame energy
    y[3] *= 2.0                                       # 144 %: nothing missing
    out = noise_fill(y, cfg)
    lo = int(np.ceil(cfg.noise_fill.start_hz / (cfg.signal.sample_rate / 2) * D))
    np.testing.assert_array_equal(out[:, :lo], y[:, :lo])          # below start_hz untouched
    added = ((out - y) ** 2).sum(axis=1)
    missing = np.maximum(0, D - (y ** 2).sum(axis=1))
    np.testing.assert_allclose(added, cfg.noise_fill.fraction * missing, rtol=1e-9)
    assert added[3] == 0 and (added[[0, 1, 2, 4, 5]] > 0).all()
    np.testing.assert_array_equal(noise_fill(y, cfg), out)          # deterministic
    off = cfg.replace(noise_fill={"enabled": False})
    np.testing.assert_array_equal(noise_fill(y, off), y)
    stft = cfg.replace(signal={"transform": "stft"})
    np.testing.assert_array_equal(noise_fill(np.zeros((2, stft.coefficients)), stft), 0)   # MDCT only
    assert off.config_hash == cfg.config_hash                       # no bit of the stream changes
    with pytest.raises(ConfigError, match="noise_fill"):
        cfg.replace(noise_fill={"fraction": 1.5})


# ------------------------------------------------------------- input high-pass, pitch pre-filter

def test_highpass_removes_rumble_keeps_speech_band():
    cfg = preset("default")
    sr = cfg.signal.sample_rate
    t = np.arange(sr) / sr
    lo, mid = np.sin(2 * np.pi * 30 * t), np.sin(2 * np.pi * 1000 * t)
    y_lo, y_mid = dsp.highpass(lo, cfg), dsp.highpass(mid, cfg)
    assert np.std(y_lo[sr // 2:]) < 0.02 * np.std(lo)
    assert abs(np.std(y_mid[sr // 2:]) / np.std(mid) - 1) < 0.01
    off = cfg.replace(input={"highpass_hz": 0})
    np.testing.assert_array_equal(dsp.highpass(lo, off), lo)


def _voiced(seconds, f0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    pulses = np.zeros(n)
    pulses[:: int(sr / f0)] = 1.0
    from scipy.signal import lfilter
    return lfilter([1.0], [1.0, -1.3, 0.8], pulses) + 0.01 * rng.standard_normal(n)


@pytest.mark.parametrize("f0", [100.0, 250.0])
def test_pitch_analysis_finds_the_period(f0):
    cfg = preset("default")
    x = _voiced(1.0, f0)
    p = dsp.pitch_analysis(x, cfg)
    assert p.shape == (dsp.num_frames(len(x), cfg.signal.hop), 2)
    voiced = p[2:-2]
    assert (voiced[:, 1] > 0).all()
    lag = voiced[:, 0] + cfg.pitch.lag_min
    period = 16000 / f0
    assert np.all(np.abs(lag - period) <= 1), lag     # the period, not a multiple of it


def test_pitch_analysis_leaves_noise_alone():
    cfg = preset("default")
    x = np.random.default_rng(1).standard_normal(16000)
    p = dsp.pitch_analysis(x, cfg)
    assert (p[:, 1] == 0).mean() > 0.9


@pytest.mark.parametrize("domain", ["signal", "residual"])
def test_pitch_comb_is_inverted_exactly_and_whitens_voiced_speech(speech, domain):
    cfg = preset("default").replace(pitch={"domain": domain})
    x = dsp.highpass(speech, cfg)
    p = dsp.pitch_analysis(x, cfg)
    assert p[:, 1].any() and len(set(p[:, 0])) > 3   # several lags, so the cross-fades are exercised
    y = dsp.pitch_prefilter(x, p, cfg)
    assert np.sum(y ** 2) < 0.8 * np.sum(x ** 2)
    np.testing.assert_allclose(dsp.pitch_postcomb(y, p, cfg), x, atol=1e-9)
    # a wrong lag does not invert it
    q = p.copy()
    q[:, 0] = (q[:, 0] + 7) % (cfg.pitch.lag_max - cfg.pitch.lag_min + 1)
    assert np.max(np.abs(dsp.pitch_postcomb(y, q, cfg) - x)) > 1e-3


@pytest.mark.parametrize("domain", ["signal", "residual"])
def test_analyze_synthesize_with_pitch_prefilter_is_transparent(speech, domain):
    """Without coding noise the chain with the pre-filter gives the high-passed input back."""
    cfg = preset("default").replace(pitch={"domain": domain}, postfilter={"enabled": False},
                                    noise_fill={"enabled": False})
    q = _quantizer(cfg, [speech])
    an = dsp.analyze(speech, cfg, q)
    assert an.pitch is not None and an.pitch.shape == (len(an.frames), 2)
    y = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, cfg, q, pitch=an.pitch)
    ref = dsp.highpass(speech, cfg)
    err = np.sum((y - ref) ** 2) / np.sum(ref ** 2)
    assert err < 1e-3, err
    # decoding without the stream's pitch indices is audibly wrong
    y0 = dsp.synthesize(an.frames, an.lsf_idx, an.gain_idx, an.num_samples, cfg, q, pitch=0 * an.pitch)
    assert np.sum((y0 - ref) ** 2) / np.sum(ref ** 2) > 100 * err
