"""Objective speech quality: PESQ-WB, STOI, SNR and segmental SNR.

Every function takes a reference and a degraded signal (1-D, float, same rate), trims both to
their common length (a codec's output is often a few samples longer or shorter) and never raises
for a signal the metric cannot judge (too short, silent): it returns ``nan``, issues a
:class:`MetricWarning` with the reason and, if the caller passes a list as ``reasons``, appends
the reason to it.  Bad arguments (not 1-D, empty) still raise ``ValueError``.

The signals must be time-aligned: these metrics do not search for a delay (see
``model.baselines.align`` for codecs that add one).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["MetricWarning", "pesq_wb", "stoi", "snr_db", "seg_snr_db", "measure", "common_length"]


class MetricWarning(UserWarning):
    """A metric returned nan; the message says why."""


def _fail(name: str, reason: str, reasons: list | None) -> float:
    msg = f"{name}: {reason}"
    if reasons is not None:
        reasons.append(msg)
    warnings.warn(msg, MetricWarning, stacklevel=3)
    return float("nan")


def common_length(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as 1-D float64, trimmed to the shorter length.

    Parameters
    ----------
    ref, deg : array_like
        1-D signals.

    Returns
    -------
    (np.ndarray, np.ndarray)

    Raises
    ------
    ValueError
        If either is not 1-D or the common length is 0.
    """
    r = np.asarray(ref, dtype=np.float64)
    d = np.asarray(deg, dtype=np.float64)
    if r.ndim != 1 or d.ndim != 1:
        raise ValueError(f"metrics need 1-D signals, got shapes {r.shape} and {d.shape}")
    n = min(len(r), len(d))
    if n == 0:
        raise ValueError("metrics need non-empty signals")
    return r[:n], d[:n]


def pesq_wb(ref, deg, sr: int = 16000, reasons: list | None = None) -> float:
    """Wideband PESQ (ITU-T P.862.2) as MOS-LQO, about 1.0 (bad) to 4.64 (transparent).

    Parameters
    ----------
    ref, deg : array_like
        Reference and degraded signal, time-aligned; trimmed to the common length.
    sr : int
        Sample rate.  P.862.2 is defined at 16 kHz; other rates are resampled to 16 kHz.
    reasons : list, optional
        Receives the reason string when the result is nan.

    Returns
    -------
    float
        MOS-LQO, or nan when PESQ cannot judge the pair (no utterance found in a silent or very
        short signal, buffer too short, non-finite samples).
    """
    from pesq import pesq, PesqError  # imported here: a C extension, optional for the rest

    r, d = common_length(ref, deg)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        return _fail("pesq_wb", "non-finite samples", reasons)
    if sr != 16000:
        from model.data import resample
        r, d = resample(r, sr, 16000), resample(d, sr, 16000)
    if len(r) < 16000 // 4:
        return _fail("pesq_wb", f"signal too short ({len(r) / 16000:.3f} s, need >= 0.25 s)",
                     reasons)
    if not np.any(r) or not np.any(d):
        return _fail("pesq_wb", "reference or degraded signal is all zeros", reasons)
    try:
        v = float(pesq(16000, r, d, "wb"))
    except PesqError as exc:
        return _fail("pesq_wb", f"{type(exc).__name__}: {' '.join(str(exc).split())}", reasons)
    except (ValueError, RuntimeError) as exc:
        return _fail("pesq_wb", f"PESQ failed: {' '.join(str(exc).split())}", reasons)
    if not math.isfinite(v):
        return _fail("pesq_wb", "PESQ returned a non-finite value", reasons)
    return v


def stoi(ref, deg, sr: int = 16000, extended: bool = False,
         reasons: list | None = None) -> float:
    """Short-time objective intelligibility (Taal et al. 2011), 0..1, via ``pystoi``.

    Parameters
    ----------
    ref, deg : array_like
        Time-aligned signals; trimmed to the common length.
    sr : int
        Sample rate (pystoi resamples to 10 kHz internally).
    extended : bool
        ESTOI (Jensen & Taal 2016) instead of STOI.
    reasons : list, optional
        Receives the reason string when the result is nan.

    Returns
    -------
    float
        STOI, or nan when fewer than 30 non-silent 25.6 ms frames remain (pystoi would return
        1e-5 with a warning) or the samples are not finite.
    """
    from pystoi import stoi as _stoi

    r, d = common_length(ref, deg)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        return _fail("stoi", "non-finite samples", reasons)
    if not np.any(r):
        return _fail("stoi", "reference is all zeros", reasons)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            v = float(_stoi(r, d, sr, extended=extended))
        except (ValueError, IndexError) as exc:
            return _fail("stoi", f"pystoi failed: {' '.join(str(exc).split())}", reasons)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return _fail("stoi", "fewer than 30 non-silent frames (signal too short or silent)",
                     reasons)
    if not math.isfinite(v):
        return _fail("stoi", "pystoi returned a non-finite value", reasons)
    return v


def snr_db(ref, deg, reasons: list | None = None) -> float:
    """Signal-to-noise ratio ``10 log10(sum ref^2 / sum (ref - deg)^2)`` in dB.

    Parameters
    ----------
    ref, deg : array_like
        Time-aligned signals; trimmed to the common length.
    reasons : list, optional
        Receives the reason string when the result is nan.

    Returns
    -------
    float
        dB; ``inf`` for identical signals, nan for an all-zero reference.
    """
    r, d = common_length(ref, deg)
    ps = float(np.dot(r, r))
    pn = float(np.dot(r - d, r - d))
    if ps == 0.0:
        return _fail("snr_db", "reference is all zeros", reasons)
    if pn == 0.0:
        return float("inf")
    return 10.0 * math.log10(ps / pn)


def seg_snr_db(ref, deg, sr: int = 16000, frame_ms: float = 20.0, lo_db: float = -10.0,
               hi_db: float = 35.0, silence_db: float = -40.0,
               reasons: list | None = None) -> float:
    """Segmental SNR: mean over frames of the per-frame SNR clamped to [lo_db, hi_db].

    Non-overlapping frames of ``frame_ms``; frames whose reference energy is more than
    ``-silence_db`` dB below the loudest frame are left out (silence would otherwise pull the
    mean to ``lo_db``).  Clamping as in Quackenbush et al. 1988 / Hu & Loizou 2008.

    Parameters
    ----------
    ref, deg : array_like
        Time-aligned signals; trimmed to the common length.
    sr : int
    frame_ms, lo_db, hi_db, silence_db : float
    reasons : list, optional
        Receives the reason string when the result is nan.

    Returns
    -------
    float
        dB, or nan when no frame is long enough / all frames are silent.
    """
    r, d = common_length(ref, deg)
    n = int(round(sr * frame_ms / 1000))
    m = len(r) // n
    if m == 0:
        return _fail("seg_snr_db", f"signal shorter than one {frame_ms:g} ms frame", reasons)
    R = r[: m * n].reshape(m, n)
    E = (r[: m * n] - d[: m * n]).reshape(m, n)
    ps = np.sum(R * R, axis=1)
    pn = np.sum(E * E, axis=1)
    if ps.max() == 0.0:
        return _fail("seg_snr_db", "reference is all zeros", reasons)
    keep = ps > ps.max() * 10 ** (silence_db / 10)
    with np.errstate(divide="ignore"):
        seg = 10.0 * np.log10(ps[keep] / np.maximum(pn[keep], 1e-300))
    return float(np.mean(np.clip(seg, lo_db, hi_db)))


def measure(ref, deg, sr: int = 16000, reasons: list | None = None) -> dict:
    """All metrics of one reference/degraded pair.

    Parameters
    ----------
    ref, deg : array_like
        Time-aligned 1-D signals; trimmed to the common length.
    sr : int
    reasons : list, optional
        Receives a reason string for each metric that is nan.

    Returns
    -------
    dict
        ``{"pesq_wb": float, "stoi": float, "snr_db": float, "seg_snr_db": float}``.
    """
    return {
        "pesq_wb": pesq_wb(ref, deg, sr, reasons=reasons),
        "stoi": stoi(ref, deg, sr, reasons=reasons),
        "snr_db": snr_db(ref, deg, reasons=reasons),
        "seg_snr_db": seg_snr_db(ref, deg, sr, reasons=reasons),
    }
