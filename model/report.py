"""Rate/quality results: measuring the reference codecs, a plot and a Markdown table.

A *point* is a dict describing one system at one rate, averaged over a set of files::

    {"system": "opus", "label": "Opus 16k", "kbps": 17.7, "pesq_wb": 4.2, "stoi": 0.98, ...}

Required keys: ``system`` (or ``label``), ``kbps``, ``pesq_wb``, ``stoi``.  Optional:
``label``, ``target_kbps``, ``payload_kbps``, ``snr_db``, ``seg_snr_db``, ``files``,
``nan_files``.  The cascade codec's own points (made by the lead's evaluation code) use the same
keys, so one plot/table holds everything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["rate_quality_plot", "markdown_table", "baseline_points", "DEFAULT_SPEEX_KBPS"]

#: Requests that land on distinct Speex wideband modes (7.75, 9.8, 12.8, 16.8, 20.6, 23.8, 27.8).
DEFAULT_SPEEX_KBPS = (8, 10, 13, 17, 21, 24, 28)


def _system(p: dict) -> str:
    return str(p.get("system") or p.get("label") or "?")


def rate_quality_plot(points: list[dict], path, title: str | None = None) -> Path:
    """PESQ-WB vs kbps and STOI vs kbps, one line with markers per system.

    Parameters
    ----------
    points : list of dict
        Each with ``system`` (or ``label``), ``kbps``, ``pesq_wb``, ``stoi``.  Points of one
        system are joined in order of kbps; nan values are left out.
    path : str or Path
        Image file (format from the suffix, e.g. ``.png``, ``.svg``); parent folders created.
    title : str, optional

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    systems: dict[str, list[dict]] = {}
    for p in points:
        systems.setdefault(_system(p), []).append(p)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*Xh<>"
    for i, (name, pts) in enumerate(systems.items()):
        pts = sorted(pts, key=lambda p: float(p["kbps"]))
        for ax, key in zip(axes, ("pesq_wb", "stoi")):
            xy = [(float(p["kbps"]), float(p[key])) for p in pts
                  if p.get(key) is not None and math.isfinite(float(p[key]))]
            if not xy:
                continue
            xs, ys = zip(*xy)
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=name)
    axes[0].set_ylabel("PESQ-WB (MOS-LQO)")
    axes[1].set_ylabel("STOI")
    for ax in axes:
        ax.set_xlabel("bit rate (kbps)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from .files import write_file
    write_file(path, lambda f: fig.savefig(f, format="png", dpi=120), force=True)
    plt.close(fig)
    return path


def _fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{nd}f}"


def markdown_table(points: list[dict]) -> str:
    """A Markdown table of points, grouped by system and sorted by kbps.

    Parameters
    ----------
    points : list of dict

    Returns
    -------
    str
        Columns: system, label, target kbps, kbps, payload kbps, PESQ-WB, STOI, SNR dB,
        segSNR dB, files; ``-`` where a point lacks a value.
    """
    head = ("| system | label | target kbps | kbps | payload kbps | PESQ-WB | STOI | SNR dB "
            "| segSNR dB | files |")
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {s: i for i, s in enumerate(dict.fromkeys(_system(p) for p in points))}
    for p in sorted(points, key=lambda p: (order[_system(p)], float(p["kbps"]))):
        files = p.get("files", "-")
        if p.get("nan_files"):
            files = f"{files} ({p['nan_files']} nan)"
        rows.append(
            f"| {_system(p)} | {p.get('label', _system(p))} | {_fmt(p.get('target_kbps'), 1)} "
            f"| {_fmt(p['kbps'])} | {_fmt(p.get('payload_kbps'))} | {_fmt(p.get('pesq_wb'))} "
            f"| {_fmt(p.get('stoi'), 3)} | {_fmt(p.get('snr_db'), 1)} "
            f"| {_fmt(p.get('seg_snr_db'), 1)} | {files} |")
    return "\n".join(rows) + "\n"


def baseline_points(test_files: list[Path], opus_kbps=(8, 12, 14, 16, 18, 24, 32),
                    speex_kbps=DEFAULT_SPEEX_KBPS, g722: bool = True, sample_rate: int = 16000,
                    progress: bool = True) -> list[dict]:
    """Measure the reference codecs on files: one point per codec and rate.

    Each file is loaded with :func:`model.data.load_wav` (``resample=True``), coded with
    :func:`model.baselines.encode_decode` and scored with :func:`model.metrics.measure`.
    Quality figures are the mean over files (nan-aware; ``nan_files`` counts files where PESQ
    or STOI was nan).  ``kbps`` and ``payload_kbps`` are total bits over total seconds of all
    files.  Codecs that :func:`model.baselines.available_baselines` reports missing are
    skipped.

    Parameters
    ----------
    test_files : list of Path
    opus_kbps : sequence of float
        Opus target rates; empty to skip Opus.
    speex_kbps : sequence of float
        Speex requested rates (each maps to the highest wideband mode not above it); empty to
        skip Speex.
    g722 : bool
        Include G.722 at 64 kbps.
    sample_rate : int
        Rate the files are loaded at and measured at.
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    list of dict
        Points with ``system``, ``label``, ``target_kbps``, ``kbps``, ``payload_kbps``,
        ``pesq_wb``, ``stoi``, ``snr_db``, ``seg_snr_db``, ``delay`` (median samples),
        ``files``, ``nan_files``.
    """
    import warnings

    from model.baselines import available_baselines, encode_decode
    from model.data import load_wav
    from model.metrics import MetricWarning, measure

    files = [Path(f) for f in test_files]
    if not files:
        raise ValueError("baseline_points needs at least one file")
    avail = available_baselines()
    jobs = []
    if avail["opus"]:
        jobs += [("opus", f"Opus {k:g}k", k) for k in opus_kbps]
    if avail["speex"]:
        jobs += [("speex", f"Speex {k:g}k", k) for k in speex_kbps]
    if avail["g722"] and g722:
        jobs += [("g722", "G.722 64k", 64)]
    signals = [load_wav(f, sample_rate, resample=True) for f in files]
    seconds = sum(len(x) for x in signals) / sample_rate
    points = []

    def _work(advance):
        for system, label, k in jobs:
            ms, bits, pbits, delays, nan_files = [], 0.0, 0.0, [], 0
            for x in signals:
                r = encode_decode(system, x, sample_rate, k)
                sec = len(x) / sample_rate
                bits += r.actual_kbps * sec
                pbits += r.payload_kbps * sec
                delays.append(r.delay)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MetricWarning)
                    m = measure(x, r.decoded, sample_rate)
                nan_files += int(math.isnan(m["pesq_wb"]) or math.isnan(m["stoi"]))
                ms.append(m)
                advance()
            pt = {"system": system, "label": label, "target_kbps": float(k),
                  "kbps": bits / seconds, "payload_kbps": pbits / seconds}
            for key in ("pesq_wb", "stoi", "snr_db", "seg_snr_db"):
                v = np.array([m[key] for m in ms], dtype=np.float64)
                v = v[np.isfinite(v)]
                pt[key] = float(v.mean()) if len(v) else float("nan")
            pt.update(delay=int(np.median(delays)), files=len(files), nan_files=nan_files)
            points.append(pt)

    if progress:
        from rich.progress import Progress
        with Progress(transient=False) as prog:
            task = prog.add_task("baselines", total=len(jobs) * len(signals))
            _work(lambda: prog.advance(task))
    else:
        _work(lambda: None)
    return points
