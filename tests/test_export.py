"""Weight export (model/export.py): round trip, quantize_model, damaged/edited exports."""

import json
import shutil

import numpy as np
import pytest

from model import golden
from model.config import preset
from model.export import (EXPORT_VERSION, ExportError, layer_key, load_export, quantize_model,
                          save_export)

TINY = preset("tiny")


def _assert_same(a: golden.IntModel, b: golden.IntModel):
    assert a.config == b.config and len(a.stages) == len(b.stages)
    for sa, sb in zip(a.stages, b.stages):
        for side in ("encoder", "decoder"):
            la, lb = getattr(sa, side), getattr(sb, side)
            assert len(la) == len(lb)
            for x, y in zip(la, lb):
                assert (x.kind, x.shift, x.in_frac) == (y.kind, y.shift, y.in_frac)
                assert x.weights.dtype == y.weights.dtype == np.uint8
                np.testing.assert_array_equal(x.weights, y.weights)
                np.testing.assert_array_equal(x.mult, y.mult)
                np.testing.assert_array_equal(x.bias, y.bias)


@pytest.mark.parametrize("cfg", [TINY, TINY.replace(network={"hidden": 20, "res_layers": 2},
                                                    signal={"transform": "stft"}),
                                 TINY.replace(network={"subbands": 2})],
                         ids=["tiny", "odd-widths-stft", "subbands"])
def test_round_trip_random_model(cfg, tmp_path):
    m = golden.random_model(cfg, 5)
    out = save_export(m, tmp_path / "exp")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "weights.npz"]
    back = load_export(out)
    _assert_same(m, back)
    A = cfg.fixed.act_bits
    x = np.random.default_rng(0).integers(-(1 << (A - 1)), 1 << (A - 1), (3, cfg.coefficients))
    assert all(np.array_equal(a, b) for a, b in zip(golden.encode(m, x), golden.encode(back, x)))
    man = json.loads((out / "manifest.json").read_text())
    assert man["version"] == EXPORT_VERSION and man["config_hash"] == cfg.config_hash
    n_layers = sum(len(s.encoder) + len(s.decoder) for s in m.stages)
    assert len(man["layers"]) == n_layers
    # save again over it (same content)
    save_export(back, out)
    _assert_same(m, load_export(out))


def test_round_trip_trained_model(tiny_codec, tmp_path):
    m = tiny_codec.int_model()
    _assert_same(m, load_export(save_export(m, tmp_path / "exp")))


def test_quantize_model_matches_float_layers(tiny_codec):
    """mult/2**shift reproduces the layer's alpha * 2**(F - F_in) to 1/2 LSB of mult, bias =
    round(beta*2**F)."""
    cfg = tiny_codec.cfg
    F = cfg.fixed.act_frac
    m = quantize_model(tiny_codec.net, cfg)
    m_max = (1 << (cfg.fixed.scale_bits - 1)) - 1
    for st_net, st_int in zip(tiny_codec.net.stages, m.stages):
        for layers, ints in ((st_net.enc, st_int.encoder), (st_net.dec, st_int.decoder)):
            for lay, il in zip(layers, ints):
                w = lay.weight.detach().double().numpy()
                alpha = lay.scale().detach().double().numpy()
                assert not np.allclose(alpha, np.abs(w).mean(1))   # trained, not the mean rule
                target = alpha * 2.0 ** (F - il.in_frac + il.shift)
                assert np.all(np.abs(il.mult - target) <= 0.5 + 1e-9)
                assert np.abs(il.mult).max() <= m_max
                assert np.abs(il.mult).max() * 2 > m_max or il.shift in (0, 48)   # shift is maximal
                np.testing.assert_array_equal(il.weights, (w >= 0).astype(np.uint8))
                np.testing.assert_array_equal(il.bias, np.round(lay.bias.detach().double().numpy() * 2 ** F))


def test_quantize_model_refuses_float_weights():
    from model.net import Cascade
    cfg = TINY.replace(network={"binary": False})
    with pytest.raises(ExportError):
        quantize_model(Cascade(cfg), cfg)


# ----------------------------------------------------------------------------- tampering

@pytest.fixture
def export_dir(tmp_path):
    return save_export(golden.random_model(TINY, 1), tmp_path / "exp")


def _edit_manifest(path, fn):
    man = json.loads((path / "manifest.json").read_text())
    fn(man)
    (path / "manifest.json").write_text(json.dumps(man))


def _edit_npz(path, fn):
    data = dict(np.load(path / "weights.npz"))
    fn(data)
    with open(path / "weights.npz", "wb") as f:
        np.savez_compressed(f, **data)


def _set(d, keys, value):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


TAMPER = {
    "config-edited": lambda p: _edit_manifest(p, lambda m: _set(m, ["config", "fixed", "act_bits"], 12)),
    "config-hash-edited": lambda p: _edit_manifest(p, lambda m: _set(m, ["config_hash"], "0" * 16)),
    "config-invalid": lambda p: _edit_manifest(p, lambda m: _set(m, ["config", "fixed", "act_bits"], 2)),
    "config-unknown-field": lambda p: _edit_manifest(p, lambda m: _set(m, ["config", "fixed", "bogus"], 1)),
    "config-missing": lambda p: _edit_manifest(p, lambda m: m.pop("config")),
    "version-2": lambda p: _edit_manifest(p, lambda m: _set(m, ["version"], EXPORT_VERSION + 1)),
    "version-missing": lambda p: _edit_manifest(p, lambda m: m.pop("version")),
    "format-other": lambda p: _edit_manifest(p, lambda m: _set(m, ["format"], "something-else")),
    "layers-missing": lambda p: _edit_manifest(p, lambda m: m.pop("layers")),
    "layer-dropped": lambda p: _edit_manifest(p, lambda m: m["layers"].pop(3)),
    "layer-kind-edited": lambda p: _edit_manifest(p, lambda m: _set(m, ["layers", 0, "kind"], "out")),
    "layer-stage-out-of-range": lambda p: _edit_manifest(p, lambda m: _set(m, ["layers", 0, "stage"], 9)),
    "layer-shift-not-int": lambda p: _edit_manifest(p, lambda m: _set(m, ["layers", 0, "shift"], "x")),
    "manifest-missing": lambda p: (p / "manifest.json").unlink(),
    "manifest-not-json": lambda p: (p / "manifest.json").write_text("{\"format\": "),
    "weights-missing": lambda p: (p / "weights.npz").unlink(),
    "weights-garbage": lambda p: (p / "weights.npz").write_bytes(b"\x00garbage" * 50),
    "weights-key-missing": lambda p: _edit_npz(p, lambda d: d.pop(f"{layer_key(1, 'decoder', 2)}.mult")),
    "weights-mult-too-wide": lambda p: _edit_npz(
        p, lambda d: d.__setitem__(f"{layer_key(0, 'encoder', 0)}.mult",
                                   d[f"{layer_key(0, 'encoder', 0)}.mult"] + (1 << 15))),
    "weights-bias-too-wide": lambda p: _edit_npz(
        p, lambda d: d.__setitem__(f"{layer_key(0, 'decoder', 1)}.bias",
                                   d[f"{layer_key(0, 'decoder', 1)}.bias"] - (1 << 14))),
}


@pytest.mark.parametrize("name", sorted(TAMPER))
def test_tampered_export_raises_one_line(name, export_dir):
    TAMPER[name](export_dir)
    with pytest.raises(ExportError) as ei:
        load_export(export_dir)
    msg = str(ei.value)
    assert msg and "\n" not in msg


def test_missing_directory(tmp_path):
    with pytest.raises(ExportError, match="not an export directory"):
        load_export(tmp_path / "nowhere")


def _truncate_npz(p):
    data = (p / "weights.npz").read_bytes()
    (p / "weights.npz").write_bytes(data[:len(data) // 2])



# Damage that once escaped as another exception (or loaded).  The module promises ExportError
# "with one line on any mismatch".
ESCAPES = [
    pytest.param(lambda p: (p / "manifest.json").write_text("[]"), id="manifest-is-a-list"),
    pytest.param(lambda p: (shutil.rmtree(p), p.write_text("x")), id="path-is-a-file"),
    pytest.param(lambda p: _edit_manifest(p, lambda m: _set(m, ["layers", 0, "fan_in"], "x")),
                 id="layer-fan_in-not-int"),
    pytest.param(_truncate_npz, id="weights-truncated-zip"),
    pytest.param(lambda p: _edit_npz(p, lambda d: d.__setitem__(
        f"{layer_key(0, 'encoder', 1)}.mult", d[f"{layer_key(0, 'encoder', 1)}.mult"][:-1])),
                 id="weights-mult-wrong-length"),
]


@pytest.mark.parametrize("damage", ESCAPES)
def test_other_damage_raises_export_error(damage, export_dir):
    damage(export_dir)
    with pytest.raises(ExportError) as ei:
        load_export(export_dir)
    assert "\n" not in str(ei.value)
