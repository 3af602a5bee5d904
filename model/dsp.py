"""Signal front end and back end: LPC (patent Eq. 4), LSF quantization, MDCT / STFT, gain.

The encoder side (``analyze``) turns a 16 kHz signal into

* one quantized LPC filter per frame (LSF indices, side information in the bitstream),
* the LPC residual e(t) = A_q(z/gamma) s(t), computed with the *quantized* filter so that the
  decoder can invert it exactly,
* frames of transform coefficients of e(t) (MDCT, or STFT real+imaginary parts),
* one quantized gain per frame; the frames are divided by it (the network sees unit-RMS frames).

The decoder side (``synthesize``) multiplies by the gains, inverts the transform (overlap-add)
and runs the synthesis filter 1/A_q(z/gamma).  Frame t's LPC filter applies to samples
[t*hop, (t+1)*hop) of the signal; MDCT frame t covers [(t-1)*hop, (t+1)*hop).  A signal of n
samples gives ceil(n/hop) + 1 frames.

Written by hand (with numpy/scipy primitives) because no maintained Python package offers LSF
conversion or an MDCT with TDAC framing that matches this layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import butter, lfilter, lfiltic, sosfilt

from .config import CodecConfig

__all__ = ["Analysis", "analyze", "synthesize", "noise_fill", "postfilter", "pitch_postfilter", "LsfQuantizer", "poly2lsf", "lsf2poly",
           "transform", "inverse_transform", "lpc_frames", "num_frames", "highpass", "pitch_analysis",
           "pitch_prefilter", "pitch_postcomb", "encoder_input"]


# ---------------------------------------------------------------------------------- LPC / LSF

def num_frames(n_samples: int, hop: int) -> int:
    return -(-max(n_samples, 1) // hop) + 1


def lpc_frames(s: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """Unquantized, bandwidth-expanded LPC polynomials A(z/gamma), one per frame: (T, order+1).

    Autocorrelation method on a Hann window of ``lpc.window`` samples centred on the frame's
    hop-long segment, 60 Hz Gaussian lag window and 40 dB white-noise correction, Levinson
    recursion (scipy's Toeplitz solver)."""
    hop, p, win = cfg.signal.hop, cfg.lpc.order, cfg.lpc.window
    T = num_frames(len(s), hop)
    pad = (win - hop) // 2 + win
    x = np.concatenate([np.zeros(pad), s, np.zeros(T * hop - len(s) + pad + win)])
    w = np.hanning(win + 2)[1:-1]
    lag = np.arange(p + 1)
    lagwin = np.exp(-0.5 * (2 * np.pi * 60.0 * lag / cfg.signal.sample_rate) ** 2)
    gam = cfg.lpc.gamma ** lag
    starts = pad + np.arange(T) * hop + hop // 2 - win // 2
    segs = x[starts[:, None] + np.arange(win)[None, :]] * w
    r = np.stack([np.einsum("ij,ij->i", segs[:, :win - k], segs[:, k:]) for k in range(p + 1)], 1) * lagwin
    out = np.zeros((T, p + 1))
    out[:, 0] = 1.0
    for t in np.flatnonzero(r[:, 0] > 1e-10):
        rt = r[t].copy()
        rt[0] *= 1.0001
        a = solve_toeplitz(rt[:p], -rt[1:p + 1])
        out[t] = np.concatenate([[1.0], a]) * gam
    return out


def poly2lsf(a: np.ndarray) -> np.ndarray:
    """LPC polynomial [1, a1..ap] (p even, minimum phase) -> p line spectral frequencies in (0, pi),
    ascending."""
    a = np.asarray(a, dtype=np.float64)
    p = len(a) - 1
    ext = np.concatenate([a, [0.0]])
    P = ext + ext[::-1]
    Q = ext - ext[::-1]
    # P has a root at z = -1 and Q one at z = +1 (p even): drop them by their angle
    ang = np.concatenate([np.angle(np.roots(P)), np.angle(np.roots(Q))])
    ang = np.sort(ang[(ang > 1e-7) & (ang < np.pi - 1e-7)])
    if len(ang) != p:  # numerically degenerate: fall back to an evenly spread set
        ang = np.linspace(0, np.pi, p + 2)[1:-1]
    return ang


def lsf2poly(lsf: np.ndarray) -> np.ndarray:
    """Inverse of ``poly2lsf``: ascending LSFs -> [1, a1..ap]."""
    lsf = np.asarray(lsf, dtype=np.float64)
    P = np.array([1.0, 1.0])
    Q = np.array([1.0, -1.0])
    for i, w in enumerate(lsf):
        quad = np.array([1.0, -2.0 * np.cos(w), 1.0])
        if i % 2 == 0:
            P = np.convolve(P, quad)
        else:
            Q = np.convolve(Q, quad)
    return ((P + Q) / 2)[:-1]


@dataclass
class LsfQuantizer:
    """Scalar quantizer of each LSF on its own grid (``levels``: (order, 2**lsf_bits), ascending),
    fitted to training data with Lloyd's algorithm.  Dequantized LSFs are sorted and kept
    ``min_gap`` rad apart, which keeps the synthesis filter stable."""
    levels: np.ndarray
    min_gap: float = 0.01

    @classmethod
    def fit(cls, lsfs: np.ndarray, bits: int, iterations: int = 30) -> "LsfQuantizer":
        n = 1 << bits
        levels = np.zeros((lsfs.shape[1], n))
        for k in range(lsfs.shape[1]):
            v = np.sort(lsfs[:, k])
            c = np.quantile(v, (np.arange(n) + 0.5) / n)
            for _ in range(iterations):
                idx = np.abs(v[:, None] - c[None, :]).argmin(1)
                for j in range(n):
                    if np.any(idx == j):
                        c[j] = v[idx == j].mean()
                c = np.sort(c)
            levels[k] = c
        return cls(levels)

    def quantize(self, lsf: np.ndarray) -> np.ndarray:
        return np.abs(np.asarray(lsf)[..., :, None] - self.levels).argmin(-1)

    def dequantize(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx)
        lsf = np.take_along_axis(self.levels, idx.T if idx.ndim > 1 else idx[:, None], 1)
        lsf = lsf.T if idx.ndim > 1 else lsf[:, 0]
        lsf = np.sort(lsf, axis=-1)
        for k in range(lsf.shape[-1]):
            lo = self.min_gap * (k + 1)
            prev = lsf[..., k - 1] + self.min_gap if k else lo
            lsf[..., k] = np.clip(np.maximum(lsf[..., k], prev), lo, np.pi - self.min_gap * (lsf.shape[-1] - k))
        return lsf

    def to_dict(self) -> dict:
        return {"levels": self.levels.tolist(), "min_gap": self.min_gap}

    @classmethod
    def from_dict(cls, d: dict) -> "LsfQuantizer":
        return cls(np.asarray(d["levels"], dtype=np.float64), float(d["min_gap"]))


def _filters_from_lsf_idx(lsf_idx: np.ndarray, cfg: CodecConfig, q: LsfQuantizer | None) -> np.ndarray:
    T = len(lsf_idx)
    if not cfg.lpc.enabled:
        return np.ones((T, 1))
    lsf = q.dequantize(lsf_idx)
    return np.stack([lsf2poly(l) for l in lsf]) if T else np.zeros((0, cfg.lpc.order + 1))


def _analysis_filter(s: np.ndarray, A: np.ndarray, hop: int) -> np.ndarray:
    p = A.shape[1] - 1
    x = np.concatenate([np.zeros(p), s])
    e = np.zeros(len(s))
    for t in range(len(A)):
        lo, hi = t * hop, min((t + 1) * hop, len(s))
        if lo >= hi:
            break
        e[lo:hi] = np.convolve(x[lo:hi + p], A[t], "valid")
    return e


def _synthesis_filter(e: np.ndarray, A: np.ndarray, hop: int) -> np.ndarray:
    p = A.shape[1] - 1
    y = np.zeros(len(e))
    for t in range(len(A)):
        lo, hi = t * hop, min((t + 1) * hop, len(e))
        if lo >= hi:
            break
        if p == 0:
            y[lo:hi] = e[lo:hi]
            continue
        past = y[max(0, lo - p):lo][::-1]
        zi = lfiltic([1.0], A[t], past) if len(past) else np.zeros(p)
        y[lo:hi], _ = lfilter([1.0], A[t], e[lo:hi], zi=zi)
    return y


# --------------------------------------------------------------- input high-pass, pitch pre-filter

def highpass(s: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """``cfg.input``'s Butterworth high-pass (zero initial state); ``s`` unchanged when it is off."""
    ip = cfg.input
    if not ip.highpass_hz:
        return np.asarray(s, dtype=np.float64)
    sos = butter(ip.highpass_order, ip.highpass_hz, "highpass", fs=cfg.signal.sample_rate, output="sos")
    return sosfilt(sos, np.asarray(s, dtype=np.float64))


def _fade(cfg: CodecConfig, n: int) -> np.ndarray:
    """Weight of the current frame's comb over a frame's first ``n`` samples (sine-squared ramp
    over ``pitch.fade`` samples, then 1)."""
    f = cfg.pitch.fade
    w = np.ones(n)
    k = min(f, n)
    if k:
        w[:k] = np.sin(0.5 * np.pi * (np.arange(k) + 0.5) / f) ** 2
    return w


def pitch_analysis(x: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """Open-loop pitch lag and gain per frame for ``cfg.pitch`` (see ``PitchConfig``): (T, 2) int
    = (lag - lag_min, gain index); frame t covers samples [t*hop, (t+1)*hop) as the LPC filters
    do.  Frames without a voiced lag get gain index 0 and repeat the previous lag index (which
    Huffman codes to almost nothing)."""
    pc, hop = cfg.pitch, cfg.signal.hop
    n = len(x)
    T = num_frames(n, hop)
    out = np.zeros((T, 2), np.int64)
    lags = np.arange(pc.lag_min, pc.lag_max + 1)
    pad = np.concatenate([np.zeros(pc.lag_max), np.asarray(x, np.float64), np.zeros(hop)])
    taps = np.arange(hop)[None, :] - lags[:, None]
    qmax = (1 << pc.gain_bits) - 1
    prev = 0
    for t in range(T):
        lo = pc.lag_max + t * hop
        seg = pad[lo:lo + hop]
        e = float(seg @ seg)
        q = 0
        if e > 1e-9 * hop:
            past = pad[lo + taps]
            r = (past @ seg) / (np.sqrt((past * past).sum(1) * e) + 1e-12)
            best = float(r.max())
            if best >= pc.threshold:
                j = int(np.flatnonzero(r >= pc.octave * best)[0])   # the shortest near-best lag
                q = int(np.clip(round(pc.strength * min(1.0, float(r[j])) / pc.gain_step), 0, qmax))
                if q:
                    prev = j
        out[t] = (prev, q)
    return out


def _comb(x: np.ndarray, pitch: np.ndarray, cfg: CodecConfig, sign: float) -> np.ndarray:
    """x(n) + sign * [w g_t x(n - T_t) + (1 - w) g_{t-1} x(n - T_{t-1})] frame by frame; with
    ``sign`` = +1 the delayed samples are taken from the *output* (the inverse, IIR comb), in
    blocks of ``lag_min`` samples, none of which reaches back into itself."""
    pc, hop = cfg.pitch, cfg.signal.hop
    x = np.asarray(x, np.float64)
    n = len(x)
    y = x.copy()
    src = y if sign > 0 else x
    lag = pitch[:, 0] + pc.lag_min
    g = pitch[:, 1] * pc.gain_step
    w_full = _fade(cfg, hop)
    for t in range(min(len(pitch), -(-n // hop))):
        lo, hi = t * hop, min((t + 1) * hop, n)
        gp, lp = (g[t - 1], lag[t - 1]) if t else (0.0, lag[t])
        if g[t] == 0 and gp == 0:
            continue
        w = w_full[:hi - lo]
        step = pc.lag_min if sign > 0 else hi - lo
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            wa = w[a - lo:b - lo]
            idx = np.arange(a, b)
            cur = np.where(idx - lag[t] >= 0, src[np.maximum(idx - lag[t], 0)], 0.0)
            old = np.where(idx - lp >= 0, src[np.maximum(idx - lp, 0)], 0.0)
            y[a:b] = x[a:b] + sign * (wa * g[t] * cur + (1 - wa) * gp * old)
    return y


def pitch_prefilter(x: np.ndarray, pitch: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """The encoder's comb ``x(n) - g x(n - T)`` with the frames' (lag, gain) indices ``pitch``."""
    return _comb(x, pitch, cfg, -1.0)


def pitch_postcomb(y: np.ndarray, pitch: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """The decoder's inverse comb ``y(n) = y'(n) + g y(n - T)``: undoes :func:`pitch_prefilter`
    exactly (to rounding) on an uncoded signal."""
    return _comb(y, pitch, cfg, +1.0)


def encoder_input(s: np.ndarray, cfg: CodecConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """What the LPC analysis sees: the high-passed signal, pitch pre-filtered when the pre-filter
    is on in the signal domain; and the pitch indices of the signal-domain pre-filter (else None)."""
    s = highpass(s, cfg)
    if cfg.pitch.enabled and cfg.pitch.domain == "signal":
        pitch = pitch_analysis(s, cfg)
        return pitch_prefilter(s, pitch, cfg), pitch
    return s, None


# -------------------------------------------------------------------------------- transforms

def _mdct_basis(hop: int) -> np.ndarray:
    n = np.arange(2 * hop)
    k = np.arange(hop)
    win = np.sin(np.pi * (n + 0.5) / (2 * hop))
    basis = np.sqrt(2.0 / hop) * np.cos(np.pi / hop * (n[:, None] + 0.5 + hop / 2) * (k[None, :] + 0.5))
    return win[:, None] * basis  # (2*hop, hop), analysis = synthesis (orthogonal TDAC)


_BASES: dict = {}


def _blocks(e: np.ndarray, hop: int, T: int) -> np.ndarray:
    x = np.concatenate([np.zeros(hop), e, np.zeros((T + 1) * hop - len(e))])
    idx = np.arange(T)[:, None] * hop + np.arange(2 * hop)[None, :]
    return x[idx]


def _overlap_add(blocks: np.ndarray, hop: int, n: int) -> np.ndarray:
    T = len(blocks)
    y = np.zeros((T + 1) * hop)
    for t in range(T):
        y[t * hop:t * hop + 2 * hop] += blocks[t]
    return y[hop:hop + n]


def transform(e: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """Residual signal -> frames (T, D)."""
    hop = cfg.signal.hop
    T = num_frames(len(e), hop)
    blocks = _blocks(e, hop, T)
    if cfg.signal.transform == "mdct":
        if hop not in _BASES:
            _BASES[hop] = _mdct_basis(hop)
        return blocks @ _BASES[hop]
    win = np.sqrt(np.hanning(2 * hop + 1)[:-1])
    spec = np.fft.rfft(blocks * win, axis=1) / np.sqrt(hop)
    return np.concatenate([spec.real, spec.imag[:, 1:hop]], axis=1)


def inverse_transform(X: np.ndarray, cfg: CodecConfig, n: int) -> np.ndarray:
    hop = cfg.signal.hop
    if cfg.signal.transform == "mdct":
        if hop not in _BASES:
            _BASES[hop] = _mdct_basis(hop)
        blocks = X @ _BASES[hop].T
    else:
        win = np.sqrt(np.hanning(2 * hop + 1)[:-1])
        spec = X[:, :hop + 1] + 1j * np.concatenate(
            [np.zeros((len(X), 1)), X[:, hop + 1:], np.zeros((len(X), 1))], axis=1)
        blocks = np.fft.irfft(spec * np.sqrt(hop), n=2 * hop, axis=1) * win
    return _overlap_add(blocks, hop, n)


# ------------------------------------------------------------------------------------- gain

def gain_quantize(frames: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    g = cfg.gain
    rms = np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-12
    idx = np.round((20 * np.log10(rms) - g.min_db) / g.step_db)
    return np.clip(idx, 0, (1 << g.bits) - 1).astype(np.int64)


def gain_dequantize(idx: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    g = cfg.gain
    return 10.0 ** ((g.min_db + np.asarray(idx) * g.step_db) / 20)


# ------------------------------------------------------------------------------ whole chain

@dataclass
class Analysis:
    frames: np.ndarray      # (T, D) gain-normalized transform frames (network input)
    lsf_idx: np.ndarray     # (T, order) int
    gain_idx: np.ndarray    # (T,) int
    num_samples: int
    pitch: np.ndarray | None = None   # (T, 2) int (lag index, gain index) when cfg.pitch is on


def analyze(s: np.ndarray, cfg: CodecConfig, q: LsfQuantizer | None) -> Analysis:
    """Signal -> network input frames and side information: the input high-pass, the pitch
    pre-filter (signal domain), LPC analysis and quantization, the LPC residual, the pitch
    pre-filter (residual domain), the transform and the gain."""
    s, pitch = encoder_input(s, cfg)
    hop = cfg.signal.hop
    T = num_frames(len(s), hop)
    if cfg.lpc.enabled:
        lsf = np.stack([poly2lsf(a) for a in lpc_frames(s, cfg)])
        lsf_idx = q.quantize(lsf)
    else:
        lsf_idx = np.zeros((T, 0), dtype=np.int64)
    A = _filters_from_lsf_idx(lsf_idx, cfg, q)
    e = _analysis_filter(s, A, hop)
    if cfg.pitch.enabled and cfg.pitch.domain == "residual":
        pitch = pitch_analysis(e, cfg)
        e = pitch_prefilter(e, pitch, cfg)
    X = transform(e, cfg)
    gain_idx = gain_quantize(X, cfg)
    frames = X / gain_dequantize(gain_idx, cfg)[:, None]
    return Analysis(frames, lsf_idx, gain_idx, len(s), pitch)


def noise_fill(frames: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """Decoded gain-normalized MDCT frames (T, D) with ``cfg.noise_fill`` applied (see
    ``NoiseFillConfig``): in each frame, white noise of ``fraction * max(0, D - sum(y**2))``
    energy spread over the bins at and above ``start_hz``.  The noise comes from a generator
    seeded with 0 for every call, so a stream always decodes to the same samples."""
    nf = cfg.noise_fill
    y = np.asarray(frames, dtype=np.float64)
    if not nf.enabled or nf.fraction == 0 or cfg.signal.transform != "mdct" or len(y) == 0:
        return y
    D = y.shape[1]
    lo = min(D, int(np.ceil(nf.start_hz / (cfg.signal.sample_rate / 2) * D)))
    if lo >= D:
        return y
    missing = np.maximum(0.0, D - (y ** 2).sum(axis=1))
    noise = np.random.default_rng(0).standard_normal((len(y), D - lo))
    scale = np.sqrt(nf.fraction * missing / (noise ** 2).sum(axis=1))
    out = y.copy()
    out[:, lo:] += noise * scale[:, None]
    return out


def synthesize(frames: np.ndarray, lsf_idx: np.ndarray, gain_idx: np.ndarray, num_samples: int,
               cfg: CodecConfig, q: LsfQuantizer | None, stages: int | None = None,
               pitch: np.ndarray | None = None) -> np.ndarray:
    """Decoded (normalized) frames and side information -> speech: noise filling, gain, inverse
    transform, the inverse pitch comb (residual domain), LPC synthesis, the inverse pitch comb
    (signal domain; ``pitch``: the stream's (T, 2) lag and gain indices), then the formant and
    pitch postfilters.  ``stages``: how many stages
    the frames were decoded from (default all; or one number per frame), which picks the formant
    postfilter's ``num_gamma`` (``PostfilterConfig.num_gamma_for``)."""
    X = noise_fill(frames, cfg) * gain_dequantize(gain_idx, cfg)[:, None]
    e = inverse_transform(X, cfg, num_samples)
    comb = cfg.pitch.enabled and pitch is not None
    if comb and cfg.pitch.domain == "residual":
        e = pitch_postcomb(e, pitch, cfg)
    A = _filters_from_lsf_idx(lsf_idx, cfg, q)
    y = _synthesis_filter(e, A, cfg.signal.hop)
    if comb and cfg.pitch.domain == "signal":
        y = pitch_postcomb(y, pitch, cfg)
    if cfg.postfilter.enabled and cfg.lpc.enabled:
        y = postfilter(y, A, cfg, stages)
    if cfg.postfilter.enabled and cfg.postfilter.pitch_gain > 0:
        y = pitch_postfilter(y, cfg)
    return y


def postfilter(y: np.ndarray, A: np.ndarray, cfg: CodecConfig, stages: int | None = None) -> np.ndarray:
    """The formant postfilter of ``cfg.postfilter`` (see ``PostfilterConfig``) with per-frame LPC
    polynomials ``A`` (T, p+1), for a stream decoded with ``stages`` stages (default all; it picks
    ``num_gamma``); filter states carry across frames; each frame's output is scaled to the
    energy of its input."""
    pf, hop = cfg.postfilter, cfg.signal.hop
    if stages is not None and np.ndim(stages):      # per frame (a stream with damaged sections)
        gammas = [pf.num_gamma_for(int(k)) for k in np.asarray(stages)]
    else:
        gammas = [pf.num_gamma_for(cfg.network.stages if stages is None else int(stages))] * len(A)
    p = A.shape[1] - 1
    powers = np.arange(p + 1)
    z_num, z_den, last = np.zeros(p), np.zeros(p), 0.0
    out = np.zeros(len(y))
    for t in range(len(A)):
        lo, hi = t * hop, min((t + 1) * hop, len(y))
        if lo >= hi:
            break
        seg = y[lo:hi]
        v, z_num = lfilter(A[t] * gammas[t] ** powers, [1.0], seg, zi=z_num)
        w, z_den = lfilter([1.0], A[t] * pf.den_gamma ** powers, v, zi=z_den)
        if pf.tilt:
            w, last = w - pf.tilt * np.concatenate([[last], w[:-1]]), w[-1]
        e_in, e_out = float(np.dot(seg, seg)), float(np.dot(w, w))
        out[lo:hi] = w * np.sqrt(e_in / e_out) if e_out > 0 else w
    return out


def pitch_postfilter(y: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """The long-term (pitch) postfilter of ``cfg.postfilter`` (see ``PostfilterConfig``).

    Windows of 20 ms every 10 ms (sine-squared, so the windows sum to 1), each filtered as
    ``(w(n) + g w(n - T)) / (1 + g)`` with its own lag T in 2 to 20 ms (the lag of the
    largest normalized correlation r between the window and the decoded speech T samples
    earlier, zeros before the start) and ``g = pitch_gain * r`` where r > ``pitch_threshold``,
    else g = 0; the filtered windows are overlap-added.  Works on the decoded speech alone
    (no side information); same length out as in."""
    pf, sr = cfg.postfilter, cfg.signal.sample_rate
    n, hop = len(y), sr // 100
    win = 2 * hop
    lags = np.arange(sr // 500, sr // 50 + 1)                     # 2 .. 20 ms
    lo = int(lags[-1])
    # y after lo + hop zeros (the past of the first windows, and the first window's first half)
    # and before win + hop zeros (the last window's second half)
    pad = np.concatenate([np.zeros(lo + hop), y, np.zeros(win + hop)])
    out = np.zeros(len(pad))
    w = np.sin(np.pi * (np.arange(win) + 0.5) / win) ** 2
    taps = np.arange(win)[None, :] - lags[:, None]                # (lags, win) offsets of y(n - T)
    for start in range(lo, lo + hop + n, hop):                     # window start in pad
        seg = pad[start:start + win]
        e = float(seg @ seg)
        if e <= 0.0:
            continue
        past = pad[start + taps]
        r = (past @ seg) / (np.sqrt((past * past).sum(1) * e) + 1e-12)
        j = int(np.argmax(r))
        g = pf.pitch_gain * min(1.0, float(r[j])) if r[j] > pf.pitch_threshold else 0.0
        out[start:start + win] += w * (seg + g * past[j]) / (1.0 + g)
    return out[lo + hop:lo + hop + n]


def training_lsfs(signals: list[np.ndarray], cfg: CodecConfig) -> np.ndarray:
    """Unquantized LSFs of every frame of some signals (to fit an ``LsfQuantizer``), of what the
    LPC analysis sees (``encoder_input``)."""
    return np.concatenate([np.stack([poly2lsf(a) for a in lpc_frames(encoder_input(s, cfg)[0], cfg)])
                           for s in signals])
