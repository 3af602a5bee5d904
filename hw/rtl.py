"""Verilog generation for the encoder and decoder cores."""

from __future__ import annotations

import json
from pathlib import Path

from model.golden import IntModel

from .tools import ensure_yosys

__all__ = ["export_rtl", "to_verilog"]


def to_verilog(core, name: str) -> str:
    """Verilog text of a core (module ``name``; ports ``clk``, ``rst`` and the flattened streams)."""
    from amaranth.back import verilog
    ensure_yosys()
    return verilog.convert(core, name=name)


def export_rtl(model: IntModel, out_dir, lanes: int, force: bool = True) -> dict:
    """Write ``encoder.v`` (module ``encoder_core``), ``decoder.v`` (``decoder_core``) and
    ``rtl.json`` to ``out_dir`` (each through ``model.files.write_file``; ``force=False``
    replaces none); return the JSON content.

    The JSON holds ``config_hash``, ``lanes``, per core the module name, file, designed and ideal
    cycles per frame, and the memory sizes.
    """
    from model.files import write_file
    from .decoder import DecoderCore
    from .encoder import EncoderCore
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"config_hash": model.config.config_hash, "lanes": int(lanes), "cores": {}}
    for side, cls, fname in (("encoder", EncoderCore, "encoder.v"), ("decoder", DecoderCore, "decoder.v")):
        core = cls(model, lanes)
        sc = core.schedule
        write_file(out / fname, to_verilog(core, f"{side}_core"), force)
        info["cores"][side] = {
            "module": f"{side}_core", "file": fname,
            "cycles_per_frame": core.cycles_per_frame,
            "ideal_cycles_per_frame": core.ideal_cycles_per_frame,
            "weight_bits": sc.weight_depth * sc.lanes, "weight_rows": sc.weight_depth,
            "param_rows": sc.param_depth, "param_bits_per_row": sc.scale_bits + sc.bias_bits,
            "act_words": sc.act_depth,
        }
    info["cycles_per_frame"] = {s: c["cycles_per_frame"] for s, c in info["cores"].items()}
    write_file(out / "rtl.json", json.dumps(info, indent=1), force)
    return info
