"""``cascade ablate`` (model/ablate.py): the variant table and a one-variant study on the tiny
preset with synthetic harmonic "speech" (no project data needed)."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from model import ablate
from model.config import CodecConfig, preset
from model.data import write_wav
from tests.helpers import assert_user_error, run

SR = 16000


def _voiced(seconds, f0, seed):
    """Harmonic tone with a gliding pitch, a formant-like envelope, syllable-rate amplitude
    modulation and a little noise (enough structure for LPC, PESQ and STOI)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - 700) / 900) ** 2 / 2) for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return 0.3 * x / np.abs(x).max() * env + 0.003 * rng.standard_normal(len(t))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate_wavs")
    write_wav(root / "train" / "a.wav", _voiced(2.0, 120, 0))
    write_wav(root / "train" / "b.wav", _voiced(2.0, 210, 1))
    write_wav(root / "synth" / "c.wav", _voiced(1.5, 160, 2))
    write_wav(root / "test" / "d.wav", _voiced(3.0, 140, 3))
    return root


def _stub_baselines(files, **kw):
    return [{"system": "opus", "label": "Opus 12k", "kbps": 12.5, "pesq_wb": 4.0, "stoi": 0.95, "files": len(files)},
            {"system": "opus", "label": "Opus 24k", "kbps": 24.6, "pesq_wb": 4.4, "stoi": 0.98, "files": len(files)},
            {"system": "g722", "label": "G.722 64k", "kbps": 64.0, "pesq_wb": 4.2, "stoi": 0.99, "files": len(files)}]


# ------------------------------------------------------------------------------ the table

@pytest.mark.parametrize("network", [None, (6, 96, 128), (9, 64, 96)])
def test_variant_table_builds_valid_configs(network):
    base = CodecConfig() if network is None else CodecConfig().replace(
        network={"stages": network[0], "code_bits": [network[1]] * network[0], "hidden": network[2]})
    vs = ablate.variants(base)
    names = [v.name for v in vs]
    assert names[0] == "baseline" and len(set(names)) == len(names)
    assert not set(names) & {n for n, _, _ in ablate.NOT_RUN}
    for n in ("stft", "lpc8", "lpc24", "lsf2", "lsf4", "finetune", "no_augment", "real_only",
              "loss_bands", "gamma085", "gamma100"):
        assert n in names
    total = base.code_bits_total
    shapes = []
    for v in vs:
        if v.skip is not None and "differ in width" in v.skip:   # stage-shape rows need equal stages
            assert len(set(base.network.code_bits)) > 1, (v.name, v.skip)
            continue
        if v.skip is not None:   # a variant that only sets what the base already has (lsf4 on the default)
            assert v.skip == "the same codec as the baseline for this base config", (v.name, v.skip)
            assert ablate.variant_config(base, v) == base
            continue
        assert v.tests.endswith(".") and len(v.tests) > 20
        cfg = ablate.variant_config(base, v)           # a valid CodecConfig (validate() ran)
        opts = ablate.variant_options(v, epochs=4)
        assert opts.greedy_epochs == v.options.get("greedy_epochs", 4) and opts.seed == 0
        if v.name == "baseline":
            assert cfg == base and opts.finetune_rounds == 0 and opts.augment and opts.loss == "mse"
            assert v.changed.startswith("nothing")
        else:
            assert cfg != base or v.options or v.data != "all", v.name
        if "code_bits" in v.config.get("network", {}):
            assert cfg.code_bits_total == total and cfg.network.stages != base.network.stages
            shapes.append(v.name)
    n, b = base.network.stages, base.network.code_bits[0]
    if len(set(base.network.code_bits)) == 1:
        assert f"s{2 * n}x{b // 2}" in shapes and "s3x192" in shapes
    else:
        assert not shapes
    by = {v.name: v for v in vs}
    assert ablate.variant_config(base, by["lpc24"]).lpc.order == 24
    assert ablate.variant_config(base, by["stft"]).coefficients == 2 * base.coefficients
    ft = ablate.variant_options(by["finetune"], epochs=4)
    assert ft.finetune_rounds == 2 and ft.finetune_epochs == 2
    assert ablate.variant_options(by["loss_bands"]).loss == "bands"
    assert ablate.variant_options(by["no_augment"]).augment is False
    assert ablate.variant_dirs(by["real_only"], ["real", "synth"]) == ["real"]
    for name, hidden in (("subband_sharing", base.network.hidden), ("subband_sharing_h2", base.network.hidden // 2)):
        sb = ablate.variant_config(base, by[name])      # 4 bands at the base's code bits and stages
        assert sb.network.subbands == 4 and sb.network.hidden == hidden
        assert sb.network.code_bits == base.network.code_bits
        assert sb.layer_shapes(0)["encoder"][0][1] == base.coefficients // 4
        assert ablate._weight_count(sb) < ablate._weight_count(base)
        assert f"{ablate._weight_count(sb):,} weights" in by[name].tests


def test_variant_table_reports_impossible_shapes():
    odd = CodecConfig().replace(network={"stages": 5, "code_bits": [8] * 5})
    vs = {v.name: v for v in ablate.variants(odd)}
    assert vs["coarser"].skip and "divisible" in vs["coarser"].skip
    assert any(v.skip and "symbol_bits" in v.skip for v in vs.values())   # 4-bit stages
    odd_d = {v.name: v for v in ablate.variants(CodecConfig().replace(signal={"hop": 330}))}
    assert "does not divide the 330 coefficients" in odd_d["subband_sharing"].skip


def test_summary_picks_rates_and_interpolates():
    pts = [{"stages": k, "kbps": 6.0 * k, "pesq_wb": 1.0 + 0.5 * k, "stoi": 0.7 + 0.05 * k} for k in (1, 2, 3, 4)]
    s = ablate.summarize(pts, 20.0)
    assert s["full"]["stages"] == 4 and s["near_rate"]["stages"] == 3            # 18 kbps nearest 20
    assert s["at_rate"]["pesq_wb"] == pytest.approx(1.0 + 0.5 * 20 / 6)
    assert ablate.summarize(pts, 50.0)["at_rate"]["pesq_wb"] is None             # off the curve


def test_loss_choices_match_train():
    from model.cli import build_parser
    from model.train import LOSSES
    sp = build_parser()._subparsers._group_actions[0].choices["train"]
    loss = next(a for a in sp._actions if a.dest == "loss")
    assert tuple(loss.choices) == LOSSES


def test_list(capsys):
    rc, out, err = run(capsys, "ablate", "--list", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert rows[0]["name"] == "baseline"
    assert {r["name"] for r in rows if not r["runs"]} >= {"float_weights"}
    assert next(r for r in rows if r["name"] == "subband_sharing")["runs"]
    ea = next(r for r in rows if r["name"] == "entropy_aware")
    assert ea["runs"] and "rate_weight=1.0" in ea["changed"]


# ------------------------------------------------------------------------------ a study

def test_one_variant_study_on_tiny(capsys, wavs, tmp_path, monkeypatch):
    import model.report
    monkeypatch.setattr(model.report, "baseline_points", _stub_baselines)
    out = tmp_path / "study"
    common = [wavs / "train", wavs / "synth", "--test", wavs / "test", "--out", out, "--epochs", 1,
              "--config", "tiny", "--threads", 1]
    rc, o, err = run(capsys, "ablate", *common, "--only", "baseline")
    assert rc == 0, err
    model_path = out / "models" / "baseline.pt"
    for f in ("ablation.json", "ablation.md", "ablation.png", "configs/baseline.json", "evals/baseline.json"):
        assert (out / f).is_file(), f
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "*" in (out / "models" / ".gitignore").read_text()
    res = json.loads((out / "ablation.json").read_text())
    rows = {r["name"]: r for r in res["variants"]}
    assert [r["name"] for r in res["variants"]][0] == "baseline"
    b = rows["baseline"]
    assert b["status"] == "done"
    assert [p["stages"] for p in b["points"]] == [1, 2]                        # tiny: 2 stages
    assert 0 < b["points"][0]["kbps"] < b["points"][1]["kbps"]
    assert all(np.isfinite(p["stoi"]) for p in b["points"])
    assert b["full"]["stages"] == 2 and b["delta"]["full_pesq_wb"] == 0.0 and b["train_seconds"] > 0
    # the host-side variants need no training; the tiny preset searches like the default, so
    # `search_front` is the baseline itself and is not run
    host_only = {"no_postfilter", "no_pitch_postfilter", "search", "search_c16", "search_c6",
                 "no_search", "no_noise_fill", "postfilter_per_k"}
    assert all(r["status"] == "not run" and r["reason"] for n, r in rows.items()
               if n not in {"baseline"} | host_only)
    assert "same codec as the baseline" in rows["search_front"]["reason"]
    assert "same codec as the baseline" in rows["noise_fill"]["reason"]
    for n in host_only:
        assert rows[n]["status"] == "done" and rows[n]["eval_only"] and rows[n]["train_command"] is None
    # the decoder-only variant: the baseline's streams (same bytes), other audio
    npf = rows["no_postfilter"]
    assert [p["kbps"] for p in npf["points"]] == [p["kbps"] for p in b["points"]]
    assert [p["snr_db"] for p in npf["points"]] != [p["snr_db"] for p in b["points"]]
    assert "--no-postfilter" in npf["eval_command"]
    npp = rows["no_pitch_postfilter"]   # decoder only too: same bytes, other audio
    assert [p["kbps"] for p in npp["points"]] == [p["kbps"] for p in b["points"]]
    assert [p["snr_db"] for p in npp["points"]] != [p["snr_db"] for p in b["points"]]
    assert "--no-pitch-postfilter" in npp["eval_command"]
    ppk = rows["postfilter_per_k"]   # decoder only too: same bytes, other audio
    assert [p["kbps"] for p in ppk["points"]] == [p["kbps"] for p in b["points"]]
    assert [p["snr_db"] for p in ppk["points"]] != [p["snr_db"] for p in b["points"]]
    assert "--num-gamma 0.7,0.7,0.7,0.7,0.7,0.75,0.75,0.75,0.8" in ppk["eval_command"]
    nnf = rows["no_noise_fill"]      # decoder only too: same bytes, other audio
    assert [p["kbps"] for p in nnf["points"]] == [p["kbps"] for p in b["points"]]
    assert [p["snr_db"] for p in nnf["points"]] != [p["snr_db"] for p in b["points"]]
    assert "--no-noise-fill" in nnf["eval_command"]
    # the encoder-side variants: other codes for the same decoder, and their eval command says so
    assert [p["snr_db"] for p in rows["no_search"]["points"]] != [p["snr_db"] for p in b["points"]]
    assert "--search 0" in rows["no_search"]["eval_command"]
    assert "--search 1 --search-candidates 16" in rows["search_c16"]["eval_command"]
    assert {n["name"] for n in res["not_run"]} >= {"float_weights"}
    assert [p["system"] for p in res["baselines"]] == ["opus", "opus", "g722"]
    md = (out / "ablation.md").read_text()
    table = [l for l in md.splitlines() if l.startswith("| baseline |")]
    assert len(table) == 1 and f"| {b['full']['kbps']:.2f} |" in table[0]
    assert "| lpc8 |" in md and "no model yet" in md and "| float_weights |" in md
    assert "Opus 12k" in md

    # the recorded command line reproduces the model exactly
    cmd = shlex.split(b["train_command"])
    assert cmd[:2] == ["cascade", "train"] and "--threads" in cmd
    cmd[cmd.index("--out") + 1] = str(tmp_path / "again.pt")
    rc, o, err = run(capsys, *cmd[1:])
    assert rc == 0, err
    from model.codec import Codec
    made, again = Codec.load(model_path), Codec.load(tmp_path / "again.pt")
    assert made.cfg == again.cfg == preset("tiny")
    for k, v in made.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k]), k
    ev = b["eval_command"].replace("K", "2")
    assert ev.startswith("cascade eval") and "--arith fixed" in ev

    # resume: nothing retrained, evaluation from the cache (not rewritten), same numbers
    mtime = model_path.stat().st_mtime_ns
    cache = out / "evals" / "baseline.json"
    cache_mtime = cache.stat().st_mtime_ns
    rc, o, err = run(capsys, "ablate", *common, "--only", "baseline", "--no-baselines")
    assert rc == 0, err
    assert model_path.stat().st_mtime_ns == mtime
    assert cache.stat().st_mtime_ns == cache_mtime
    res2 = json.loads((out / "ablation.json").read_text())
    assert res2["variants"][0]["points"] == b["points"] and res2["baselines"] == []

    # --report-only: every variant selected, none trained; the report comes from what is there
    rc, o, err = run(capsys, "ablate", *common, "--report-only", "--no-baselines")
    assert rc == 0, err
    assert sorted(p.name for p in (out / "models").iterdir()) == [".gitignore", "baseline.pt"]
    assert model_path.stat().st_mtime_ns == mtime

    # a model made before a training option existed counts as trained with its default
    from model.codec import Codec
    old = Codec.load(model_path)
    del old.meta["ablation"]["options"]["rate_weight"]
    old.save(model_path)
    rc, o, err = run(capsys, "ablate", *common, "--report-only", "--no-baselines")
    assert rc == 0, err
    mtime = model_path.stat().st_mtime_ns

    # a model of other settings is not mixed into the table
    rc, o, err = run(capsys, "ablate", *common[:-6], "--epochs", 2, "--config", "tiny", "--threads", 1,
                     "--only", "baseline", "--no-baselines")
    assert_user_error(rc, err)
    assert "other settings" in err and "options" in err

    # --force retrains the selected variant (and only it)
    rc, o, err = run(capsys, "ablate", *common, "--only", "baseline", "--no-baselines", "--force")
    assert rc == 0, err
    assert model_path.stat().st_mtime_ns != mtime
    assert sorted(p.name for p in (out / "models").iterdir()) == [".gitignore", "baseline.pt"]


def test_bad_arguments(capsys, wavs, tmp_path):
    rc, o, err = run(capsys, "ablate", "--out", tmp_path / "x")
    assert_user_error(rc, err)
    rc, o, err = run(capsys, "ablate", wavs / "train", "--test", wavs / "test", "--out", tmp_path / "x",
                     "--only", "nonsense", "--config", "tiny")
    assert_user_error(rc, err)
    assert "unknown variant" in err
    rc, o, err = run(capsys, "ablate", wavs / "train", "--test", wavs / "test", "--out", tmp_path / "x",
                     "--only", "float_weights", "--config", "tiny")
    assert_user_error(rc, err)
    assert "is not run by this study" in err and "float-weight" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    rc, o, err = run(capsys, "ablate", wavs / "train", "--test", wavs / "test", "--out", foreign,
                     "--config", "tiny", "--only", "baseline")
    assert_user_error(rc, err)
    assert "--force" in err and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_train_cli_loss_option(capsys, wavs, tmp_path):
    out = tmp_path / "bands.pt"
    rc, o, err = run(capsys, "train", wavs / "train", "--config", "tiny", "--out", out, "--greedy-epochs", 1,
                     "--rounds", 1, "--finetune-epochs", 1, "--no-augment", "--loss", "bands", "--threads", 1)
    assert rc == 0, err
    from model.codec import Codec
    c = Codec.load(out)
    assert c.meta["options"]["loss"] == "bands" and len(c.meta["history"]["finetune"]) == 1
    rc, o, err = run(capsys, "train", wavs / "train", "--config", "tiny", "--out", tmp_path / "n.pt",
                     "--loss", "nope")
    assert rc == 1 and "invalid choice" in err and len(err.strip().splitlines()) == 1


def test_entropy_aware_command_line():
    v = next(v for v in ablate.variants() if v.name == "entropy_aware")
    cmd = ablate.train_command(v, ["data/train", "data/synth"], Path("out"), 2, 0)
    assert "--rate-weight 1" in cmd
    assert "--rate-weight" not in ablate.train_command(ablate.variants()[0], ["d"], Path("out"), 2, 0)
