"""The design choices behind format version 3, measured as ``cascade report --damage-only`` does
(``model/damage.py``, same files and damage), with 4 seeds:

* ``drop``: raw stage sections, but a section that fails its CRC-8 is dropped with the stages
  after it (``read_stream(raw_damage="drop")``) instead of kept;
* ``huffman``: Huffman-coded stage sections (the model's codebooks), where a failed section
  drops that stage and the later ones of the packet's frames.

Run: ``PYTHONPATH=. python scripts/damage_variants.py drop huffman`` (prints the rows; docs/RESULTS.md
quotes them).
"""

import functools
import sys
from pathlib import Path

import model.bitstream as bitstream
import model.codec as codec_module
from model.codec import Codec
from model.damage import DAMAGE_FILES, measure_damage

TEST_DIR = Path(__file__).resolve().parent.parent / "data" / "test"


def main(names):
    codec = Codec.load()
    files = [TEST_DIR / f for f in DAMAGE_FILES]
    for name in names:
        encode = None
        if name == "drop":
            codec_module.read_stream = functools.partial(bitstream.read_stream, raw_damage="drop")
        elif name == "huffman":
            codec_module.read_stream = bitstream.read_stream
            encode = lambda c, x, arith: bitstream.write_stream(c.encode(x, arith), c.cfg, c.codebooks)
        else:
            raise SystemExit(f"unknown variant {name}: drop or huffman")
        res = measure_damage(codec, files, "fixed", 4, encode=encode)
        for r in res["rows"]:
            print(f"{name:8} {r['channel']:8} {r['rate']:<7g} PESQ-WB {r['pesq_wb']:.2f} +- {r['stderr']:.2f}")
        print(f"{name:8} {res['kbps']:.2f} kbps")


if __name__ == "__main__":
    main(sys.argv[1:] or ["drop", "huffman"])
