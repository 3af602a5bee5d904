"""model.metrics on real speech: identity, noise, degradation ordering, failure cases."""

import warnings

import numpy as np
import pytest

from model.data import POCKETSPHINX_DIR, load_wav
from model.metrics import MetricWarning, measure, pesq_wb, seg_snr_db, snr_db, stoi

pytestmark = pytest.mark.skipif(not POCKETSPHINX_DIR.exists(),
                                reason="pocketsphinx-testdata not installed")


@pytest.fixture(scope="module")
def speech():
    return load_wav(POCKETSPHINX_DIR / "cards/005.wav")


def test_identity(speech):
    m = measure(speech, speech)
    assert m["pesq_wb"] > 4.5
    assert m["stoi"] > 0.999
    assert m["snr_db"] == np.inf
    assert m["seg_snr_db"] == 35.0


def test_noise_scores_low(speech):
    noise = np.random.default_rng(0).standard_normal(len(speech)) * 0.1
    m = measure(speech, noise)
    assert m["pesq_wb"] < 1.5 and m["stoi"] < 0.6 and m["snr_db"] < 0


def test_more_noise_is_worse(speech):
    rng = np.random.default_rng(1)
    n = rng.standard_normal(len(speech))
    a = measure(speech, speech + 0.003 * n)
    b = measure(speech, speech + 0.03 * n)
    for k in ("pesq_wb", "stoi", "snr_db", "seg_snr_db"):
        assert a[k] > b[k], k
    assert snr_db(speech, speech + 0.03 * n) == pytest.approx(
        10 * np.log10(np.sum(speech ** 2) / np.sum((0.03 * n) ** 2)), abs=1e-9)


def test_length_mismatch_is_trimmed(speech):
    assert pesq_wb(speech, np.concatenate([speech, np.zeros(500)])) > 4.5
    assert stoi(speech[:-300], speech) > 0.999
    assert seg_snr_db(speech, speech[:-7]) == 35.0


def test_failures_give_nan_with_reason(speech):
    reasons = []
    with pytest.warns(MetricWarning):
        m = measure(speech[:1000], speech[:1000], reasons=reasons)
    assert np.isnan(m["pesq_wb"]) and np.isnan(m["stoi"])
    assert any("too short" in r for r in reasons)
    reasons = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        m = measure(np.zeros(32000), np.zeros(32000), reasons=reasons)
    assert all(np.isnan(v) for v in m.values()) and len(reasons) == 4


def test_other_rate_is_resampled_for_pesq(speech):
    from model.data import resample
    x = resample(speech, 16000, 8000)
    assert pesq_wb(x, x, sr=8000) > 4.5


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        snr_db(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ValueError):
        snr_db([], [])
