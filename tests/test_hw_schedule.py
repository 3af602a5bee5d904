"""hw.schedule: layer schedule, memory images and cycle model; hw.rtl export."""

import json

import pytest

from hw.encoder import EncoderCore
from hw.rtl import export_rtl
from hw.schedule import Schedule
from model.config import CodecConfig, preset
from model import golden
from model.golden import random_model

CFG = preset("tiny")
MODEL = random_model(CFG, seed=11)


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_schedule_follows_layer_shapes(side):
    sc = Schedule(MODEL, 8, side)
    exp = []
    for s in range(CFG.network.stages):
        sh = CFG.layer_shapes(s)
        exp += sh[side] if side == "decoder" else sh["encoder"] + (sh["decoder"] if s < CFG.network.stages - 1 else [])
    assert [(op.kind, op.fan_in, op.fan_out) for op in sc.ops] == exp
    # the ops are CodecConfig.core_layers(side), the one definition of what a core runs
    assert [(op.stage, op.side, op.layer) for op in sc.ops] == CFG.core_layers(side)
    shapes = [CFG.layer_shapes(s) for s in range(CFG.network.stages)]
    assert CFG.binary_macs_per_frame(side) == sum(shapes[s][n][i][1] * shapes[s][n][i][2]
                                                  for s, n, i in CFG.core_layers(side))
    import dataclasses
    plain = dataclasses.replace(MODEL, config=CFG.replace(search={"passes": 0}))
    assert Schedule(plain, 8, side).binary_macs_per_frame() == CFG.binary_macs_per_frame(side)
    with pytest.raises(ValueError):
        CFG.core_layers("both")


def test_weight_and_param_images_decode_back():
    P = 8
    sc = Schedule(MODEL, P, "encoder")
    rows, params = sc.weight_rows(), sc.param_rows()
    assert len(rows) == sc.weight_depth and len(params) == sc.param_depth
    sb, bb = sc.scale_bits, sc.bias_bits
    for op in sc.ops:
        L = getattr(MODEL.stages[op.stage], op.side)[op.layer]
        for g in range(op.groups):
            for j in range(op.fan_in):
                word = rows[op.w_base + g * op.fan_in + j]
                for l in range(P):
                    i = g * P + l
                    assert (word >> l) & 1 == (L.weights[i, j] if i < op.fan_out else 0)
        for i in range(op.fan_out):
            r = params[op.p_base + i]
            m, b = r & ((1 << sb) - 1), r >> sb
            m -= (m >> (sb - 1)) << sb
            b -= (b >> (bb - 1)) << bb
            assert (m, b) == (L.mult[i], L.bias[i])


def test_cycle_model_within_ten_percent_and_default_sizes():
    for P in (4, 8, 16):
        for side in ("encoder", "decoder"):
            sc = Schedule(MODEL, P, side)
            # MAC cycles within 10 % of MACs / P; the code search's waits come on top
            work = sc.cycles_per_frame() - sc.search_gap_cycles()
            assert sc.ideal_cycles_per_frame() <= work <= 1.1 * sc.ideal_cycles_per_frame()
    # the default model: ~983k encoder weight bits, one wide memory
    big = CodecConfig()
    sc = Schedule(random_model(big, 0), 16, "encoder")
    assert sc.weight_depth * 16 == big.binary_macs_per_frame("encoder")
    assert sc.cycles_per_frame() - sc.search_gap_cycles() <= 1.1 * sc.ideal_cycles_per_frame()
    # its search: 8 searched stages, 1 + 6 + 1 decoder runs each, real time at 12 MHz
    assert sc.decoder_runs() == 8 * 8
    dec = [sum(i * o for _, i, o in big.layer_shapes(n)["decoder"]) for n in range(9)]
    runs = [1 + 8 * 0 + big.search_bits(n) + 1 for n in range(8)]   # 1 + searched bits + 1 per searched stage
    enc = big.binary_macs_per_frame("encoder") - sum(dec[:8])       # the encoder networks alone
    assert sc.binary_macs_per_frame() == enc + sum(r * d for r, d in zip(runs, dec))
    assert sc.cycles_per_frame() < 12e6 / big.signal.frame_rate
    plain = Schedule(random_model(big.replace(search={"passes": 0}), 0), 16, "encoder")
    assert plain.cycles_per_frame() == big.binary_macs_per_frame("encoder") // 16 == 48864 and plain.search_gap_cycles() == 0


def test_decoder_cycles_grow_with_stages():
    sc = Schedule(MODEL, 8, "decoder")
    assert sc.cycles_per_frame(1) < sc.cycles_per_frame(2) == sc.cycles_per_frame()


@pytest.mark.parametrize("lanes", [0, -1])
def test_lanes_out_of_range(lanes):
    with pytest.raises(ValueError, match="lanes"):
        EncoderCore(MODEL, lanes)


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_lanes_above_the_smallest_fan_in(side):
    """P above a layer's fan-in (tiny: the decoder's input layer reads 16 code bits): every group
    lasts at least P cycles, as the post unit takes one lane per cycle; at P up to the smallest
    fan-in nothing waits for it (the cycle count is what it was before short groups existed)."""
    plain = random_model(CFG.replace(search={"passes": 0}), 3)
    for P in (4, 8, 16, 32, 64):
        sc = Schedule(plain, P, side)
        assert sc.short_groups == (P > 16)
        floor = sum(op.groups * max(op.fan_in, P) for op in sc.ops)
        assert sc.cycles_per_frame() >= floor >= sc.ideal_cycles_per_frame()
        if P <= 8:                  # several groups per layer hide the dependency waits
            assert sc.cycles_per_frame() == floor == sc.ideal_cycles_per_frame()


def test_export_rtl(tmp_path):
    info = export_rtl(MODEL, tmp_path, 8)
    assert (tmp_path / "encoder.v").read_text().count("module encoder_core(") == 1
    assert "module decoder_core(" in (tmp_path / "decoder.v").read_text()
    on_disk = json.loads((tmp_path / "rtl.json").read_text())
    assert on_disk == json.loads(json.dumps(info))
    assert info["config_hash"] == CFG.config_hash and info["lanes"] == 8
    # the cores read their cycle counts from their Schedule; building a core here without
    # elaborating it would leave an UnusedElaboratable warning for a later test's stderr
    assert info["cycles_per_frame"]["encoder"] == Schedule(MODEL, 8, "encoder").cycles_per_frame()
    assert info["cycles_per_frame"]["decoder"] == Schedule(MODEL, 8, "decoder").cycles_per_frame()


def test_subbands_have_no_hardware_form(capsys, tmp_path):
    """A sub-band model (``network.subbands`` > 1) is refused by the sequencer, and the CLI
    says so in one line."""
    from model.codec import Codec
    from model.cli import main
    from model.net import Cascade
    cfg = CFG.replace(network={"subbands": 2})
    for side in ("encoder", "decoder"):
        with pytest.raises(ValueError, match=r"sub-band weight sharing \(network.subbands > 1\) has no hardware form"):
            Schedule(random_model(cfg, 1), 4, side)
    no_lpc = cfg.replace(lpc={"enabled": False})                 # a model file needs no LSF grid
    path = Codec(no_lpc, Cascade(no_lpc), None).save(tmp_path / "sb.pt")
    assert main(["export-rtl", "--model", str(path), "--out", str(tmp_path / "rtl"), "--lanes", "4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cascade: error: sub-band weight sharing") and err.count("\n") == 1


def test_export_rtl_search_flags(capsys, tmp_path):
    """``cascade export-rtl --search P --search-candidates C`` generates the encoder core for that
    search (cycles as the schedule of that config says); the decoder core does not change."""
    from model.cli import main
    from model.codec import Codec
    from model.net import Cascade
    cfg = CFG.replace(lpc={"enabled": False})
    path = Codec(cfg, Cascade(cfg), None).save(tmp_path / "m.pt")
    infos = {}
    for flags in ((), ("--search", "0"), ("--search", "2", "--search-candidates", "0")):
        out = tmp_path / ("rtl" + "_".join(flags))
        assert main(["export-rtl", "--model", str(path), "--out", str(out), "--lanes", "8", *flags]) == 0
        infos[flags] = json.loads((out / "rtl.json").read_text())["cycles_per_frame"]
        capsys.readouterr()
    model = Codec.load(path).int_model()
    for flags, (p, c) in (((), (1, (24, 8, 4, 4, 2))), (("--search", "0"), (0, 0)),
                          (("--search", "2", "--search-candidates", "0"), (2, 0))):
        m = golden.IntModel(model.config.replace(search={"passes": p, "candidates": c}), model.stages)
        assert infos[flags]["encoder"] == Schedule(m, 8, "encoder").cycles_per_frame()
        assert infos[flags]["decoder"] == infos[()]["decoder"]
    assert infos[("--search", "0")]["encoder"] < infos[()]["encoder"] < infos[("--search", "2", "--search-candidates", "0")]["encoder"]
