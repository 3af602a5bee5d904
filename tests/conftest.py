"""Shared fixtures: real speech and a quickly trained tiny codec.

Real speech comes from Debian's ``pocketsphinx-testdata`` (installed in CI); the project's own
``data/`` folders are gitignored and never read here.  Training uses a recording of the *train*
split (librivox ...-0870); tests that measure use a recording of the *test* split (-0920).
"""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI runs the property tests and fuzzers with a fixed seed (a failure there is reproducible);
# a developer's run explores new examples each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from model.data import load_wav, write_wav

# Tiny networks on 2 shared cores: torch's default thread pool is up to 100x slower than one
# thread here (spin-waiting under contention).  A process-wide speed setting only.
torch.set_num_threads(1)

# Trainings in the suite do not read or fill the user's analysis cache (model.train); the test of
# the cache gives it a folder of its own.
os.environ["CASCADE_CACHE"] = "off"

PS_DATA = Path("/usr/share/pocketsphinx/test/data")
TRAIN_WAV = PS_DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
TEST_WAV = PS_DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0920.wav"
SR = 16000


def _need(p: Path) -> Path:
    if not p.is_file():
        pytest.skip(f"{p} missing (apt-get install pocketsphinx-testdata)")
    return p


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """2.5 s of held-out real speech (16 kHz mono float64 in [-1, 1])."""
    x = load_wav(_need(TEST_WAV), SR)
    return x[: int(2.5 * SR)]


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory, speech) -> Path:
    """Path of a 16 kHz mono 16-bit WAV holding ``speech``."""
    return write_wav(tmp_path_factory.mktemp("speech") / "speech.wav", speech, SR)


@pytest.fixture(scope="session")
def train_signals() -> list[np.ndarray]:
    """4 s of real speech from the train split."""
    return [load_wav(_need(TRAIN_WAV), SR)[: 4 * SR]]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, train_signals) -> Path:
    """A tiny codec (preset "tiny": 2 stages of 16 bits, hop 64) trained for one epoch per phase,
    with a fitted LSF quantizer and Huffman codebooks from its fixed-arith codes, saved with
    ``Codec.save``.  About 4 s on one core."""
    from model import dsp
    from model.codec import Codec
    from model.config import preset
    from model.train import TrainOptions, train

    cfg = preset("tiny")
    q = dsp.LsfQuantizer.fit(dsp.training_lsfs(train_signals, cfg), cfg.lpc.lsf_bits)
    opts = TrainOptions(greedy_epochs=1, finetune_rounds=1, finetune_epochs=1, augment=False)
    net, hist = train(cfg, train_signals, opts, q, log=lambda m: None)
    codec = Codec(cfg, net.eval(), q)
    codec.train_entropy_coders(train_signals, "fixed")
    codec.meta = {"made_by": "tests/conftest.py", "history": hist}
    path = codec.save(tmp_path_factory.mktemp("model") / "tiny.pt")
    return path


@pytest.fixture(scope="session")
def tiny_codec(tiny_model_path):
    """The tiny codec, loaded from its file (shared: do not modify)."""
    from model.codec import Codec
    return Codec.load(tiny_model_path)
