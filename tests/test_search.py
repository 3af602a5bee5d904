"""Closed-loop code search of the encoder (``SearchConfig``, ``golden.search_code``); the encoder
core's search is simulated against it in ``tests/test_hw_cores.py``."""

import numpy as np
import pytest

from model import dsp, golden
from model.config import CodecConfig, ConfigError, preset

from tests.helpers import run


def _left(stage, r, bits, cfg):
    """The residual a stage leaves, sat_A(r - y): what the search makes smaller."""
    return golden.sat(r - golden.decoder_forward(stage, bits, cfg), cfg.fixed.act_bits)


def _stage_errors(model, x, codes):
    """Squared sum of the residual each stage leaves, per frame."""
    r, out = np.asarray(x, np.int64), []
    for stage, bits in zip(model.stages, codes):
        left = _left(stage, r, bits, model.config)
        out.append((left ** 2).sum(axis=1))
        r = left
    return out


@pytest.fixture(scope="module")
def frames(tiny_codec, speech):
    return golden.quantize_frames(dsp.analyze(speech, tiny_codec.cfg, tiny_codec.lsf_q).frames, tiny_codec.cfg)


def test_golden_encode_is_the_configured_search(tiny_codec, frames):
    m = tiny_codec.int_model()
    sc = m.config.search
    assert sc.passes > 0
    core = golden.encode(m, frames)                       # what the encoder core computes
    for a, b in zip(core, golden.encode(m, frames, search=sc.passes, candidates=sc.candidates)):
        np.testing.assert_array_equal(a, b)
    f = golden.dequantize_frames(frames, m.config)       # exact: frames are on the grid
    for a, b in zip(core, tiny_codec.encode_frames(f, "fixed")):
        np.testing.assert_array_equal(a, b)
    plain = golden.encode(m, frames, search=0)
    assert (core[0] != plain[0]).any()
    for a, b in zip(plain, tiny_codec.encode_frames(f, "fixed", search=0)):
        np.testing.assert_array_equal(a, b)
    st = m.stages[0]
    np.testing.assert_array_equal(golden.search_code(st, frames, m.config, passes=0),
                                  golden.encoder_forward(st, frames, m.config))


def test_search_never_worse_per_frame_and_better_overall(tiny_codec, frames):
    m = tiny_codec.int_model()
    st, cfg = m.stages[0], m.config
    one = golden.encoder_forward(st, frames, cfg)
    e_one = (_left(st, frames, one, cfg) ** 2).sum(axis=1)
    for passes, cand in ((1, 4), (1, None), (2, None)):
        bits = golden.search_code(st, frames, cfg, passes, cand)
        e = (_left(st, frames, bits, cfg) ** 2).sum(axis=1)
        assert (e <= e_one).all()                         # a flip is kept only when it helps
        assert e.sum() < e_one.sum()                      # and some flips do help
        if cand:   # only the `cand` least confident bits may change
            assert ((bits != one).sum(axis=1) <= cand).all()
    # the whole cascade: every stage's error against its own residual is no worse on average
    searched = golden.encode(m, frames, search=2)
    e0, e2 = _stage_errors(m, frames, golden.encode(m, frames, search=0)), _stage_errors(m, frames, searched)
    assert e2[0].sum() < e0[0].sum()
    # decoding the first K stages: the reconstruction error drops with the search
    for k in range(1, len(m.stages) + 1):
        y0 = golden.decode(m, golden.encode(m, frames, search=0)[:k])
        y2 = golden.decode(m, searched[:k])
        assert ((frames - y2) ** 2).sum() < ((frames - y0) ** 2).sum()


def test_stages_argument_is_a_prefix(tiny_codec, frames):
    m = tiny_codec.int_model()
    full = golden.encode(m, frames, search=1)
    part = golden.encode(m, frames, search=1, stages=1)
    assert len(part) == 1
    np.testing.assert_array_equal(part[0], full[0])
    with pytest.raises(ValueError, match="without code search"):
        golden.encode(m, frames, trace=[], search=1)


def test_last_stage_is_not_searched(tiny_codec, frames):
    """The last stage sends its network's code: its decoder is not in the encoder."""
    m = tiny_codec.int_model()
    codes = golden.encode(m, frames, search=2)
    r = _left(m.stages[0], frames, codes[0], m.config)
    for st, bits in zip(m.stages[1:-1], codes[1:-1]):
        r = _left(st, r, bits, m.config)
    np.testing.assert_array_equal(codes[-1], golden.encoder_forward(m.stages[-1], r, m.config))


def test_visit_order_is_margin_then_index():
    """refine_code visits bits by increasing margin, ties in index order (the order the encoder
    core's margin scan gives), every pass in the same order, and keeps a flip only when the
    error drops (a tie keeps the bit)."""
    start = np.zeros((1, 5), np.int64)
    margin = np.array([[7, 3, 9, 3, 1]])
    visits = []

    def no_gain(b):                        # every trial ties: no flip is kept
        visits.append(tuple(np.flatnonzero(b[0])))
        return np.zeros(len(b))
    bits = golden.refine_code(no_gain, start.copy(), margin, passes=2, candidates=4)
    assert visits == [()] + [(4,), (1,), (3,), (0,)] * 2
    np.testing.assert_array_equal(bits, start)
    target = np.array([[1, 1, 1, 0, 1]])
    bits = golden.refine_code(lambda b: ((b - target) ** 2).sum(axis=1), start.copy(), margin,
                              passes=1, candidates=4)
    np.testing.assert_array_equal(bits, [[1, 1, 0, 0, 1]])  # bit 2 (margin 9) is not visited


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
    assert cfg.search.passes == 1 and cfg.search.candidates == (24, 8, 4, 4, 2)
    # the schedule's last entry holds for the later stages; the last stage is not searched
    assert [cfg.search_bits(n) for n in range(9)] == [24, 8, 4, 4, 2, 2, 2, 2, 0]
    assert preset("tiny").search_bits(0) == 16 and preset("tiny").search_bits(1) == 0   # capped at B
    assert [cfg.replace(search={"candidates": 0}).search_bits(n) for n in (0, 8)] == [64, 0]
    assert cfg.replace(search={"passes": 0}).search_bits(0) == 0
    for bad in ([], [3, -1], -2, 2.5):
        with pytest.raises(ConfigError, match="candidates"):
            cfg.replace(search={"candidates": bad})
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg                    # a list reads back
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
    assert rc == 1 and "out of range" in err and len(err.strip().splitlines()) == 1
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
    full = "cascade (fixed, search 2 x all bits, software)"
    assert set(by) == {"cascade (fixed)", "cascade (fixed, no search)", full}
    n = preset("tiny").network.stages
    assert all(set(v) == set(range(1, n + 1)) for v in by.values())
    # same decoder, better codes: the waveform SNR at K = 1 rises with the search's effort
    assert by[full][1]["snr_db"] > by["cascade (fixed)"][1]["snr_db"] > by["cascade (fixed, no search)"][1]["snr_db"]
    md = (out / "report.md").read_text()
    assert "no search" in md and "encoder core" in md and "1 x 24,8,4,4,2 bits" in md
