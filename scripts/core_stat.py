"""Yosys cell counts of cores after flattening and coarse generic synthesis: a check that a
refactoring of ``hw/core.py`` left the logic as it was (same counts before and after).  The cores
of the ``tiny`` preset (random weights, with its code search and without) at P = 4, weights in
ROM and in RAM: small enough to synthesize in seconds.

    python scripts/core_stat.py OUT.json
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.decoder import DecoderCore          # noqa: E402
from hw.encoder import EncoderCore          # noqa: E402
from hw.rtl import to_verilog               # noqa: E402
from hw.tools import tool_env               # noqa: E402
from model import golden                    # noqa: E402
from model.config import preset             # noqa: E402


def main():
    cfg = preset("tiny")
    models = {"search": golden.random_model(cfg, 0),
              "nosearch": golden.random_model(cfg.replace(search={"passes": 0}), 0)}
    env = tool_env()
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, cls, storage, model in [(f"{side}-{st}-{m}", cls, st, models[m])
                                          for side, cls in (("encoder", EncoderCore), ("decoder", DecoderCore))
                                          for st in ("rom", "ram") for m in models]:
            v = Path(d) / f"{name}.v"
            v.write_text(to_verilog(cls(model, 4, storage), "top"))
            js = Path(d) / f"{name}.json"
            subprocess.run([env["YOSYS"], "-q", "-p", f"read_verilog -sv {v.name}; synth -flatten -top top -run :fine; "
                            f"opt -full; tee -q -o {js.name} stat -json"], check=True, env=env, cwd=d)
            stat = json.loads(js.read_text())
            top = stat["modules"]["\\top"]
            cells = top.get("num_cells_by_type") or top.get("cells")
            out[name] = {"cells": sum(cells.values()), "by_type": cells,
                         "wire_bits": top.get("num_wire_bits")}
            print(name, out[name]["cells"])
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
