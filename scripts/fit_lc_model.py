"""Refit ``hw.synth.LC_MODEL`` (the logic-cell estimate of the fit check) to real builds.

    python scripts/fit_lc_model.py [--json OUT]

Data: every committed build (``bitstreams/*/report.json``: nextpnr's logic cells, ICESTORM_LC
or TRELLIS_COMB) and every row of the committed lane sweeps (``docs/report/lanes/*/sweep.json``),
each with the shipped model its config hash names and the code search it was built with.  The
terms each coefficient multiplies come from ``hw.synth.lc_terms``, the same function the
estimate uses.  The ECP5 points fit the linear coefficients (non-negative least squares, relative
error, ``flash_boot`` held: no ECP5 build boots from flash); ``ice40_factor`` is then the mean
ratio of the iCE40 builds' cells to the linear part.  Prints the coefficients and each point's
error; paste them into ``LC_MODEL``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw.synth import LC_MODEL, _board, lc_terms  # noqa: E402
from model.codec import Codec  # noqa: E402
from model.config import SearchConfig  # noqa: E402

MODELS = {}
for name in ("default", "large"):
    c = Codec.load(ROOT / "model" / name / "model.pt")
    MODELS[c.cfg.config_hash] = c.int_model()


def model_with(config_hash, search):
    m = MODELS[config_hash]
    if search:
        cand = search["candidates"]
        cand = tuple(cand) if isinstance(cand, list) else cand
        m = dataclasses.replace(m, config=dataclasses.replace(
            m.config, search=SearchConfig(passes=search["passes"], candidates=cand)))
    return m


def points():
    """(label, family, terms, measured cells) of every committed build and sweep row."""
    out = []
    for rep in sorted(ROOT.glob("bitstreams/*/report.json")):
        r = json.loads(rep.read_text())
        nx = json.loads((rep.parent / "nextpnr-report.json").read_text())["utilization"]
        fam = _board(r["board"])["family"]
        cells = nx["ICESTORM_LC" if fam == "ice40" else "TRELLIS_COMB"]["used"]
        m = model_with(r["config_hash"], r.get("search"))
        out.append((rep.parent.name, fam, lc_terms(m, r["lanes"], r["cores"], bool(r.get("flash_boot"))), cells))
    for sw in sorted(ROOT.glob("docs/report/lanes/*/sweep.json")):
        r = json.loads(sw.read_text())
        fam = _board(r["board"])["family"]
        m = model_with(r["config_hash"], r.get("search"))
        for row in r["rows"]:
            out.append((f"{sw.parent.name} P={row['lanes']}", fam, lc_terms(m, row["lanes"], r["cores"]), row["cells"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the coefficients and the points' errors here")
    args = ap.parse_args()
    pts = points()
    keys = [k for k in LC_MODEL if k not in ("ice40_factor", "flash_boot")]
    ecp = [p for p in pts if p[1] == "ecp5"]
    # relative error: scale each row by 1 / measured
    A = np.array([[p[2][k] / p[3] for k in keys] for p in ecp], dtype=float)
    b = np.array([1.0 - LC_MODEL["flash_boot"] * p[2]["flash_boot"] / p[3] for p in ecp])
    x, _ = nnls(A, b)
    coef = {k: int(round(v)) for k, v in zip(keys, x)}
    coef["flash_boot"] = LC_MODEL["flash_boot"]

    def linear(t):
        return sum(coef[k] * t[k] for k in t)
    ice = [p for p in pts if p[1] == "ice40"]
    coef["ice40_factor"] = round(float(np.mean([p[3] / linear(p[2]) for p in ice])), 3) if ice else LC_MODEL["ice40_factor"]
    rows = []
    print(f"{'build':48s} {'cells':>7s} {'old':>7s} {'new':>7s}")
    for label, fam, t, cells in pts:
        f_old = LC_MODEL["ice40_factor"] if fam == "ice40" else 1
        f_new = coef["ice40_factor"] if fam == "ice40" else 1
        old = round(f_old * sum(LC_MODEL[k] * t[k] for k in t))
        new = round(f_new * linear(t))
        rows.append({"build": label, "cells": cells, "old_estimate": old, "new_estimate": new})
        print(f"{label:48s} {cells:7d} {old:7d} {(old - cells) / cells:+6.1%} {new:7d} {(new - cells) / cells:+6.1%}")
    print("LC_MODEL =", json.dumps({k: coef[k] for k in LC_MODEL}))
    if args.json:
        Path(args.json).write_text(json.dumps({"lc_model": {k: coef[k] for k in LC_MODEL}, "points": rows}, indent=1))


if __name__ == "__main__":
    main()
