"""Measuring a codec: encode and decode WAV files through real bitstreams (or run a reference
codec on them) and score PESQ-WB, STOI and SNR per file, per voice and on average.

The library behind ``cascade eval``, ``cascade report``, ``cascade ablate`` and the demo; it
takes explicit arguments and imports nothing from the CLI.  Heavy modules (PyTorch through the
codec, the metrics) are imported by the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

__all__ = ["curve_markdown", "search_name", "search_variants", "metric_row", "evaluate_files", "evaluate_curve",
           "summarize_rows", "wav_files", "evaluate_baseline"]


def search_name(passes: int, candidates) -> str:
    """``SearchConfig`` in words: "none", "1 x 6 bits", "2 x all bits", "1 x 24,8,4 bits"."""
    if not passes:
        return "none"
    if isinstance(candidates, (tuple, list)):
        return f"{passes} x {','.join(map(str, candidates))} bits"
    return f"{passes} x {candidates or 'all'} bits"


def search_variants(codec) -> list:
    """``[(passes, candidates, codec)]``: the codec with its config's search (what the encoder
    core computes), then, where they differ from it, copies with the software-only full search
    (2 passes over all bits) and with none; the demo and the report compare these."""
    import copy
    sc = codec.cfg.search
    core = (sc.passes, sc.candidates)
    out = [(*core, codec)]
    for search in ((2, 0), (0, 0)):
        if search != core:
            other = copy.copy(codec)          # same network, integer model and entropy coders
            other.cfg = codec.cfg.replace(search={"passes": search[0], "candidates": search[1]})
            out.append((*search, other))
    return out


def metric_row(f, x, y, sr: int, nbytes: float) -> dict:
    """One file's row of an evaluation: PESQ-WB, STOI, SNR (``metrics.measure``), the coded size
    and the rate it makes."""
    from .metrics import measure
    m = measure(x, y, sr)
    secs = len(x) / sr
    m.update(file=str(f), bytes=nbytes, seconds=secs, kbps=8 * nbytes / secs / 1000)
    return m


def evaluate_files(codec, files, arith="float", stages=None, progress=None, keep_dir=None, search=None):
    """Encode and decode each file through a real bitstream; per-file metrics and the mean.
    ``search``: code search passes (default: the codec's ``SearchConfig``)."""
    from .data import load_wav, write_wav
    sr = codec.cfg.signal.sample_rate
    rows = []
    task = progress.add_task(f"eval K={stages or 'all'} {arith}", total=len(files)) if progress else None
    for f in files:
        x = load_wav(f, sr)
        data = codec.encode_bytes(x, arith, stages, search)
        y, _ = codec.decode_bytes(data, arith)
        rows.append(metric_row(f, x, y, sr, len(data)))
        if keep_dir is not None:
            write_wav(Path(keep_dir) / (Path(f).stem + f"_K{stages}_{arith}.wav"), y, sr)
        if progress:
            progress.update(task, advance=1)
    return {"files": rows, **summarize_rows(rows), "stages": stages, "arith": arith}


def evaluate_curve(codec, files, arith="fixed", progress=None) -> dict:
    """Every K at once: each file is encoded once with all stages and cut to K stages with
    ``truncate_stream`` (which gives the very bytes an encoding with K stages gives), then decoded
    and measured.  ``{"curve": [{"stages": K, "mean": ..., "voices": ..., "voice_mean": ...}],
    "files": {K: rows}}``."""
    from .bitstream import truncate_stream
    from .data import load_wav
    sr = codec.cfg.signal.sample_rate
    N = codec.cfg.network.stages
    rows = {k: [] for k in range(1, N + 1)}
    task = progress.add_task(f"eval K=1..{N} {arith}", total=len(files)) if progress else None
    for f in files:
        x = load_wav(f, sr)
        full = codec.encode_bytes(x, arith)
        for k in range(1, N + 1):
            data = full if k == N else truncate_stream(full, k, codec.cfg)
            y, _ = codec.decode_bytes(data, arith)
            rows[k].append(metric_row(f, x, y, sr, len(data)))
        if progress:
            progress.update(task, advance=1)
    curve = [{"stages": k, **summarize_rows(rows[k])} for k in rows]
    return {"curve": curve, "files": {str(k): r for k, r in rows.items()}, "arith": arith}


def summarize_rows(rows: list[dict]) -> dict:
    """Per-file metric rows -> ``{"mean": ..., "voices": {voice: mean}, "voice_mean": ...}``.

    A voice is the folder a file lies in (``data.voice_of``: ``data/test/june`` -> ``june``).
    ``mean`` averages over files; ``voice_mean`` averages the voices' means, each voice weighing
    the same however many files it has (the figure reported for a test set of several voices)."""
    import numpy as np
    from .data import voice_of
    keys = ["pesq_wb", "stoi", "snr_db", "seg_snr_db"]

    def mean_of(rs):
        m = {k: float(np.nanmean([r[k] for r in rs])) for k in keys}
        secs = sum(r["seconds"] for r in rs)
        m["kbps"] = 8 * sum(r["bytes"] for r in rs) / secs / 1000
        m["seconds"] = secs
        m["files"] = len(rs)
        return m
    voices: dict[str, list] = {}
    for r in rows:
        voices.setdefault(voice_of(r["file"]), []).append(r)
    per = {v: mean_of(rs) for v, rs in sorted(voices.items())}
    vmean = {k: float(np.mean([m[k] for m in per.values()])) for k in keys + ["kbps"]}
    return {"mean": mean_of(rows), "voices": per, "voice_mean": vmean}


def wav_files(folder):
    """The WAV files under ``folder`` (recursively, sorted); a one-line error when it is no folder
    or holds none."""
    from .data import list_wavs
    p = Path(folder)
    if not p.is_dir():
        raise UserError(f"{folder} is not a folder")
    files = list_wavs(p)
    if not files:
        raise UserError(f"no .wav files in {folder}")
    return files


def evaluate_baseline(name: str, kbps: float | None, files, progress=None) -> dict:
    """``evaluate_files`` for a reference codec (Opus, Speex, G.722: ``model.baselines``), with
    the rate measured from its encoded file sizes (container included)."""
    from .baselines import BaselineError, run_baseline
    from .data import load_wav
    rows = []
    task = progress.add_task(f"eval {name} {kbps or ''}", total=len(files)) if progress else None
    for f in files:
        x = load_wav(f, 16000)
        try:
            y, actual = run_baseline(name, x, 16000, kbps)
        except (BaselineError, ValueError) as exc:
            raise UserError(f"{name}: {exc}") from None
        rows.append(metric_row(f, x, y, 16000, actual * (len(x) / 16000) * 1000 / 8))
        if progress:
            progress.update(task, advance=1)
    return {"files": rows, **summarize_rows(rows), "baseline": name, "target_kbps": kbps}


def curve_markdown(res: dict) -> str:
    """The per-voice table of an :func:`evaluate_curve` result (as ``cascade eval --curve
    --markdown`` writes it): per K the bitrate over all files, PESQ-WB per voice, the voice mean
    and its STOI."""
    voices = sorted(res["curve"][0]["voices"])
    lines = ["| K | kbps (all files) | " + " | ".join(f"PESQ-WB {v}" for v in voices)
             + " | voice mean | STOI voice mean |", "|" + "---|" * (len(voices) + 4)]
    for row in res["curve"]:
        vm = row["voice_mean"]
        lines.append(f"| {row['stages']} | {row['mean']['kbps']:.2f} | "
                     + " | ".join(f"{row['voices'][v]['pesq_wb']:.3f}" for v in voices)
                     + f" | **{vm['pesq_wb']:.3f}** | {vm['stoi']:.3f} |")
    return "\n".join(lines) + "\n"

