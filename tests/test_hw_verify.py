"""sim.verify.verify_cores (the API behind ``cascade verify``) on frames read from a file."""

import os

import numpy as np
import pytest

from model.export import load_export
from sim.runner import FRAMES_ENV
from sim.verify import verify_cores
from tests.helpers import CORE_LANES as LANES, CORE_MODEL as MODEL, frames_with_extremes


def test_verify_cores_on_frames_file(tmp_path):
    """Frames from the .npz named by $CASCADE_FRAMES (array ``frames``, (T, D) ints; with
    $CASCADE_EXPORT an export directory for the model), else a file written here."""
    model = MODEL
    if os.environ.get("CASCADE_EXPORT"):
        model = load_export(os.environ["CASCADE_EXPORT"])
    path = os.environ.get(FRAMES_ENV)
    if not path:
        path = tmp_path / "frames.npz"
        np.savez(path, frames=frames_with_extremes(0, seed=5)[:3])
    frames = np.load(path)["frames"]
    if frames.shape[1] != model.config.coefficients:
        pytest.skip(f"{path}: {frames.shape[1]} coefficients, model has {model.config.coefficients}")
    lanes = min(LANES, min(min(fi for _, fi, _ in sh) for s in range(model.config.network.stages)
                           for sh in model.config.layer_shapes(s).values()))
    res = verify_cores(model, frames, lanes, tmp_path / "build")
    for side in ("encoder", "decoder"):
        assert res[side]["mismatches"] == 0, (side, res[side]["first_mismatch"])
        assert res[side]["words"] > 0
    # the measured frame period is reported (3 full-speed frames give one steady-state period)
    if not os.environ.get(FRAMES_ENV):
        assert res["encoder"]["cycles_per_frame"] == res["encoder"]["designed_cycles_per_frame"]


def test_verify_with_a_relative_build_dir(tmp_path, monkeypatch):
    """``cascade verify`` defaults to the relative ``build/verify``: the simulator, which runs
    inside the build folder, must still find its vectors."""
    monkeypatch.chdir(tmp_path)
    res = verify_cores(MODEL, frames_with_extremes(2), LANES, "build/verify")
    assert res["encoder"]["mismatches"] == 0 and res["encoder"]["words"] > 0
    assert res["decoder"]["mismatches"] == 0 and res["decoder"]["words"] > 0
