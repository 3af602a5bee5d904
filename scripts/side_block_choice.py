"""The compact side block size (``bitstream.SIDE_BLOCK_FRAMES``), chosen on the validation voice.

For each block size: the shipped default model's streams of the four longest validation prompts
(June, ``data/val/june``; never trained on, never the test half), ``--arith fixed``, damaged as
``cascade report --damage-only`` damages them (``model.damage``: random bit errors at 1e-4 after
the header, and 10 % of the packets with one bit flipped), PESQ-WB against the clean decode,
mean +- standard error over seeds, and the bitrate.  One encode per file; the block sizes differ
only in how ``write_stream`` lays the same frames out.

    python scripts/side_block_choice.py --blocks 50 10 5 2 1 --robust --conceal hold --out docs/report/side-block-val-hold.json
    python scripts/side_block_choice.py --blocks 50 10 5 2 --robust --out docs/report/side-block-val.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    from model.codec import Codec
    from model.damage import measure_damage
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[50, 10, 5, 2, 1])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--files", type=int, default=4, help="the N longest validation prompts")
    ap.add_argument("--robust", action="store_true", help="also measure the robust units")
    ap.add_argument("--conceal", choices=("interpolate", "hold"), default="interpolate",
                    help="how the decoder conceals frames without side information (Codec.conceal)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    codec = Codec.load(ROOT / "model" / "default" / "model.pt")
    codec.conceal = a.conceal
    files = sorted((ROOT / "data" / "val" / "june").glob("*.wav"), key=lambda f: -f.stat().st_size)[:a.files]
    cache = {}

    def frames(c, x, arith):
        key = (hashlib.sha1(x.tobytes()).hexdigest(), arith)
        if key not in cache:
            cache[key] = c.encode(x, arith)
        return cache[key]

    conds = [("bits", 1e-4), ("packets", 0.10)]
    results = []
    t0 = time.time()
    variants = [("compact", b) for b in a.blocks] + ([("robust", 0)] if a.robust else [])
    for mode, block in variants:
        r = measure_damage(codec, files, "fixed", a.seeds, side_mode=mode, conditions=conds,
                           encode=lambda c, x, ar: c.write_frames(frames(c, x, ar), mode == "robust", block or None))
        r["side_block"] = block
        results.append(r)
        print(f"{mode} block {block}: {r['kbps']:.2f} kbps, " + ", ".join(
            f"{row['channel']} {row['rate']:g}: {row['pesq_wb']:.3f} +- {row['stderr']:.3f}" for row in r["rows"]),
            f"({time.time() - t0:.0f} s)", flush=True)
    a.out.write_text(json.dumps({"files": [f.name for f in files], "conceal": a.conceal, "seeds": a.seeds,
                                 "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
