"""What several test modules share (tests do not import each other's modules): running the
``cascade`` CLI in-process, the one-line error contract, and the tiny model's core frames."""

import numpy as np

from model.cli import main
from model.config import preset
from model.golden import random_model

#: the tiny config and the random model the core benches and ``cascade verify`` tests run
CORE_CFG = preset("tiny")
CORE_MODEL = random_model(CORE_CFG, seed=3)
CORE_LANES = 16


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:          # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, err):
    """The error contract: a non-zero exit and exactly one line ``cascade: error: ...``."""
    lines = err.strip().splitlines()
    assert rc not in (0, None), err
    assert len(lines) == 1, err
    assert lines[0].startswith("cascade: error:"), err
    assert "Traceback" not in err


def frames_with_extremes(n_random, seed=0, cfg=CORE_CFG):
    """``n_random`` random activation frames, then the extremes of the activation format (all
    max, all min, alternating both ways, zeros) and one frame within +-1.0."""
    A = cfg.fixed.act_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    D = cfg.coefficients
    rng = np.random.default_rng(seed)
    alt = np.where(np.arange(D) % 2 == 0, hi, lo)
    return np.concatenate([
        rng.integers(lo, hi + 1, (n_random, D)),
        np.full((1, D), hi), np.full((1, D), lo), alt[None], alt[None, ::-1], np.zeros((1, D), int),
        rng.integers(-(1 << cfg.fixed.act_frac), 1 << cfg.fixed.act_frac, (1, D)),  # within +-1.0
    ])
