"""Merge `cascade eval --curve --json` files of disjoint folders into the one a single run over
all of them writes (per-file rows are independent, so the merged file is what `cascade eval`
would give; used to run a long evaluation as parallel processes, one per voice).

    python scripts/merge_curves.py OUT.json [--markdown OUT.md] [--rename FROM=TO] A.json B.json ...
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model.evaluation import curve_markdown, summarize_rows  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("parts", nargs="+")
    ap.add_argument("--markdown")
    ap.add_argument("--rename", action="append", default=[], help="FROM=TO: rewrite file path prefixes")
    a = ap.parse_args()
    parts = [json.loads(Path(p).read_text()) for p in a.parts]
    arith = {p["arith"] for p in parts}
    assert len(arith) == 1, f"parts of different --arith: {arith}"
    ks = sorted({int(k) for p in parts for k in p["files"]})
    files = {}
    for k in ks:
        rows = [dict(r) for p in parts for r in p["files"][str(k)]]
        for r in rows:
            for ren in a.rename:
                src, dst = ren.split("=", 1)
                if r["file"].startswith(src):
                    r["file"] = dst + r["file"][len(src):]
        files[str(k)] = rows
    out = {"curve": [{"stages": k, **summarize_rows(files[str(k)])} for k in ks], "files": files,
           "arith": arith.pop()}
    Path(a.out).write_text(json.dumps(out, indent=1))
    if a.markdown:
        Path(a.markdown).write_text(curve_markdown(out))
    for row in out["curve"]:
        vm = row["voice_mean"]
        print(f"K={row['stages']:2d} {row['mean']['kbps']:6.2f} kbps  " +
              "  ".join(f"{v} {m['pesq_wb']:.3f}" for v, m in row["voices"].items()) +
              f"  voice mean {vm['pesq_wb']:.3f}  STOI {vm['stoi']:.3f}")


if __name__ == "__main__":
    main()
