"""EncoderCore and DecoderCore in Icarus Verilog + cocotb, word for word against model.golden."""


import numpy as np
import pytest

from model.config import preset
from hw.schedule import Schedule
from model.golden import encode, random_model
from sim.runner import build_core, run_core
from tests.helpers import CORE_CFG as CFG, CORE_LANES as LANES, CORE_MODEL as MODEL, frames_with_extremes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cores")
    return {side: (build_core(MODEL, side, LANES, root / side), root / side) for side in ("encoder", "decoder")}


def run(built, side, frames, **kw):
    b, d = built[side]
    return run_core(MODEL, side, LANES, d, frames, built=b, **kw)


def _gaps(model, side, lanes):
    """The designed cycles of a frame without MAC issue: the code search's waits."""
    return Schedule(model, lanes, side).search_gap_cycles()


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_core_bit_exact_and_fast(built, side):
    """Every output word equals the golden model's (the encoder's with its code search, 1 pass
    over all 16 bits of stage 1 in the tiny config); the measured steady-state frame period is
    the designed one, and besides the search's waits within 10 % of MACs / P."""
    assert CFG.search.passes > 0 and (_gaps(MODEL, side, LANES) > 0) == (side == "encoder")
    r = run(built, side, frames_with_extremes(3))
    assert r["received"] == r["words"] and r["mismatches"] == 0, r["first_mismatch"]
    assert r["cycles_per_frame"] == r["designed_cycles_per_frame"]
    assert r["cycles_per_frame"] - _gaps(MODEL, side, LANES) <= 1.1 * r["ideal_cycles_per_frame"]


@pytest.mark.parametrize("passes, candidates, lanes", [
    (0, 0, 16),                                             # the encoder without search
    pytest.param(2, 0, 4, marks=pytest.mark.slow),          # 2 passes over every bit
])
def test_encoder_search_settings(tmp_path, passes, candidates, lanes):
    """The encoder core for other ``SearchConfig`` settings, against ``golden.encode`` (which
    reads the same config); the search's codes differ from the plain network's."""
    cfg = CFG.replace(search={"passes": passes, "candidates": candidates})
    model = random_model(cfg, seed=3)
    frames = frames_with_extremes(3)
    r = run_core(model, "encoder", lanes, tmp_path, frames)
    assert r["received"] == r["words"] and r["mismatches"] == 0, r["first_mismatch"]
    assert r["cycles_per_frame"] == r["designed_cycles_per_frame"]
    assert r["cycles_per_frame"] - _gaps(model, "encoder", lanes) <= 1.1 * r["ideal_cycles_per_frame"]
    plain = encode(model, frames, search=0)
    assert any((a != b).any() for a, b in zip(encode(model, frames), plain)) == (passes > 0)


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_lanes_above_the_smallest_fan_in(tmp_path, side):
    """P = 32 is above the 16 code bits that the decoder networks read: groups wait for the post
    unit (a build without that wait loses words); still bit-exact at the designed speed."""
    lanes = 32
    assert Schedule(MODEL, lanes, side).short_groups
    r = run_core(MODEL, side, lanes, tmp_path, frames_with_extremes(2, seed=5))
    assert r["received"] == r["words"] and r["mismatches"] == 0, r["first_mismatch"]
    assert r["cycles_per_frame"] == r["designed_cycles_per_frame"]


def test_decoder_any_number_of_stages(built):
    ks = np.array([1, 2, 2, 1, 1, 2])
    r = run(built, "decoder", frames_with_extremes(0, seed=1)[:len(ks)], stages_per_frame=ks)
    assert r["mismatches"] == 0, r["first_mismatch"]


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_core_backpressure_and_input_gaps(built, side):
    r = run(built, side, frames_with_extremes(1, seed=2)[:4], p_valid=0.6, p_ready=0.4, seed=7,
            stages_per_frame=[2, 1, 2, 2] if side == "decoder" else None)
    assert r["received"] == r["words"] and r["mismatches"] == 0, r["first_mismatch"]


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_wrong_golden_value_is_detected(built, side):
    frames = frames_with_extremes(1, seed=4)[:2]
    hit = 21 if side == "encoder" else 37     # encoder: frame 0, stage 1, bit 5; decoder: word 37

    def corrupt(vec):
        vec["expected"][hit] = 1 - vec["expected"][hit] if side == "encoder" else vec["expected"][hit] + 1
    r = run(built, side, frames, expected_override=corrupt, check=False)
    assert r["mismatches"] == 1
    fm = r["first_mismatch"]
    assert fm["frame"] == 0 and fm["got"] != fm["expected"]
    assert fm["word"] == (hit if side == "decoder" else hit - CFG.network.code_bits[0])
    assert fm["stage"] == (1 if side == "encoder" else CFG.network.stages - 1)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_lane_sweep(tmp_path, side, lanes):
    model = random_model(CFG, seed=lanes)
    r = run_core(model, side, lanes, tmp_path, frames_with_extremes(4, seed=lanes))
    assert r["mismatches"] == 0
    assert r["cycles_per_frame"] == r["designed_cycles_per_frame"]
    assert r["cycles_per_frame"] - _gaps(model, side, lanes) <= 1.1 * r["ideal_cycles_per_frame"]


# ---- cores whose weights are loaded at run time (hw/store.py) ------------------------------------
def _tiny16(**changes):
    """Tiny codec with 16-bit parameter words, as SPRAM needs."""
    cfg = preset("tiny").replace(fixed={"scale_bits": 8, "bias_bits": 8}, **changes)
    model = random_model(cfg, 7)
    A = cfg.fixed.act_bits
    frames = np.random.default_rng(4).integers(-(1 << (A - 1)), 1 << (A - 1), (4, cfg.coefficients))
    return model, frames


@pytest.mark.parametrize("storage", ["spram", "ram"])
@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_loaded_core_bit_exact(tmp_path, side, storage):
    """Load the image through the ``load`` stream (SPRAM: Yosys' SB_SPRAM256KA model), then every
    output word equals the golden model's, at the ROM core's designed speed."""
    model, frames = _tiny16()
    res = run_core(model, side, 16, tmp_path, frames, storage=storage, p_valid=1.0)
    assert res["mismatches"] == 0 and res["words"] > 0
    assert res["cycles_per_frame"] == res["designed_cycles_per_frame"]


def test_loaded_core_wrong_image_is_caught(tmp_path):
    """One flipped weight bit in the loaded image shows up as mismatching code bits (without
    the code search, whose flips may hide a small change of the network's code)."""
    from hw.schedule import Schedule
    model, frames = _tiny16(search={"passes": 0})
    image = Schedule(model, 16, "encoder").load_words()
    image[3] ^= 1
    res = run_core(model, "encoder", 16, tmp_path, frames, storage="spram", load_image=image, check=False)
    assert res["mismatches"] > 0
