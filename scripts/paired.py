"""Paired PESQ-WB differences between two `cascade eval --json` files of the same folder.

    python scripts/paired.py A.json B.json [K ...]     # B minus A, mean +- standard error per K

Both files must come from the same WAV files (`--curve` JSON: per K; single-K JSON: its K).
Differences within about twice the standard error are noise.
"""
import json
import sys

import numpy as np


def scores(path):
    d = json.load(open(path))
    files = d["files"]
    if isinstance(files, dict):        # --curve: {K: [per file]}
        return {int(k): {f["file"]: f["pesq_wb"] for f in v} for k, v in files.items()}
    return {int(d.get("stages") or 0): {f["file"]: f["pesq_wb"] for f in files}}


a, b = scores(sys.argv[1]), scores(sys.argv[2])
ks = [int(k) for k in sys.argv[3:]] or sorted(set(a) & set(b))
for k in ks:
    common = sorted(set(a[k]) & set(b[k]))
    d = np.array([b[k][f] - a[k][f] for f in common])
    d = d[np.isfinite(d)]
    print(f"K={k:2d}  A {np.nanmean([a[k][f] for f in common]):.3f}  B {np.nanmean([b[k][f] for f in common]):.3f}"
          f"  B-A {d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}  ({len(d)} files)")
