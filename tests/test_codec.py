"""Codec end to end (model/codec.py): model files, bitstreams, stage truncation, determinism."""

import numpy as np
import pytest
import torch

from model.bitstream import BitstreamError, read_stream, truncate_stream
from model.codec import Codec, ModelError


def _frames_equal(a, b):
    return (a.num_samples == b.num_samples and np.array_equal(a.lsf_idx, b.lsf_idx)
            and np.array_equal(a.gain_idx, b.gain_idx) and len(a.codes) == len(b.codes)
            and all(np.array_equal(x, y) for x, y in zip(a.codes, b.codes)))


# --------------------------------------------------------------------------- model files

def test_model_file_round_trip(tiny_codec, tmp_path, speech):
    p = tiny_codec.save(tmp_path / "sub" / "m.pt")
    c = Codec.load(p)
    assert c.cfg == tiny_codec.cfg
    sa, sb = tiny_codec.net.state_dict(), c.net.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(c.lsf_q.levels, tiny_codec.lsf_q.levels)
    assert c.lsf_q.min_gap == tiny_codec.lsf_q.min_gap
    assert c.codebooks == tiny_codec.codebooks and len(c.codebooks) == c.cfg.network.stages
    assert c.meta["made_by"] == "tests/conftest.py"
    assert not c.net.training
    x = speech[:8000]
    for arith in ("float", "fixed"):
        assert c.encode_bytes(x, arith) == tiny_codec.encode_bytes(x, arith)
    assert not list(tmp_path.glob("sub/*.tmp"))            # written atomically


def _raw(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _damage_bytes(fn):
    def damage(src, dst):
        dst.write_bytes(fn(src.read_bytes()))
    return damage


def _damage_dict(fn):
    def damage(src, dst):
        d = _raw(src)
        fn(d)
        torch.save(d, dst)
    return damage


def _set(d, keys, v):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = v


DAMAGE = {
    "empty-file": _damage_bytes(lambda b: b""),
    "truncated-half": _damage_bytes(lambda b: b[: len(b) // 2]),
    "truncated-tail": _damage_bytes(lambda b: b[:-100]),
    "head-zeroed": _damage_bytes(lambda b: bytes(64) + b[64:]),
    "random-bytes": _damage_bytes(lambda b: np.random.default_rng(0).bytes(len(b))),
    "text-file": _damage_bytes(lambda b: b"this is not a model\n"),
    "other-torch-object": lambda s, d: torch.save([1, 2, 3], d),
    "other-format": _damage_dict(lambda d: _set(d, ["format"], "something-else")),
    "version-2": _damage_dict(lambda d: _set(d, ["version"], 2)),
    "config-edited": _damage_dict(lambda d: _set(d, ["config", "network", "hidden"], 33)),
    "config-hash-edited": _damage_dict(lambda d: _set(d, ["config_hash"], "0" * 16)),
    "config-unknown-field": _damage_dict(lambda d: _set(d, ["config", "fixed", "bogus"], 1)),
    "config-missing": _damage_dict(lambda d: d.pop("config")),
    "weights-missing": _damage_dict(lambda d: d["state_dict"].pop(next(iter(d["state_dict"])))),
    "weights-wrong-shape": _damage_dict(lambda d: _set(d, ["state_dict", "stages.0.enc.0.weight"],
                                                       torch.zeros(3, 3))),
    "state-dict-missing": _damage_dict(lambda d: d.pop("state_dict")),
    "lsf-missing": _damage_dict(lambda d: _set(d, ["lsf"], None)),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_model_file_raises_model_error(name, tiny_model_path, tmp_path):
    bad = tmp_path / "bad.pt"
    DAMAGE[name](tiny_model_path, bad)
    with pytest.raises(ModelError) as ei:
        Codec.load(bad)
    msg = str(ei.value)
    assert msg and "\n" not in msg


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Codec.load(tmp_path / "none.pt")
    with pytest.raises(ModelError):
        Codec.load(tmp_path)                                  # a folder



# Well-formed torch files whose content is wrong in a way that escapes as another exception.
ESCAPES = [
    pytest.param(lambda d: _set(d, ["lsf"], {"levels": [[0.1, 0.2]]}), id="lsf-without-min_gap"),
    pytest.param(lambda d: _set(d, ["codebooks"], [{"bogus": 1}]), id="codebook-malformed"),
    pytest.param(lambda d: _set(d, ["config"], []), id="config-is-a-list"),
]


@pytest.mark.parametrize("edit", ESCAPES)
def test_malformed_model_content_raises_model_error(edit, tiny_model_path, tmp_path):
    d = _raw(tiny_model_path)
    edit(d)
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(ModelError):
        Codec.load(tmp_path / "bad.pt")


# --------------------------------------------------------------------------- bitstreams

@pytest.mark.parametrize("arith", ["float", "fixed"])
def test_encode_decode_bytes_round_trip(tiny_codec, speech, arith):
    c = tiny_codec
    fr = c.encode(speech, arith)
    data = c.encode_bytes(speech, arith)
    assert data[:4] == b"CASC"
    y, back = c.decode_bytes(data, arith)
    assert _frames_equal(fr, back) and not back.lost.any()
    assert y.shape == speech.shape and np.all(np.isfinite(y))
    np.testing.assert_array_equal(y, c.decode(fr, arith))
    # the codec does something: the output follows the input.  The tiny model after one epoch
    # per phase is poor (its decoders start near zero: output ~0.1x the input level, correlation
    # ~0.3); a broken chain (wrong gains, frames or filters) gives ~0 or blows up.
    assert np.corrcoef(y, speech)[0, 1] > 0.1
    assert 0.01 < np.std(y) / np.std(speech) < 10
    # Huffman coding is used and pays off over the raw code bits
    raw = c.cfg.raw_bits_per_frame() * len(fr.gain_idx) / 8
    assert len(data) < raw * 1.2


def test_decode_with_fewer_stages_every_k(tiny_codec, speech):
    c = tiny_codec
    N = c.cfg.network.stages
    data = c.encode_bytes(speech, "fixed")
    frames = read_stream(data, c.cfg, c.codebooks, side=c.side)
    outs = []
    for k in range(1, N + 1):
        y, _ = c.decode_bytes(data, "fixed", stages=k)
        assert y.shape == speech.shape and np.all(np.isfinite(y))
        np.testing.assert_array_equal(y, c.decode(frames, "fixed", stages=k))
        outs.append(y)
    assert not np.array_equal(outs[0], outs[-1])
    # more stages -> closer to the input (frame domain, where the cascade works)
    err = [np.mean((o - speech) ** 2) for o in outs]
    assert err[-1] < err[0]
    with pytest.raises(ValueError):
        c.decode(frames, "fixed", stages=0)


@pytest.mark.parametrize("k", [-1, 3])
def test_decode_rejects_bad_stage_count(tiny_codec, speech, k):
    frames = tiny_codec.encode(speech[:4000], "fixed")
    with pytest.raises(ValueError):
        tiny_codec.decode(frames, "fixed", stages=k)


@pytest.mark.parametrize("k", [0, -1, 3])
def test_encode_rejects_bad_stage_count(tiny_codec, speech, k):
    with pytest.raises(ValueError):
        tiny_codec.encode(speech[:4000], "fixed", stages=k)


@pytest.mark.parametrize("arith", ["float", "fixed"])
def test_truncate_equals_encoding_with_k_stages(tiny_codec, speech, arith):
    c = tiny_codec
    N = c.cfg.network.stages
    full = c.encode_bytes(speech, arith)
    for k in range(1, N + 1):
        cut = truncate_stream(full, k, c.cfg)
        direct = c.encode_bytes(speech, arith, stages=k)
        assert cut == direct
        y_cut, fr = c.decode_bytes(cut, arith)
        assert len(fr.codes) == k
        np.testing.assert_array_equal(y_cut, c.decode_bytes(direct, arith)[0])
        np.testing.assert_array_equal(y_cut, c.decode_bytes(full, arith, stages=k)[0])
    with pytest.raises(BitstreamError):
        truncate_stream(full, N + 1, c.cfg)
    with pytest.raises(BitstreamError):
        truncate_stream(truncate_stream(full, 1, c.cfg), 2, c.cfg)


def test_fixed_arith_is_deterministic(tiny_codec, tiny_model_path, speech):
    a = tiny_codec.encode_bytes(speech, "fixed")
    b = tiny_codec.encode_bytes(speech, "fixed")
    c = Codec.load(tiny_model_path).encode_bytes(speech, "fixed")  # fresh quantization
    assert a == b == c
    y1, _ = tiny_codec.decode_bytes(a, "fixed")
    y2, _ = Codec.load(tiny_model_path).decode_bytes(a, "fixed")
    np.testing.assert_array_equal(y1, y2)
    y3, _ = tiny_codec.decode_bytes(a, "fixed")
    assert y1.tobytes() == y3.tobytes()


def test_short_and_silent_signals(tiny_codec):
    c = tiny_codec
    for x in (np.array([0.25]), np.zeros(40), np.zeros(5000),
              np.where(np.arange(3000) % 40 < 20, 1.0, -1.0)):
        for arith in ("float", "fixed"):
            y, fr = c.decode_bytes(c.encode_bytes(x, arith), arith)
            assert y.shape == x.shape and np.all(np.isfinite(y))


def test_stream_from_other_codec_rejected(tiny_codec, speech):
    c = tiny_codec
    other = Codec(c.cfg.replace(gain={"step_db": 2.0}), c.net, c.lsf_q, c.codebooks)
    data = other.encode_bytes(speech[:4000], "fixed")
    with pytest.raises(BitstreamError, match="made for codec"):
        c.decode_bytes(data, "fixed")


def test_bad_arith(tiny_codec, speech):
    with pytest.raises(ValueError, match="arith"):
        tiny_codec.encode_bytes(speech[:1000], "double")


def test_conceal_bridges_lost_side_information_between_good_frames():
    """Frames that lost their side information but kept their stages, between two good frames,
    get LSF and gain indices interpolated between those (rounded half up) and the pitch lag when
    the two lags agree; a run with no good frame after it takes the frame before, 3 dB quieter per
    frame; a frame without stages repeats the decoded frame before (``Codec.conceal``:
    "interpolate", or "hold" for the hold-and-fade of every lost frame)."""
    from model.codec import CONCEAL_MODES, Codec, _conceal
    from model.config import CodecConfig
    assert Codec.conceal == "interpolate" and CONCEAL_MODES == ("interpolate", "hold")
    cfg = CodecConfig()
    step = max(1, int(round(3.0 / cfg.gain.step_db)))
    T = 10
    lsf = np.tile(np.arange(16), (T, 1))
    lsf[4:] += 4
    gain = np.array([10, 10, 0, 0, 20, 20, 20, 20, 0, 0])
    pitch = np.array([[60, 3]] * 4 + [[63, 2]] * 6)
    lost = np.zeros(T, bool)
    lost[[1, 2, 3, 8, 9]] = True
    lost[1] = False
    none = np.zeros(T, bool)
    y = np.arange(T * 3, dtype=float).reshape(T, 3)
    _, li, gi, pi = _conceal(y.copy(), lsf.copy(), gain.copy(), pitch.copy(), lost, none, cfg)
    assert gi[2:4].tolist() == [13, 17] and (li[2] == np.arange(16) + 1).all() and (li[3] == np.arange(16) + 3).all()
    assert pi[2:4].tolist() == [[61, 2], [62, 2]]
    assert gi[8:].tolist() == [20 - step, 20 - 2 * step] and (li[8:] == li[7]).all() and (pi[8:, 1] == 0).all()
    _, li, gi, pi = _conceal(y.copy(), lsf.copy(), gain.copy(), pitch.copy(), lost, none, cfg, False)
    assert gi[2:4].tolist() == [10 - step, 10 - 2 * step] and (li[2:4] == li[1]).all() and (pi[2:4, 1] == 0).all()
    far = pitch.copy()
    far[4:, 0] = 120                                          # an octave apart: no comb across the run
    none[5] = True
    lost[5] = True
    yy, li, gi, pi = _conceal(y.copy(), lsf.copy(), gain.copy(), far, lost, none, cfg)
    assert pi[2:4].tolist() == [[60, 0], [60, 0]] and gi[2:4].tolist() == [13, 17]
    assert (yy[5] == y[4]).all() and gi[5] == 20 - step       # no stages: the frame before, no bridge


def test_model_config_is_read_without_torch(tiny_model_path, tmp_path):
    """``modelfile.read_config`` gives the config ``Codec.load`` gives, from the archive's pickle
    with every tensor left out; a pickle that names anything but plain or PyTorch classes (a
    planted ``os.system``) is refused before it runs; a non-archive is one ModelError."""
    import io
    import pickle
    import zipfile
    from model.codec import Codec
    from model.modelfile import ModelError, read_config
    assert read_config(tiny_model_path).config_hash == Codec.load(tiny_model_path).cfg.config_hash
    assert read_config().config_hash == Codec.load().cfg.config_hash

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    bad = tmp_path / "evil.pt"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"format": Evil()}))
    bad.write_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="not a readable model file"):
        read_config(bad)
    assert not (tmp_path / "pwned").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable model file"):
        read_config(junk)
