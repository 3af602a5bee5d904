"""What channel damage costs: PESQ-WB of a damaged stream's decode against the clean decode
(issue 19 item 4; the *Damage* section of ``cascade report``).

Two channels, both applied to the stream's bytes after its header (the header is taken as
intact: without it nothing can be decoded):

* **damaged packets**: a share ``p`` of all packets of all the test streams together (``p *
  packets`` of them, the fraction drawn: floor(p * packets) plus one more with the fractional
  part's probability; drawn without replacement) each get one bit flipped at a uniformly random
  bit of the packet;
* **random bit errors**: every bit after the header flips independently with probability ``ber``.

Each condition is drawn with ``seeds`` seeds; per seed the score is the mean over files of
PESQ-WB (``model.metrics.pesq_wb``) of the damaged decode against the clean decode of the same
stream (so the codec's own coding loss is not counted), and the table gives the mean over seeds
and its standard error.  A stream the reader refuses scores 1.0 and is counted (``refused``).
The files, seeds and channels do not depend on the layout, so two layouts measured with
:func:`measure_damage` are compared on the same damage; ``cascade report --damage-only``
measures both side-information modes of the current format (``side_mode="compact"``, the
default of ``Codec.encode_bytes``, and ``"robust"``), a column each, decoded with the codec's
concealment (``Codec.conceal``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

__all__ = ["DAMAGE_FILES", "PACKET_SHARES", "BIT_ERROR_RATES", "damage_packets", "damage_bits",
           "measure_damage", "damage_markdown"]

#: The test files (under the test folder ``data/test``): two June prompts and two librivox
#: clips, 43.6 s, two voices.
DAMAGE_FILES = ("june/fr_vm-options.wav", "june/fr_dir-intro.wav",
                "librivox/librivox_sense_and_sensibility_01_austen_64kb-0870.wav",
                "librivox/librivox_sense_and_sensibility_01_austen_64kb-0890.wav")
PACKET_SHARES = (0.01, 0.05, 0.10)
BIT_ERROR_RATES = (1e-5, 1e-4, 1e-3)


def damage_packets(streams: list[bytes], spans: list[list[tuple[int, int]]], share: float,
                   rng: np.random.Generator) -> list[bytes]:
    """Flip one random bit in each of ``share * packets`` packets (see the module) drawn from all
    ``streams`` together (``spans``: each stream's packet byte ranges)."""
    every = [(i, a, b) for i, sp in enumerate(spans) for a, b in sp]
    want = share * len(every)
    count = min(len(every), int(want) + int(rng.random() < want - int(want)))
    hit = rng.choice(len(every), size=count, replace=False)
    out = [bytearray(s) for s in streams]
    for j in sorted(hit.tolist()):
        i, a, b = every[j]
        bit = int(rng.integers(8 * (b - a)))
        out[i][a + bit // 8] ^= 0x80 >> (bit % 8)
    return [bytes(s) for s in out]


def damage_bits(data: bytes, ber: float, start: int, rng: np.random.Generator) -> bytes:
    """Flip every bit from byte ``start`` on independently with probability ``ber``."""
    nbits = 8 * (len(data) - start)
    count = int(rng.binomial(nbits, ber))
    out = bytearray(data)
    for bit in rng.choice(nbits, size=count, replace=False).tolist():
        out[start + bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def measure_damage(codec, files: list[Path], arith: str = "fixed", seeds: int = 8,
                   progress=None, encode=None, side_mode: str = "compact", conditions=None) -> dict:
    """Encode each file once, decode it clean, then damaged under every condition and seed.

    ``encode(codec, x, arith) -> bytes`` makes the stream (default ``codec.encode_bytes`` with
    ``robust=(side_mode == "robust")``).  Returns ``{"layout_version", "side_mode", "files",
    "seconds", "kbps", "packets", "packet_bytes", "rows": [{"channel", "rate", "pesq_wb",
    "stderr", "per_seed", "refused"}]}`` (``side_mode``: what the streams' headers say).
    ``conditions``: ``[(channel, rate)]`` to measure (default: every share of ``PACKET_SHARES``
    as ``"packets"``, every rate of ``BIT_ERROR_RATES`` as ``"bits"``)."""
    from .bitstream import BitstreamError, HEADER_SIZE, VERSION, packet_spans, stream_info
    from .data import load_wav
    from .metrics import MetricWarning, pesq_wb
    sr = codec.cfg.signal.sample_rate
    if side_mode not in ("compact", "robust"):
        raise ValueError("side_mode must be 'compact' or 'robust'")
    encode = encode or (lambda c, x, ar: c.encode_bytes(x, ar, robust=side_mode == "robust"))
    signals = [load_wav(f, sr) for f in files]
    streams = [encode(codec, x, arith) for x in signals]
    spans = [packet_spans(s, codec.cfg) for s in streams]
    clean = [codec.decode_bytes(s, arith)[0] for s in streams]
    seconds = sum(len(x) for x in signals) / sr

    def score(damaged: list[bytes]) -> tuple[float, int]:
        vals, refused = [], 0
        for ref, d in zip(clean, damaged):
            try:
                y = codec.decode_bytes(d, arith)[0]
            except BitstreamError:
                refused += 1
                vals.append(1.0)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetricWarning)
                v = pesq_wb(ref, y, sr)
            vals.append(v if math.isfinite(v) else 1.0)
        return float(np.mean(vals)), refused

    conds = list(conditions) if conditions is not None else (
        [("packets", s) for s in PACKET_SHARES] + [("bits", r) for r in BIT_ERROR_RATES])
    rows, done = [], 0
    for channel, rate in conds:
        per_seed, refused = [], 0
        for seed in range(seeds):
            rng = np.random.default_rng([19, seed, int(rate * 1e6), channel == "bits"])
            if channel == "packets":
                damaged = damage_packets(streams, spans, rate, rng)
            else:
                damaged = [damage_bits(s, rate, HEADER_SIZE, rng) for s in streams]
            v, r = score(damaged)
            per_seed.append(v)
            refused += r
            done += 1
            if progress:
                progress(done, len(conds) * seeds)
        m = float(np.mean(per_seed))
        se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else 0.0
        rows.append({"channel": channel, "rate": rate, "pesq_wb": m, "stderr": se,
                     "per_seed": per_seed, "refused": refused})
    total = sum(len(s) for s in streams)
    modes = sorted({stream_info(s)["side_mode"] for s in streams})
    return {"layout_version": VERSION, "side_mode": "/".join(modes), "files": [str(f) for f in files], "seconds": seconds,
            "kbps": 8 * total / seconds / 1000, "packets": sum(len(s) for s in spans),
            "packet_bytes": float(np.mean([b - a for sp in spans for a, b in sp])),
            "seeds": seeds, "arith": arith, "rows": rows}


def _label(row) -> str:
    if row["channel"] == "packets":
        return f"{100 * row['rate']:g} % damaged packets"
    return f"bit errors {row['rate']:.0e}"


def damage_markdown(results: list[tuple[str, dict]]) -> str:
    """One table, a column per measured layout (``results``: (name, measure_damage's dict))."""
    head = "| damage | " + " | ".join(n for n, _ in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for i, row in enumerate(results[0][1]["rows"]):
        cells = []
        for _, r in results:
            x = r["rows"][i]
            cell = f"{x['pesq_wb']:.2f} ± {x['stderr']:.2f}"
            if x["refused"]:
                cell += f" ({x['refused']} refused)"
            cells.append(cell)
        lines.append(f"| {_label(row)} | " + " | ".join(cells) + " |")
    lines.append("| bitrate (kbps, whole files) | " + " | ".join(f"{r['kbps']:.2f}" for _, r in results) + " |")
    lines.append("| packets (mean bytes) | " + " | ".join(f"{r['packets']} ({r['packet_bytes']:.0f})"
                                                          for _, r in results) + " |")
    return "\n".join(lines) + "\n"
