"""Reference codecs run on the same files as the cascade codec: Opus, Speex, G.722.

* ``opus``: ``opusenc``/``opusdec`` (opus-tools), ``--speech`` (low-bitrate tuning for speech),
  unconstrained VBR at ``--bitrate``, 20 ms frames, complexity 10; decoded with
  ``opusdec --rate 16000``.  Opus codes 16 kHz input in its wideband SILK or hybrid modes.
* ``speex``: ffmpeg's ``libspeex`` encoder, wideband mode (16 kHz), CBR: libspeex picks the
  highest wideband mode whose rate does not exceed the requested one (modes 3.95, 5.75, 7.75,
  9.8, 12.8, 16.8, 20.6, 23.8, 27.8, 34.2, 42.2 kbps), Ogg/Speex container; decoded by ffmpeg
  with the libspeex (reference) decoder when present, else ffmpeg's native Speex decoder.
* ``g722``: ffmpeg's G.722 (SB-ADPCM) at 64 kbps, raw G.722 bitstream (no container).

Rates.  ``actual_kbps`` is measured from the encoded file: ``8 * bytes / seconds``.  For Opus
and Speex the file is Ogg: that size includes the Ogg page headers (27 bytes + segment table per
page, about 1 page per second of Opus) and the stream headers (OpusHead/OpusTags, Speex
header/comment: a few hundred bytes, 1-2 kbps on a 2 s clip).  :func:`encode_decode` also
reports ``payload_kbps``, the codec packets alone (Ogg pages parsed, header packets left out),
which is the figure comparable to a raw codec bitstream such as the cascade codec's.

Alignment.  Decoders add delay (``opusdec`` removes Opus' pre-skip itself, ffmpeg's G.722
and Speex decoders do not remove theirs).  :func:`align` finds the integer lag in
[-max_lag, +max_lag] (default 60 ms) that maximizes the cross-correlation of the decoded and
input signals (FFT, :func:`scipy.signal.correlate`), shifts the decoded signal by it and
zero-pads/trims it to the input's length, so that waveform metrics (SNR) and PESQ/STOI see
aligned signals.  The lag found is reported as ``delay``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import correlate

from model.data import resample, write_wav

from .errors import CascadeError

__all__ = ["BASELINES", "BaselineResult", "available_baselines", "run_baseline",
           "encode_decode", "align", "ogg_payload_bytes", "BaselineError"]

BASELINES = ("opus", "speex", "g722")
_SR = 16000  # all three run on 16 kHz (wideband) audio


class BaselineError(CascadeError, RuntimeError):
    """A reference codec is missing or failed; the message is one line."""


@dataclass
class BaselineResult:
    """One encode/decode.

    Attributes
    ----------
    decoded : np.ndarray
        Decoded signal at the input's rate, aligned to and as long as the input.
    actual_kbps : float
        ``8 * encoded file bytes / input seconds / 1000`` (container included).
    payload_kbps : float
        Codec packets only (Ogg page and stream headers left out); equals ``actual_kbps`` for
        G.722.
    delay : int
        Lag in samples (at 16 kHz) removed by :func:`align`.
    """
    decoded: np.ndarray
    actual_kbps: float
    payload_kbps: float
    delay: int


@lru_cache(maxsize=1)
def _ffmpeg_codecs() -> tuple[str, str]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return "", ""
    enc = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    dec = subprocess.run([exe, "-hide_banner", "-decoders"], capture_output=True, text=True).stdout
    return enc, dec


def _has_codec(listing: str, name: str) -> bool:
    return any(len(ln.split()) > 1 and ln.split()[1] == name for ln in listing.splitlines())


def available_baselines() -> dict[str, bool]:
    """Which reference codecs this machine can run.

    Returns
    -------
    dict
        ``{"opus": bool, "speex": bool, "g722": bool}``: opus needs ``opusenc`` and ``opusdec``;
        speex needs ffmpeg with the ``libspeex`` encoder and a Speex decoder; g722 needs ffmpeg
        with the ``g722`` encoder and decoder.
    """
    enc, dec = _ffmpeg_codecs()
    return {
        "opus": shutil.which("opusenc") is not None and shutil.which("opusdec") is not None,
        "speex": _has_codec(enc, "libspeex") and (_has_codec(dec, "libspeex")
                                                  or _has_codec(dec, "speex")),
        "g722": _has_codec(enc, "g722") and _has_codec(dec, "g722"),
    }


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        err = " ".join((r.stderr or r.stdout).split())[-300:]
        raise BaselineError(f"{Path(cmd[0]).name} failed (exit {r.returncode}): {err}")


def ogg_payload_bytes(path) -> int:
    """Bytes of codec packets in an Ogg file, without page headers and the two header packets.

    Parameters
    ----------
    path : str or Path
        An Ogg Opus or Ogg Speex file with one logical stream.

    Returns
    -------
    int
        Sum of the sizes of the packets after the first two (identification and comment
        header), i.e. the audio packets.
    """
    data = Path(path).read_bytes()
    pos, packets, cur = 0, [], 0
    while pos + 27 <= len(data):
        if data[pos:pos + 4] != b"OggS":
            raise BaselineError(f"{path}: not an Ogg file (no capture pattern at byte {pos})")
        nseg = data[pos + 26]
        lacing = data[pos + 27: pos + 27 + nseg]
        for lv in lacing:
            cur += lv
            if lv < 255:
                packets.append(cur)
                cur = 0
        pos += 27 + nseg + sum(lacing)
    if cur:
        packets.append(cur)
    return int(sum(packets[2:]))


def align(ref: np.ndarray, deg: np.ndarray, max_lag: int = 960) -> tuple[np.ndarray, int]:
    """Delay-compensate ``deg`` against ``ref`` by cross-correlation.

    Parameters
    ----------
    ref, deg : np.ndarray
        1-D signals at the same rate.
    max_lag : int
        Largest lag searched, in samples, both directions.

    Returns
    -------
    (np.ndarray, int)
        ``deg`` shifted by the best lag ``d`` (``aligned[n] = deg[n + d]``), zero-padded or
        trimmed to ``len(ref)``; and ``d``.  ``d = 0`` when either signal is all zeros.
    """
    ref = np.asarray(ref, dtype=np.float64)
    deg = np.asarray(deg, dtype=np.float64)
    d = 0
    if np.any(ref) and np.any(deg):
        c = correlate(deg, ref, mode="full", method="fft")  # index k <-> lag k - (len(ref) - 1)
        zero = len(ref) - 1
        lo, hi = max(0, zero - max_lag), min(len(c), zero + max_lag + 1)
        d = int(np.argmax(c[lo:hi]) + lo - zero)
    out = np.zeros(len(ref))
    if d >= 0:
        seg = deg[d:d + len(ref)]
        out[:len(seg)] = seg
    else:
        seg = deg[: len(ref) + d]
        out[-d:-d + len(seg)] = seg
    return out, d


def encode_decode(name: str, x, sr: int = 16000, kbps: float | None = None) -> BaselineResult:
    """Encode and decode ``x`` with a reference codec in a temporary folder.

    Parameters
    ----------
    name : {"opus", "speex", "g722"}
    x : array_like
        1-D signal in [-1, 1].  Resampled to 16 kHz for the codec and back to ``sr``.
    sr : int
        Rate of ``x`` and of the result.
    kbps : float, optional
        Target rate.  Opus: 6-256 (default 16).  Speex: the highest wideband mode not above it
        (default 16.8).  G.722: only 64 (default; anything else is a ValueError).

    Returns
    -------
    BaselineResult

    Raises
    ------
    ValueError
        Unknown codec, bad rate, or empty / non 1-D input.
    BaselineError
        The codec is not installed or a tool failed.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    if not available_baselines()[name]:
        raise BaselineError(f"baseline {name!r} is not available on this machine")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"baseline input must be a non-empty 1-D signal, got shape {x.shape}")
    x16 = resample(x, sr, _SR)
    seconds = len(x16) / _SR
    with tempfile.TemporaryDirectory(prefix=f"baseline_{name}_") as tmp:
        t = Path(tmp)
        src = write_wav(t / "in.wav", x16, _SR)
        out = t / "out.wav"
        ff = [shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
        if name == "opus":
            kb = 16.0 if kbps is None else float(kbps)
            if not 6 <= kb <= 256:
                raise ValueError(f"opus bitrate must be 6..256 kbps, got {kb}")
            enc = t / "enc.opus"
            _run(["opusenc", "--quiet", "--speech", "--bitrate", f"{kb:g}", "--vbr",
                  "--framesize", "20", "--comp", "10", str(src), str(enc)])
            _run(["opusdec", "--quiet", "--rate", str(_SR), str(enc), str(out)])
            payload = ogg_payload_bytes(enc)
        elif name == "speex":
            kb = 16.8 if kbps is None else float(kbps)
            if not 3.95 <= kb <= 42.2:
                raise ValueError(f"speex wideband bitrate must be 3.95..42.2 kbps, got {kb}")
            enc = t / "enc.spx"
            _run(ff + ["-i", str(src), "-c:a", "libspeex", "-b:a", f"{int(kb * 1000)}",
                       "-ar", str(_SR), "-ac", "1", str(enc)])
            # Prefer the reference decoder (libspeex) over ffmpeg's native one: on speech it
            # scores slightly higher (PESQ-WB +0.08, SNR +2.5 dB at 23.8 kbps in our check).
            dec = ["-c:a", "libspeex"] if _has_codec(_ffmpeg_codecs()[1], "libspeex") else []
            _run(ff + dec + ["-i", str(enc), "-ar", str(_SR), "-ac", "1", "-c:a", "pcm_s16le",
                             str(out)])
            payload = ogg_payload_bytes(enc)
        else:
            if kbps is not None and float(kbps) != 64:
                raise ValueError(f"g722 runs at 64 kbps only (ffmpeg encoder), got {kbps}")
            enc = t / "enc.g722"
            _run(ff + ["-i", str(src), "-c:a", "g722", "-ar", str(_SR), "-f", "g722", str(enc)])
            _run(ff + ["-f", "g722", "-i", str(enc), "-ar", str(_SR), "-ac", "1",
                       "-c:a", "pcm_s16le", str(out)])
            payload = enc.stat().st_size
        size = enc.stat().st_size
        y, ysr = sf.read(str(out), dtype="float64", always_2d=True)
    y = resample(y.mean(axis=1), ysr, _SR)
    y, delay = align(x16, y)
    if sr != _SR:
        y = resample(y, _SR, sr)[: len(x)]
        y = np.pad(y, (0, len(x) - len(y)))
    return BaselineResult(decoded=y, actual_kbps=8 * size / seconds / 1000,
                          payload_kbps=8 * payload / seconds / 1000, delay=delay)


def run_baseline(name: str, x, sr: int = 16000, kbps: float | None = None
                 ) -> tuple[np.ndarray, float]:
    """Encode and decode ``x`` with a reference codec.

    Parameters
    ----------
    name : {"opus", "speex", "g722"}
    x : array_like
        1-D signal in [-1, 1] at ``sr``.
    sr : int
    kbps : float, optional
        Target rate (see :func:`encode_decode`).

    Returns
    -------
    (np.ndarray, float)
        Decoded signal (aligned to ``x``, same length and rate) and the actual rate in kbps
        measured from the encoded file's size (Ogg container included for opus/speex).

    Raises
    ------
    ValueError, BaselineError
        See :func:`encode_decode`.
    """
    r = encode_decode(name, x, sr, kbps)
    return r.decoded, r.actual_kbps
