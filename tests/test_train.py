"""Training: resumable, deterministic, and distributed through torchrun."""

import os
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
