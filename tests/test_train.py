"""Training: resumable, deterministic, and distributed through torchrun."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from model import dsp
from model.config import preset
from model.train import TrainOptions, train


def _signals(speech_path):
    from model.data import load_wav
    x = load_wav(speech_path)
    return [x[:16000 * 2]]


def _fit(cfg, sig):
    return dsp.LsfQuantizer.fit(dsp.training_lsfs(sig, cfg), cfg.lpc.lsf_bits)


def test_training_is_deterministic_and_lowers_the_error(speech_wav, tmp_path):
    cfg = preset("tiny")
    sig = _signals(speech_wav)
    q = _fit(cfg, sig)
    opts = TrainOptions(seed=3, greedy_epochs=3, finetune_rounds=1, finetune_epochs=1, augment=False, batch=32)
    a, ha = train(cfg, sig, opts, q, log=lambda *_: None)
    b, hb = train(cfg, sig, opts, q, log=lambda *_: None)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    # greedy losses are residual errors in dB re. the input: every stage must get below 0 dB
    assert all(l < 0 for l in ha["greedy"]), ha


def test_training_resumes_from_its_checkpoint(speech_wav, tmp_path):
    cfg = preset("tiny")
    sig = _signals(speech_wav)
    q = _fit(cfg, sig)
    ck = tmp_path / "m.ckpt"
    opts = TrainOptions(seed=1, greedy_epochs=1, finetune_rounds=1, finetune_epochs=1, augment=False)
    full, _ = train(cfg, sig, opts, q, checkpoint=ck, log=lambda *_: None)
    state = torch.load(ck, weights_only=True)
    assert state["done_stages"] == cfg.network.stages and state["done_rounds"] == 1
    logs = []
    again, _ = train(cfg, sig, opts, q, checkpoint=ck, log=logs.append)
    assert any("resuming" in m for m in logs)
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


@pytest.mark.slow
def test_torchrun_two_processes(speech_wav, tmp_path):
    """Two CPU processes (gloo) through torchrun, as a multi-GPU user would run it."""
    data = tmp_path / "wavs"
    data.mkdir()
    shutil.copy(speech_wav, data / "a.wav")
    out = tmp_path / "ddp.pt"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "model.cli",
                        "train", str(data), "--config", "tiny", "--out", str(out), "--greedy-epochs", "1",
                        "--rounds", "1", "--finetune-epochs", "1", "--no-augment", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from model.codec import Codec
    assert Codec.load(out).cfg == preset("tiny")


def test_band_loss_trains_and_differs_from_mse(speech_wav):
    """``loss="bands"`` trains (greedy and fine-tuning), lowers the error and gives other weights
    than the default MSE; an unknown loss is refused."""
    from model.train import band_level_error
    cfg = preset("tiny")
    sig = _signals(speech_wav)
    q = _fit(cfg, sig)
    base = dict(seed=2, greedy_epochs=2, finetune_rounds=1, finetune_epochs=1, augment=False, batch=32)
    mse, _ = train(cfg, sig, TrainOptions(**base), q, log=lambda *_: None)
    bands, hist = train(cfg, sig, TrainOptions(**base, loss="bands"), q, log=lambda *_: None)
    assert len(hist["greedy"]) == cfg.network.stages and len(hist["finetune"]) == 1
    assert all(np.isfinite(hist["greedy"])) and np.isfinite(hist["finetune"][0])
    assert any(not torch.equal(v, bands.state_dict()[k]) for k, v in mse.state_dict().items())
    # the band term is zero for a perfect reconstruction and grows with a missing band
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, cfg.coefficients))).float()
    assert band_level_error(x, x, cfg).item() == 0.0
    holed = x.clone()
    holed[:, 40:] = 0
    assert band_level_error(x, holed, cfg).item() > 5.0
    with pytest.raises(ValueError, match="loss"):
        train(cfg, sig, TrainOptions(**base, loss="nope"), q, log=lambda *_: None)


def test_band_level_error_stft_bins():
    """For the STFT layout the band term works on |X|^2 per bin (real and imaginary parts of
    one bin together), so a 90-degree phase rotation of every bin costs nothing."""
    from model.train import band_level_error
    cfg = preset("tiny").replace(signal={"transform": "stft"})
    hop = cfg.signal.hop
    rng = np.random.default_rng(1)
    re = rng.standard_normal((4, hop + 1))
    im = rng.standard_normal((4, hop + 1))
    im[:, 0] = im[:, hop] = 0
    x = torch.from_numpy(np.concatenate([re, im[:, 1:hop]], 1)).float()
    rot = torch.from_numpy(np.concatenate([-im, re[:, 1:hop]], 1)).float()  # bins 1..hop-1 turned
    rot[:, 0], rot[:, hop] = x[:, 0], x[:, hop]                              # DC, Nyquist kept
    assert band_level_error(x, rot, cfg).item() < 1e-4
    assert band_level_error(x, 0.1 * x, cfg).item() > 10


def test_code_entropy_is_a_differentiable_rate_estimate():
    from model.net import Stage
    from model.train import code_entropy
    torch.manual_seed(0)
    cfg = preset("tiny")
    st = Stage(cfg, 0)
    r = torch.randn(512, cfg.coefficients)
    with torch.no_grad():
        st.enc[-1].bias.zero_()
    h = code_entropy(st, r)
    assert 0.8 < float(h) <= 1.0                       # bits near balance: about 1 bit each
    h.backward()
    assert st.enc[-1].bias.grad.abs().sum() > 0        # it trains the encoder
    with torch.no_grad():
        st.enc[-1].bias.fill_(5.0)                     # every bit +1: no information, no rate
    assert float(code_entropy(st, r)) < 0.05


def test_scale_rules(speech_wav):
    """``scale="mean"`` ends with alpha = mean |W| stored in every binary layer (the rule of the
    older models); ``scale="learned"`` trains alpha away from it, with other weights; an unknown
    rule is refused."""
    cfg = preset("tiny")
    sig = _signals(speech_wav)
    q = _fit(cfg, sig)
    base = dict(seed=4, greedy_epochs=2, finetune_rounds=1, finetune_epochs=1, augment=False, batch=32)
    mean, _ = train(cfg, sig, TrainOptions(**base, scale="mean"), q, log=lambda *_: None)
    learned, _ = train(cfg, sig, TrainOptions(**base), q, log=lambda *_: None)
    from model.net import BinaryLinear
    mean_layers = [m for m in mean.modules() if isinstance(m, BinaryLinear)]
    learned_layers = [m for m in learned.modules() if isinstance(m, BinaryLinear)]
    for m in mean_layers:
        assert not m.tied
        torch.testing.assert_close(m.alpha.detach(), m.weight.detach().abs().mean(1))
        torch.testing.assert_close(m.scale(), m.alpha.detach())
    assert all(not torch.allclose(m.alpha, m.weight.abs().mean(1)) for m in learned_layers)
    with pytest.raises(ValueError, match="scale"):
        train(cfg, sig, TrainOptions(**base, scale="nope"), q, log=lambda *_: None)


def test_state_dict_without_alpha_loads_with_the_mean_rule():
    """A model file made before ``alpha`` existed: its layers load with alpha = mean |W|, the
    scale those models were trained and exported with."""
    from model.net import Cascade
    cfg = preset("tiny")
    torch.manual_seed(0)
    net = Cascade(cfg)
    old = {k: v for k, v in net.state_dict().items() if not k.endswith(".alpha")}
    fresh = Cascade(cfg)
    fresh.load_state_dict(old)
    for name, m in fresh.named_modules():
        if hasattr(m, "alpha"):
            torch.testing.assert_close(m.alpha.detach(), old[name + ".weight"].abs().mean(1))


def test_training_frames_cache(monkeypatch, tmp_path, train_signals):
    """The analysis cache gives the very frames the analysis does, is keyed by the front end
    (a network change shares it, a front-end change does not), and survives a damaged file."""
    from model.config import preset
    from model.train import cached_training_frames, frames_from_signals
    monkeypatch.setenv("CASCADE_CACHE", str(tmp_path))
    cfg = preset("tiny")
    sig = [s[:16000] for s in train_signals[:2]]
    q = dsp.LsfQuantizer.fit(dsp.training_lsfs(sig, cfg), cfg.lpc.lsf_bits)
    a = cached_training_frames(sig, cfg, q, False, log=lambda m: None)
    np.testing.assert_array_equal(a, frames_from_signals(sig, cfg, q))
    files = list(tmp_path.glob("frames-*.npy"))
    assert len(files) == 1
    msgs = []
    b = cached_training_frames(sig, cfg.replace(network={"hidden": cfg.network.hidden + 8}), q, False, msgs.append)
    np.testing.assert_array_equal(a, b)
    assert msgs and "cache" in msgs[0]
    cached_training_frames(sig, cfg.replace(gain={"step_db": 2.0}), q, False, log=lambda m: None)
    assert len(list(tmp_path.glob("frames-*.npy"))) == 2
    files[0].write_bytes(b"damaged")
    np.testing.assert_array_equal(cached_training_frames(sig, cfg, q, False, log=lambda m: None), a)


def test_search_residuals_train_later_stages_on_the_searched_residual(speech_wav):
    """``search_residuals``: stage 1 trains alike (nothing is searched before it); the later
    stages see the residual of the searched codes, so they come out different; with the search
    off the option changes nothing."""
    cfg = preset("tiny").replace(search={"passes": 1, "candidates": 0})
    sig = _signals(speech_wav)
    q = _fit(cfg, sig)
    base = dict(seed=4, greedy_epochs=1, finetune_rounds=0, augment=False, batch=32)
    plain, _ = train(cfg, sig, TrainOptions(**base), q, log=lambda *_: None)
    searched, hist = train(cfg, sig, TrainOptions(**base, search_residuals=True), q, log=lambda *_: None)
    assert all(np.isfinite(hist["greedy"]))
    p, s = plain.state_dict(), searched.state_dict()
    first = [k for k in p if k.startswith("stages.0.")]
    later = [k for k in p if k.startswith("stages.1.")]
    assert first and later
    assert all(torch.equal(p[k], s[k]) for k in first)
    assert any(not torch.equal(p[k], s[k]) for k in later)
    off = cfg.replace(search={"passes": 0})
    a, _ = train(off, sig, TrainOptions(**base), q, log=lambda *_: None)
    b, _ = train(off, sig, TrainOptions(**base, search_residuals=True), q, log=lambda *_: None)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
