"""model.baselines: real encode/decode with opus-tools and ffmpeg; skipped per missing tool."""

import numpy as np
import pytest

from model.baselines import (align, available_baselines, encode_decode,
                             run_baseline)
from model.data import POCKETSPHINX_DIR, load_wav
from model.metrics import measure

AVAIL = available_baselines()
need_data = pytest.mark.skipif(not POCKETSPHINX_DIR.exists(),
                               reason="pocketsphinx-testdata not installed")


@pytest.fixture(scope="module")
def speech():
    return load_wav(POCKETSPHINX_DIR / "librivox/sense_and_sensibility_01_austen_64kb-0930.wav")


def test_available_is_a_dict_of_bools():
    assert set(AVAIL) == {"opus", "speex", "g722"}
    assert all(isinstance(v, bool) for v in AVAIL.values())


def test_align_recovers_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000)
    for d in (37, -25, 0):
        y = np.roll(x, d)
        a, lag = align(x, y)
        assert lag == d and len(a) == len(x)
        inner = slice(100, -100)
        np.testing.assert_allclose(a[inner], x[inner])


def test_unknown_and_bad_rate():
    with pytest.raises(ValueError):
        run_baseline("mp3", np.zeros(1600), 16000, 32)
    if AVAIL["g722"]:
        with pytest.raises(ValueError):
            run_baseline("g722", np.zeros(1600), 16000, 48)


@need_data
@pytest.mark.skipif(not AVAIL["opus"], reason="opusenc/opusdec not installed")
def test_opus_32k_is_good_and_8k_is_worse(speech):
    y32, k32 = run_baseline("opus", speech, 16000, 32)
    assert len(y32) == len(speech)
    assert 30 < k32 < 40  # file size incl. Ogg overhead
    m32 = measure(speech, y32)
    assert m32["pesq_wb"] > 3.0 and m32["stoi"] > 0.95
    r8 = encode_decode("opus", speech, 16000, 8)
    assert r8.payload_kbps < r8.actual_kbps < 12
    assert measure(speech, r8.decoded)["pesq_wb"] < m32["pesq_wb"]


@need_data
@pytest.mark.skipif(not AVAIL["g722"], reason="ffmpeg without g722")
def test_g722(speech):
    r = encode_decode("g722", speech, 16000)
    assert r.actual_kbps == pytest.approx(64, rel=0.01)
    assert 0 <= r.delay < 100
    m = measure(speech, r.decoded)
    assert m["pesq_wb"] > 3.8 and m["snr_db"] > 15  # waveform coder: aligned SNR is high


@need_data
@pytest.mark.skipif(not AVAIL["speex"], reason="ffmpeg without libspeex")
def test_speex(speech):
    r = encode_decode("speex", speech, 16000, 24)
    assert 22 < r.payload_kbps < 25  # wideband mode 23.8 kbps
    assert measure(speech, r.decoded)["pesq_wb"] > 3.5


@need_data
@pytest.mark.skipif(not AVAIL["opus"], reason="opusenc/opusdec not installed")
def test_other_input_rate(speech):
    from model.data import resample
    x = resample(speech, 16000, 48000)
    y, _ = run_baseline("opus", x, 48000, 24)
    assert len(y) == len(x)
    assert measure(resample(x, 48000, 16000), resample(y, 48000, 16000))["pesq_wb"] > 3.5


def test_report_table_and_plot(tmp_path):
    from model.report import markdown_table, rate_quality_plot
    pts = [{"system": "opus", "label": "Opus 8k", "kbps": 9.9, "pesq_wb": 3.1, "stoi": 0.95},
           {"system": "opus", "label": "Opus 16k", "kbps": 18.3, "pesq_wb": 4.3, "stoi": 0.98},
           {"system": "cascade", "kbps": 12.0, "pesq_wb": float("nan"), "stoi": 0.9}]
    t = markdown_table(pts)
    assert t.count("\n") == 5 and "| opus | Opus 8k |" in t and "nan" in t
    p = rate_quality_plot(pts, tmp_path / "sub" / "rq.png")
    assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"


@need_data
@pytest.mark.skipif(not all(AVAIL.values()), reason="a baseline codec is missing")
def test_baseline_points_on_one_file():
    from model.report import baseline_points
    f = POCKETSPHINX_DIR / "cards/004.wav"
    pts = baseline_points([f], opus_kbps=(16,), speex_kbps=(17,), progress=False)
    assert [p["system"] for p in pts] == ["opus", "speex", "g722"]
    for p in pts:
        assert p["files"] == 1 and p["pesq_wb"] > 2.5 and 0.9 < p["stoi"] <= 1
