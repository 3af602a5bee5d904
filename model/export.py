"""Weight export: the integer model as files that the hardware generator reads.

An export directory holds

* ``manifest.json``: ``format`` ("cascade-export"), ``version``, the codec ``config`` and its
  ``config_hash``, and one entry per layer (stage, side, index, kind, fan_in, fan_out, shift,
  in_frac) in the order the hardware sequencer runs them;
* ``weights.npz``: per layer ``{key}.weights`` (weight bits packed with ``np.packbits`` along
  fan-in, little bit order, 1 = +1), ``{key}.mult`` and ``{key}.bias`` (int64).

``load_export`` checks version, hash and every shape and range, and raises ``ExportError`` with one
line on any mismatch.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import CascadeError
from .config import CodecConfig
from .modelfile import check_file_head
from .golden import IntLayer, IntModel, IntStage

EXPORT_FORMAT = "cascade-export"
EXPORT_VERSION = 1

__all__ = ["ExportError", "save_export", "load_export", "quantize_model", "layer_key", "EXPORT_VERSION"]


class ExportError(CascadeError, ValueError):
    """An export directory that is missing, damaged or made for other code."""


def layer_key(stage: int, side: str, index: int) -> str:
    return f"s{stage}.{side}.{index}"


def save_export(model: IntModel, out: str | Path, force: bool = True) -> Path:
    """Write ``weights.npz`` and ``manifest.json`` into the folder ``out`` (created), each
    through ``model.files.write_file`` (``force=False``: neither file is replaced)."""
    from .files import write_file
    model.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    arrays, layers = {}, []
    for s, st in enumerate(model.stages):
        for side in ("encoder", "decoder"):
            for i, l in enumerate(getattr(st, side)):
                key = layer_key(s, side, i)
                arrays[f"{key}.weights"] = np.packbits(l.weights, axis=1, bitorder="little")
                arrays[f"{key}.mult"] = l.mult.astype(np.int64)
                arrays[f"{key}.bias"] = l.bias.astype(np.int64)
                layers.append({"key": key, "stage": s, "side": side, "index": i, "kind": l.kind,
                               "fan_in": l.fan_in, "fan_out": l.fan_out, "shift": int(l.shift),
                               "in_frac": int(l.in_frac)})
    manifest = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": cfg.to_dict(),
                "config_hash": cfg.config_hash, "layers": layers}
    write_file(out / "weights.npz", lambda f: np.savez_compressed(f, **arrays), force)
    write_file(out / "manifest.json", json.dumps(manifest, indent=1), force)
    return out


def load_export(path: str | Path) -> IntModel:
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path} is not an export directory")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ExportError(f"{path} is not an export directory (no manifest.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ExportError(f"{path}/manifest.json is damaged (not JSON)") from None
    cfg = check_file_head(manifest, path, fmt=EXPORT_FORMAT, version=EXPORT_VERSION, what="export",
                          error=ExportError)
    try:
        data = np.load(path / "weights.npz")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}/weights.npz cannot be read: {type(exc).__name__}") from None
    stages = [IntStage([], []) for _ in range(cfg.network.stages)]
    try:
        for e in manifest["layers"]:
            w = np.unpackbits(data[f"{e['key']}.weights"], axis=1, count=e["fan_in"], bitorder="little")
            layer = IntLayer(e["kind"], w.astype(np.uint8), data[f"{e['key']}.mult"],
                             data[f"{e['key']}.bias"], int(e["shift"]), int(e["in_frac"]))
            getattr(stages[e["stage"]], e["side"]).append(layer)
        model = IntModel(cfg, stages)
        model.check()
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: export does not match its config ({type(exc).__name__}: {exc})") from None
    return model


def quantize_model(net, cfg: CodecConfig) -> IntModel:
    """Float binary-weight cascade (``model.net.Cascade``) -> its integer form.

    For a layer y = alpha * (sign(W) x) + beta with input frac bits F_in and output frac bits F:
    ``mult = round(alpha * 2**(F - F_in + shift))`` with the largest ``shift`` that keeps every
    |mult| below 2**(scale_bits-1), and ``bias = round(beta * 2**F)`` saturated to ``bias_bits``.
    """
    if not cfg.network.binary:
        raise ExportError("a float-weight model has no integer form (train with binary weights)")
    F = cfg.fixed.act_frac
    m_max = (1 << (cfg.fixed.scale_bits - 1)) - 1
    stages = []
    for s, st in enumerate(net.stages):
        sides = {}
        for side, layers, kinds in (("encoder", st.enc, st.kinds_enc), ("decoder", st.dec, st.kinds_dec)):
            out = []
            for i, (layer, kind) in enumerate(zip(layers, kinds)):
                w = layer.weight.detach().cpu().double().numpy()
                alpha = layer.scale().detach().cpu().double().numpy()
                beta = layer.bias.detach().cpu().double().numpy()
                in_frac = 0 if (side == "decoder" and i == 0) else F
                m_float = alpha * 2.0 ** (F - in_frac)
                peak = max(float(m_float.max()), 1e-30)
                shift = max(0, min(48, int(np.floor(np.log2(m_max / peak)))))
                mult = np.clip(np.round(m_float * 2.0 ** shift), -m_max, m_max).astype(np.int64)
                b_lim = (1 << (cfg.fixed.bias_bits - 1)) - 1
                bias = np.clip(np.round(beta * 2.0 ** F), -b_lim - 1, b_lim).astype(np.int64)
                out.append(IntLayer(kind, (w >= 0).astype(np.uint8), mult, bias, shift, in_frac))
            sides[side] = out
        stages.append(IntStage(**sides))
    model = IntModel(cfg, stages)
    model.check()
    return model
