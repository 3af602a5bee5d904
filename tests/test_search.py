"""Encoder-side closed-loop code search (``SearchConfig``, ``golden.search_code``)."""

import numpy as np
import pytest

from model import dsp, golden
from model.config import CodecConfig, ConfigError, preset

from test_cli import run


def _stage_errors(model, x, codes):
    """Squared error of each stage's decoder against the residual it was given."""
    cfg, A = model.config, model.config.fixed.act_bits
    r, out = np.asarray(x, np.int64), []
    for stage, bits in zip(model.stages, codes):
        y = golden.decoder_forward(stage, bits, cfg)
        out.append(((r - y) ** 2).sum(axis=1))
        r = golden.sat(r - y, A)
    return out


@pytest.fixture(scope="module")
def frames(tiny_codec, speech):
    return golden.quantize_frames(dsp.analyze(speech, tiny_codec.cfg, tiny_codec.lsf_q).frames, tiny_codec.cfg)


def test_no_search_is_the_encoder_core(tiny_codec, frames):
    m = tiny_codec.int_model()
    core = golden.encode(m, frames)                       # what the hardware computes
    for a, b in zip(core, golden.encode(m, frames, search=0)):
        np.testing.assert_array_equal(a, b)
    f = golden.dequantize_frames(frames, m.config)       # exact: frames are on the grid
    for a, b in zip(core, tiny_codec.encode_frames(f, "fixed", search=0)):
        np.testing.assert_array_equal(a, b)
    assert any((a != b).any() for a, b in zip(core, tiny_codec.encode_frames(f, "fixed")))
    st = m.stages[0]
    np.testing.assert_array_equal(golden.search_code(st, frames, m.config, passes=0),
                                  golden.encoder_forward(st, frames, m.config))


def test_search_never_worse_per_frame_and_better_overall(tiny_codec, frames):
    m = tiny_codec.int_model()
    st, cfg = m.stages[0], m.config
    one = golden.encoder_forward(st, frames, cfg)
    e_one = ((frames - golden.decoder_forward(st, one, cfg)) ** 2).sum(axis=1)
    for passes, cand in ((1, 4), (1, None), (2, None)):
        bits = golden.search_code(st, frames, cfg, passes, cand)
        e = ((frames - golden.decoder_forward(st, bits, cfg)) ** 2).sum(axis=1)
        assert (e <= e_one).all()                         # a flip is kept only when it helps
        assert e.sum() < e_one.sum()                      # and some flips do help
        if cand:   # only the `cand` least confident bits may change
            assert ((bits != one).sum(axis=1) <= cand).all()
    # the whole cascade: every stage's error against its own residual is no worse on average
    searched = golden.encode(m, frames, search=2)
    e0, e2 = _stage_errors(m, frames, golden.encode(m, frames)), _stage_errors(m, frames, searched)
    assert e2[0].sum() < e0[0].sum()
    # decoding the first K stages: the reconstruction error drops with the search
    for k in range(1, len(m.stages) + 1):
        y0 = golden.decode(m, golden.encode(m, frames)[:k])
        y2 = golden.decode(m, searched[:k])
        assert ((frames - y2) ** 2).sum() < ((frames - y0) ** 2).sum()


def test_stages_argument_is_a_prefix(tiny_codec, frames):
    m = tiny_codec.int_model()
    full = golden.encode(m, frames, search=1)
    part = golden.encode(m, frames, search=1, stages=1)
    assert len(part) == 1
    np.testing.assert_array_equal(part[0], full[0])
    with pytest.raises(ValueError, match="does not search"):
        golden.encode(m, frames, trace=[], search=1)


def test_float_search_improves_too(tiny_codec, speech):
    c = tiny_codec
    f = dsp.analyze(speech, c.cfg, c.lsf_q).frames
    err = {}
    for s in (0, 2):
        y = c.decode_frames(c.encode_frames(f, "float", search=s), "float")
        err[s] = float(((f - y) ** 2).sum())
    assert err[2] < err[0]


def test_config_section():
    cfg = CodecConfig()
    assert cfg.search.passes == 2 and cfg.search.candidates == 0
    assert cfg.replace(search={"passes": 0}).config_hash == cfg.config_hash   # format unchanged
    with pytest.raises(ConfigError, match="search"):
        cfg.replace(search={"passes": -1})
    assert CodecConfig.from_dict({"search": {"passes": 1}}).search.passes == 1
    assert preset("tiny").search == cfg.search


def test_cli_search_flags(capsys, tiny_model_path, speech_wav, tiny_codec, speech, tmp_path):
    m = ["--model", tiny_model_path]
    rc, out, err = run(capsys, "encode", speech_wav, tmp_path / "s0.cas", *m, "--search", 0)
    assert rc == 0, err
    assert (tmp_path / "s0.cas").read_bytes() == tiny_codec.encode_bytes(speech, "fixed", search=0)
    rc, out, err = run(capsys, "encode", speech_wav, tmp_path / "s1.cas", *m, "--search", 1,
                       "--search-candidates", 3)
    assert rc == 0, err
    cfg1 = tiny_codec.cfg.replace(search={"passes": 1, "candidates": 3})
    from model.codec import Codec
    c1 = Codec(cfg1, tiny_codec.net, tiny_codec.lsf_q, tiny_codec.codebooks, side=tiny_codec.side)
    assert (tmp_path / "s1.cas").read_bytes() == c1.encode_bytes(speech, "fixed")
    # a searched stream decodes like any other
    rc, out, err = run(capsys, "decode", tmp_path / "s1.cas", tmp_path / "s1.wav", *m)
    assert rc == 0, err
    rc, out, err = run(capsys, "encode", speech_wav, tmp_path / "bad.cas", *m, "--search", -1)
    assert rc != 0 and "non-negative" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.cas").exists()


def test_report_shows_the_encoder_core_beside_the_search(capsys, tiny_model_path, speech_wav, tmp_path):
    """`cascade report` measures the searched codes and the encoder core's codes in one run."""
    import json
    import shutil
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(speech_wav, tests / "a.wav")
    out = tmp_path / "report"
    rc, o, err = run(capsys, "report", "--model", tiny_model_path, "--test-dir", tests, "--out", out,
                     "--arith", "fixed", "--widths", "8", "--no-baselines")
    assert rc == 0, err
    res = json.loads((out / "report.json").read_text())
    by = {}
    for p in res["points"]:
        by.setdefault(p["system"], {})[p["stages"]] = p
    assert set(by) == {"cascade (fixed)", "cascade (fixed, no search)"}
    n = preset("tiny").network.stages
    assert all(set(v) == set(range(1, n + 1)) for v in by.values())
    # same decoder, better codes: the searched stream's waveform SNR is higher at full K
    assert by["cascade (fixed)"][n]["snr_db"] > by["cascade (fixed, no search)"][n]["snr_db"]
    md = (out / "report.md").read_text()
    assert "no search" in md and "encoder core" in md
