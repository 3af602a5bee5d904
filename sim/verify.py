"""``verify_cores``: simulate both cores on integer frames and compare with the golden model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.golden import IntModel

from .runner import run_core

__all__ = ["verify_cores"]


def verify_cores(model: IntModel, frames: np.ndarray, lanes: int, build_dir,
                 stages_per_frame=None, p_valid: float = 1.0, p_ready: float = 1.0,
                 seed: int = 0, storage: str = "rom") -> dict:
    """Simulate ``EncoderCore`` and ``DecoderCore`` (Icarus + cocotb) on ``frames``.

    Parameters
    ----------
    model : IntModel
    frames : ndarray (T, D) of int
        Golden-model input frames (``model.golden.quantize_frames``).
    lanes : int
        P.
    build_dir : path
        Verilog, simulator build and vectors go to ``build_dir/encoder`` and ``build_dir/decoder``.
    stages_per_frame : None, int or (T,) ints
        K for the decoder (default: all N stages).
    p_valid, p_ready : float
        Probability of input valid / output ready per cycle (1.0: full speed, cycles measured).
    storage : str
        The cores' weight storage (``hw/store.py``); ``"spram"`` simulates the iCE40 form with
        Yosys' SB_SPRAM256KA model, loading the weights through the core's load stream first.

    Returns
    -------
    dict
        ``{"encoder": r, "decoder": r}`` with ``r = {"words", "mismatches", "cycles_per_frame"
        (measured in simulation; None unless full speed and K = N), "designed_cycles_per_frame",
        "ideal_cycles_per_frame", "first_mismatch": {"frame", "stage", "word", "expected", "got"}
        or None}``.  For the decoder ``stage`` is K-1, the last stage summed.
    """
    frames = np.asarray(frames, dtype=np.int64)
    if frames.ndim != 2 or frames.shape[1] != model.config.coefficients:
        raise ValueError(f"frames must be (T, {model.config.coefficients}), not {frames.shape}")
    build_dir = Path(build_dir).resolve()   # the simulator runs in build_dir: absolute paths
    out = {}
    for side in ("encoder", "decoder"):
        r = run_core(model, side, lanes, build_dir / side, frames,
                     stages_per_frame=stages_per_frame if side == "decoder" else None,
                     p_valid=p_valid, p_ready=p_ready, seed=seed, check=False, storage=storage)
        keys = ("words", "mismatches", "cycles_per_frame", "designed_cycles_per_frame",
                "ideal_cycles_per_frame", "first_mismatch")
        out[side] = {k: r[k] for k in keys}
    return out
