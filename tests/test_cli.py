"""The ``cascade`` command line (model/cli.py) with the tiny model.

Most runs call ``model.cli.main(argv)`` in-process (stdout/stderr captured; each subprocess
would cost ~2 s of imports); ``test_subprocess_*`` check the real ``python -m model.cli`` entry.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model.cli import main
from tests.helpers import assert_user_error, run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cas(tiny_model_path, speech_wav, tmp_path_factory):
    """A .cas stream of the speech fixture, made by the CLI."""
    out = tmp_path_factory.mktemp("cli") / "speech.cas"
    rc = main(["encode", str(speech_wav), str(out), "--model", str(tiny_model_path)])
    assert rc == 0
    return out


# ------------------------------------------------------------------------------ good runs

def test_encode_decode(capsys, tiny_model_path, speech_wav, tiny_codec, speech, tmp_path):
    m = ["--model", tiny_model_path]
    rc, out, err = run(capsys, "encode", speech_wav, tmp_path / "a.cas", *m)
    assert rc == 0 and "kbps" in out
    data = (tmp_path / "a.cas").read_bytes()
    assert data == tiny_codec.encode_bytes(speech, "fixed")          # default arith is fixed
    rc, out, err = run(capsys, "decode", tmp_path / "a.cas", tmp_path / "a.wav", *m)
    assert rc == 0 and "2 stages" in out and "concealed" not in out
    y, sr = sf.read(tmp_path / "a.wav")
    assert sr == 16000 and y.shape == speech.shape
    ref, _ = tiny_codec.decode_bytes(data, "fixed")
    np.testing.assert_allclose(y, np.clip(ref, -1, 32767 / 32768), atol=1 / 32768 + 1e-12)
    # float arith and fewer stages
    rc, out, _ = run(capsys, "encode", speech_wav, tmp_path / "f1.cas", *m, "--arith", "float", "--stages", 1)
    assert rc == 0
    assert (tmp_path / "f1.cas").read_bytes() == tiny_codec.encode_bytes(speech, "float", 1)
    assert len((tmp_path / "f1.cas").read_bytes()) < len(data)
    rc, out, _ = run(capsys, "decode", tmp_path / "a.cas", tmp_path / "k1.wav", *m, "--stages", 1)
    assert rc == 0
    y1, _ = sf.read(tmp_path / "k1.wav")
    assert not np.array_equal(y1, y)


def test_info(capsys, cas):
    rc, out, err = run(capsys, "info", cas)
    assert rc == 0
    info = json.loads(out)
    assert info["stages"] == info["codec_stages"] == 2
    assert info["sample_rate"] == 16000 and info["samples"] == 40000
    # raw stage sections: Huffman saves less than codec.HUFFMAN_MIN_SAVING on binary codes
    assert info["huffman"] is False and info["bytes"] == cas.stat().st_size
    assert info["kbps"] > 0 and info["duration_s"] == pytest.approx(2.5)


def test_truncate(capsys, cas, tiny_model_path, tiny_codec, speech, tmp_path):
    out_p = tmp_path / "k1.cas"
    rc, out, err = run(capsys, "truncate", cas, out_p, "--stages", 1, "--model", tiny_model_path)
    assert rc == 0
    assert out_p.read_bytes() == tiny_codec.encode_bytes(speech, "fixed", 1)
    rc, out, _ = run(capsys, "info", out_p)
    assert json.loads(out)["stages"] == 1


def test_eval_json(capsys, tiny_model_path, speech_wav, tmp_path):
    d = tmp_path / "wavs"
    d.mkdir()
    (d / "s.wav").write_bytes(speech_wav.read_bytes())
    rc, out, err = run(capsys, "eval", d, "--model", tiny_model_path, "--quiet", "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert "PESQ-WB" in err
    res = json.loads((tmp_path / "r.json").read_text())
    m = res["mean"]
    for k in ("pesq_wb", "stoi", "snr_db", "kbps"):
        assert isinstance(m[k], float) and np.isfinite(m[k]), k
    assert 1.0 <= m["pesq_wb"] <= 4.7 and -1 <= m["stoi"] <= 1 and m["kbps"] > 0
    assert res["stages"] == 2 and res["arith"] == "fixed" and len(res["files"]) == 1
    # to stdout with '-'
    rc, out, err = run(capsys, "eval", d, "--model", tiny_model_path, "--quiet", "--json", "-", "--stages", 1)
    assert rc == 0
    res1 = json.loads(out)
    assert res1["stages"] == 1 and res1["mean"]["kbps"] < m["kbps"]


def test_tune_postfilter(capsys, tiny_model_path, speech_wav, speech, tmp_path):
    """tune-postfilter keeps, for every K, the gamma whose decoded speech scores best; its table is
    what `decode` then gives (PESQ-WB of Codec.decode with that single gamma); weights, config hash
    and the input model file stay as they were; an existing --out is refused."""
    import torch
    from model.codec import Codec
    from model.metrics import pesq_wb
    d = tmp_path / "wavs"
    d.mkdir()
    (d / "s.wav").write_bytes(speech_wav.read_bytes())
    before = tiny_model_path.read_bytes()
    out = tmp_path / "tuned.pt"
    rc, stdout, err = run(capsys, "tune-postfilter", d, "--model", tiny_model_path, "--out", out,
                          "--gammas", "0.3,0.9", "--json", tmp_path / "t.json", "--plot", tmp_path / "t.png",
                          "--quiet")
    assert rc == 0, err
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tiny_model_path.read_bytes() == before
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["gammas"] == [0.3, 0.9] and len(table["pesq_wb"]) == 2 == len(table["num_gamma"])
    for row, g in zip(table["pesq_wb"], table["num_gamma"]):
        assert g == table["gammas"][int(np.argmax(row))]
    assert table["pesq_wb"][0][0] != table["pesq_wb"][0][1]      # the gamma changes the output
    base, tuned = Codec.load(tiny_model_path), Codec.load(out)
    assert tuned.cfg.postfilter.num_gamma == tuple(table["num_gamma"])
    assert tuned.cfg.config_hash == base.cfg.config_hash
    for k, v in base.net.state_dict().items():
        assert torch.equal(v, tuned.net.state_dict()[k]), k
    assert tuned.meta["postfilter_updates"][-1]["num_gamma"] == table["num_gamma"]
    assert tuned.provenance().startswith(base.provenance() + " && cascade tune-postfilter ")
    frames = base.encode(speech, "fixed")
    for k in (1, 2):
        for j, g in enumerate(table["gammas"]):
            base.cfg = base.cfg.replace(postfilter={"num_gamma": g})
            assert pesq_wb(speech, base.decode(frames, "fixed", k)) == pytest.approx(table["pesq_wb"][k - 1][j], abs=1e-4)
    # eval --num-gamma G reproduces the table's column for G
    for j, g in enumerate(table["gammas"]):
        rc, stdout, err = run(capsys, "eval", d, "--model", out, "--stages", 2, "--num-gamma", g, "--quiet", "--json", "-")
        assert rc == 0, err
        assert json.loads(stdout)["mean"]["pesq_wb"] == pytest.approx(table["pesq_wb"][1][j], abs=1e-4)
    # decode with K stages uses entry K-1 of the schedule
    tuned.cfg = tuned.cfg.replace(postfilter={"num_gamma": [0.3, 0.9]})
    for k, g in ((1, 0.3), (2, 0.9)):
        base.cfg = base.cfg.replace(postfilter={"num_gamma": g})
        np.testing.assert_array_equal(tuned.decode(frames, "fixed", k), base.decode(frames, "fixed", k))
    rc, stdout, err = run(capsys, "tune-postfilter", d, "--model", tiny_model_path, "--out", out, "--quiet")
    assert_user_error(rc, err)
    assert Codec.load(out).cfg.postfilter.num_gamma == tuple(table["num_gamma"])
    # nothing to tune without the formant postfilter
    off = Codec.load(tiny_model_path)
    off.cfg = off.cfg.replace(postfilter={"enabled": False})
    with pytest.raises(ValueError, match="no formant postfilter"):
        off.tune_postfilter([speech])
    # files PESQ cannot judge (50 ms): one error line, nothing written
    short = tmp_path / "short"
    short.mkdir()
    _wav(short / "a.wav", speech[:800], 16000)
    rc, stdout, err = run(capsys, "tune-postfilter", short, "--model", tiny_model_path, "--out", tmp_path / "s.pt", "--quiet")
    assert_user_error(rc, err)
    assert "PESQ could judge none" in err and not (tmp_path / "s.pt").exists()


# ------------------------------------------------------------------------------ bad inputs

def _wav(path, x, sr):
    sf.write(str(path), x, sr, subtype="PCM_16")
    return path


BAD_WAVS = {
    "rate-8k": lambda p: _wav(p, np.zeros(8000), 8000),
    "stereo": lambda p: _wav(p, np.zeros((16000, 2)), 16000),
    "empty": lambda p: _wav(p, np.zeros(0), 16000),
    "text-file": lambda p: (p.write_text("hello, I am not audio\n"), p)[1],
    "missing": lambda p: p,
}


@pytest.mark.parametrize("name", sorted(BAD_WAVS))
def test_encode_bad_wav(capsys, name, tiny_model_path, tmp_path):
    wav = BAD_WAVS[name](tmp_path / "in.wav")
    rc, out, err = run(capsys, "encode", wav, tmp_path / "o.cas", "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert not (tmp_path / "o.cas").exists()


def test_resample_flag_accepts_8k_stereo(capsys, tiny_model_path, tmp_path):
    wav = _wav(tmp_path / "in.wav", 0.1 * np.random.default_rng(0).standard_normal((8000, 2)), 8000)
    rc, out, err = run(capsys, "encode", wav, tmp_path / "o.cas", "--model", tiny_model_path, "--resample")
    assert rc == 0, err


def _corrupt(cas, p):
    p.write_bytes(np.random.default_rng(0).bytes(cas.stat().st_size))


def _half(cas, p):
    d = cas.read_bytes()
    p.write_bytes(d[: len(d) // 2])


@pytest.mark.parametrize("cmd", ["decode", "info"])
def test_corrupted_cas(capsys, cmd, cas, tiny_model_path, tmp_path):
    bad = tmp_path / "bad.cas"
    _corrupt(cas, bad)
    extra = [tmp_path / "o.wav", "--model", tiny_model_path] if cmd == "decode" else []
    rc, out, err = run(capsys, cmd, bad, *extra)
    assert_user_error(rc, err)
    assert not (tmp_path / "o.wav").exists()


def test_truncated_cas(capsys, cas, tiny_model_path, tmp_path):
    """Half the bytes: either an error, or concealment that says so (both are allowed)."""
    bad = tmp_path / "half.cas"
    _half(cas, bad)
    rc, out, err = run(capsys, "decode", bad, tmp_path / "o.wav", "--model", tiny_model_path)
    if rc == 0:
        assert "concealed" in out and (tmp_path / "o.wav").exists()
        assert "Traceback" not in err
    else:
        assert_user_error(rc, err)
        assert not (tmp_path / "o.wav").exists()
    rc, out, err = run(capsys, "truncate", bad, tmp_path / "t.cas", "--stages", 1, "--model", tiny_model_path)
    assert_user_error(rc, err)


def test_cas_with_bytes_missing_in_the_middle_is_concealed(capsys, cas, tiny_model_path, tmp_path):
    """A zeroed middle third is concealed; a stream zeroed but for 200 bytes at each end holds too
    few of the frames its header claims (bitstream.LIMITS["missing_share"]): one error line."""
    d = cas.read_bytes()
    bad = tmp_path / "hole.cas"
    keep = len(d) // 3
    bad.write_bytes(d[:keep] + bytes(len(d) - 2 * keep) + d[-keep:])
    rc, out, err = run(capsys, "decode", bad, tmp_path / "o.wav", "--model", tiny_model_path)
    assert rc == 0 and "concealed" in out, err
    bad.write_bytes(d[:200] + bytes(len(d) - 400) + d[-200:])
    rc, out, err = run(capsys, "decode", bad, tmp_path / "o2.wav", "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert rc == 1 and "claims" in err and not (tmp_path / "o2.wav").exists()


@pytest.mark.parametrize("stages", [0, 3, -1])
@pytest.mark.parametrize("cmd", ["encode", "truncate", "eval"])
def test_wrong_stages(capsys, cmd, stages, cas, speech_wav, tiny_model_path, tmp_path):
    src = {"encode": speech_wav, "truncate": cas, "eval": speech_wav.parent}[cmd]
    out_arg = [] if cmd == "eval" else [tmp_path / "o"]
    rc, out, err = run(capsys, cmd, src, *out_arg, "--stages", stages, "--model", tiny_model_path,
                       *(["--quiet"] if cmd == "eval" else []))
    assert_user_error(rc, err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("stages", [
    pytest.param(0),
    pytest.param(3),
    pytest.param(-1),
])
def test_decode_wrong_stages(capsys, stages, cas, tiny_model_path, tmp_path):
    rc, out, err = run(capsys, "decode", cas, tmp_path / "o.wav", "--stages", stages, "--model", tiny_model_path)
    assert_user_error(rc, err)


@pytest.mark.parametrize("kind", ["random-bytes", "text", "missing", "empty"])
@pytest.mark.parametrize("cmd", ["encode", "decode"])
def test_garbage_model(capsys, cmd, kind, cas, speech_wav, tmp_path):
    model = tmp_path / "m.pt"
    if kind == "random-bytes":
        model.write_bytes(np.random.default_rng(1).bytes(5000))
    elif kind == "text":
        model.write_text("not a model\n")
    elif kind == "empty":
        model.write_bytes(b"")
    src = speech_wav if cmd == "encode" else cas
    rc, out, err = run(capsys, cmd, src, tmp_path / "o", "--model", model)
    assert_user_error(rc, err)
    assert not (tmp_path / "o").exists()


def test_stream_for_other_model(capsys, cas, tiny_model_path, tiny_codec, tmp_path):
    from model.codec import Codec
    other = Codec(tiny_codec.cfg.replace(gain={"step_db": 2.0}), tiny_codec.net, tiny_codec.lsf_q,
                  tiny_codec.codebooks).save(tmp_path / "other.pt")
    for argv in (("decode", cas, tmp_path / "o.wav"), ("truncate", cas, tmp_path / "o.cas", "--stages", 1)):
        rc, out, err = run(capsys, *argv, "--model", other)
        assert_user_error(rc, err)


# ------------------------------------------------------------------------- no overwriting

SENTINEL = b"precious content\n"


@pytest.mark.parametrize("cmd", ["encode", "decode", "truncate"])
def test_existing_output_not_overwritten(capsys, cmd, cas, speech_wav, tiny_model_path, tmp_path):
    src = speech_wav if cmd == "encode" else cas
    target = tmp_path / "existing.out"
    target.write_bytes(SENTINEL)
    extra = ["--stages", 1] if cmd == "truncate" else []
    rc, out, err = run(capsys, cmd, src, target, *extra, "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert "--force" in err
    assert target.read_bytes() == SENTINEL
    rc, out, err = run(capsys, cmd, src, target, *extra, "--model", tiny_model_path, "--force")
    assert rc == 0, err
    assert target.read_bytes() != SENTINEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.out"]      # no temp files left


def test_output_folder_missing(capsys, speech_wav, tiny_model_path, tmp_path):
    rc, out, err = run(capsys, "encode", speech_wav, tmp_path / "no" / "o.cas", "--model", tiny_model_path)
    assert_user_error(rc, err)


def test_eval_json_not_overwritten(capsys, speech_wav, tiny_model_path, tmp_path):
    target = tmp_path / "r.json"
    target.write_bytes(SENTINEL)
    rc, out, err = run(capsys, "eval", speech_wav.parent, "--model", tiny_model_path, "--quiet",
                       "--json", target)
    assert target.read_bytes() == SENTINEL


# ------------------------------------------------------------------------ real processes

def _proc(*argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "model.cli", *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_error_exit_code(tmp_path):
    """The real entry point: exit status 1 and one stderr line (one process: ~3-7 s of imports)."""
    bad = tmp_path / "bad.cas"
    bad.write_bytes(b"CASC" + bytes(10))
    p = _proc("info", bad)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("cascade: error:") and "Traceback" not in p.stderr


BAD_ARGS = [
    ("verify", "--frames", "0"), ("verify", "--frames", "-1"), ("export-rtl", "--lanes", "0"),
    ("train", "x", "--out", "m.pt", "--batch", "0"), ("train", "x", "--out", "m.pt", "--greedy-epochs", "-1"),
    ("train", "x", "--out", "m.pt", "--rounds", "-1"), ("train", "x", "--out", "m.pt", "--threads", "-2"),
    ("train", "x", "--out", "m.pt", "--speaker-minutes", "0"), ("encode", "a.wav", "b.cas", "--search", "1000000"),
    ("encode", "a.wav", "b.cas", "--search", "x"), ("encode",), ("nosuchcommand",), ("eval", "d", "--arith", "int"),
    ("train", "x", "--out", "m.pt", "--lr", "nan"),
    ("synth", "--board", "icebreaker", "--lanes", "0"), ("synth", "--board", "icebreaker", "--lanes", "many"),
    ("synth", "--board", "icebreaker", "--sweep", "8,0"), ("synth", "--board", "icebreaker", "--sweep", "8,x"),
    # issue 19, item 2: every range, argparse's own errors included
    ("encode", "a.wav", "b.cas", "--search", "9"), ("encode", "a.wav", "b.cas", "--search-candidates", "1000000"),
    ("encode", "a.wav", "b.cas", "--search-candidates", "-1"), ("encode", "a.wav", "b.cas", "--search-candidates", "4,,2"),
    ("encode", "a.wav", "b.cas", "--bogus-flag"), ("encode", "a.wav", "b.cas", "extra"), ("--bogus",), (),
    ("export-rtl", "--out", "r", "--lanes", "-1"), ("export-rtl", "--out", "r", "--lanes", "100000"),
    ("verify", "--frames", "x"), ("verify", "--frames", "100000"), ("verify", "--lanes", "0"),
    ("train", "x", "--out", "m.pt", "--batch", "-1"), ("train", "x", "--out", "m.pt", "--batch", "100000000"),
    ("train", "x", "--out", "m.pt", "--greedy-epochs", "0"), ("train", "x", "--out", "m.pt", "--finetune-epochs", "0"),
    ("train", "x", "--out", "m.pt", "--rounds", "100000"), ("train", "x", "--out", "m.pt", "--threads", "100000"),
    ("train", "x", "--out", "m.pt", "--lr", "inf"), ("train", "x", "--out", "m.pt", "--lr", "0"),
    ("train", "x", "--out", "m.pt", "--finetune-lr", "-1"), ("train", "x", "--out", "m.pt", "--rate-weight", "-1"),
    ("train", "x", "--out", "m.pt", "--rate-weight", "nan"), ("train", "x", "--out", "m.pt", "--seed", "-1"),
    ("train", "x", "--out", "m.pt", "--loss", "l1"), ("train", "x"),
    ("train", "x", "--out", "m.pt", "--search", "9"), ("train", "x", "--out", "m.pt", "--search-candidates", "-1"),
    ("ablate", "--epochs", "0"), ("ablate", "--rate", "nan"), ("ablate", "--seed", "x"), ("ablate", "--threads", "-1"),
    ("board", "info", "--port", "p", "--baud", "-1"), ("board", "info", "--port", "p", "--baud", "0"),
    ("board", "reset", "--port", "p"), ("report", "--widths", "0"), ("report", "--widths", "x"),
    ("report", "--widths", "100"), ("prepare-data", "--speed-perturb", "5"),
    ("prepare-data", "--synth-minutes", "-1"), ("prepare-data", "--synth-minutes", "nan"),
    ("demo", "--lanes", "0"), ("decode", "a.cas", "b.wav", "--num-gamma", "1.5"),
    ("decode", "a.cas", "b.wav", "--stages", "x"), ("tune-postfilter", "d", "--out", "o.pt", "--gammas", "nan"),
]


@pytest.mark.parametrize("argv", BAD_ARGS, ids=[" ".join(a) or "no-arguments" for a in BAD_ARGS])
def test_bad_arguments_are_one_error_line_and_exit_1(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascade: error: "), err
    assert "Traceback" not in err and "usage:" not in err


def test_subprocess_argparse_error_is_one_line_exit_1():
    """argparse's own errors through the real entry point: one line, exit 1 (argparse: usage
    lines and 2)."""
    p = _proc("verify", "--frames", "-1")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("cascade: error: verify: argument --frames:")


def test_eval_voices_curve_and_baseline(capsys, tiny_model_path, speech_wav, tmp_path):
    """Per-voice summaries (a voice = the folder a file lies in), --curve (every K from one
    encoding, equal to one eval per K), --baseline (a reference codec, same summary)."""
    for voice in ("ann", "bob"):
        (tmp_path / "wavs" / voice).mkdir(parents=True)
        (tmp_path / "wavs" / voice / "s.wav").write_bytes(speech_wav.read_bytes())
    d = tmp_path / "wavs"
    rc, out, err = run(capsys, "eval", d, "--model", tiny_model_path, "--quiet", "--json", tmp_path / "k2.json")
    assert rc == 0, err
    k2 = json.loads((tmp_path / "k2.json").read_text())
    assert set(k2["voices"]) == {"ann", "bob"} and k2["voices"]["ann"]["files"] == 1
    assert k2["voice_mean"]["pesq_wb"] == pytest.approx(
        (k2["voices"]["ann"]["pesq_wb"] + k2["voices"]["bob"]["pesq_wb"]) / 2)
    assert "voice mean" in err
    rc, out, err = run(capsys, "eval", d, "--model", tiny_model_path, "--quiet", "--curve", "--json", tmp_path / "c.json",
                       "--markdown", tmp_path / "c.md")
    assert rc == 0, err
    c = json.loads((tmp_path / "c.json").read_text())
    assert [r["stages"] for r in c["curve"]] == [1, 2]
    table = (tmp_path / "c.md").read_text().splitlines()
    assert table[0].startswith("| K | kbps") and "PESQ-WB ann | PESQ-WB bob" in table[0] and len(table) == 4
    assert f"**{c['curve'][1]['voice_mean']['pesq_wb']:.3f}**" in table[3]
    assert c["curve"][0]["mean"]["kbps"] < c["curve"][1]["mean"]["kbps"]
    assert c["curve"][1]["mean"]["pesq_wb"] == pytest.approx(k2["mean"]["pesq_wb"], abs=1e-9)
    rc, out, err = run(capsys, "eval", d, "--model", tiny_model_path, "--quiet", "--curve", "--stages", "1")
    assert_user_error(rc, err)
    if shutil.which("opusenc"):
        rc, out, err = run(capsys, "eval", d / "ann", "--baseline", "opus:12", "--quiet", "--json", "-")
        assert rc == 0, err
        b = json.loads(out)
        assert b["baseline"] == "opus" and 8 < b["mean"]["kbps"] < 30 and b["mean"]["pesq_wb"] > 2
    rc, out, err = run(capsys, "eval", d, "--baseline", "opus:fast", "--quiet")
    assert_user_error(rc, err)


# ------------------------------------------------------------ the error contract (issue 19)

def _hostile_models(tiny_model_path, tmp_path):
    """Model files a hostile or broken tool could hand over: a huge hidden width with a correctly
    recomputed config hash (the loader must refuse before allocating), NaN weights, no weights."""
    import torch
    from model.config import hash_config_dict
    d = torch.load(tiny_model_path, weights_only=True)
    out = {}
    wide = dict(d, config=json.loads(json.dumps(d["config"])))
    wide["config"]["network"]["hidden"] = 1 << 20
    wide["config_hash"] = hash_config_dict(wide["config"])   # a correctly recomputed hash
    out["huge-width"] = wide
    nan = dict(d, state_dict=dict(d["state_dict"]))
    k = next(iter(nan["state_dict"]))
    nan["state_dict"][k] = torch.full_like(nan["state_dict"][k], float("nan"))
    out["nan-weights"] = nan
    out["no-weights"] = dict(d, state_dict={"x": 1})

    def with_config(**sections):          # a config changed by hand, its hash recomputed
        cfg = json.loads(json.dumps(d["config"]))
        for sec, fields in sections.items():
            cfg.setdefault(sec, {}).update(fields)
        return dict(d, config=cfg, config_hash=hash_config_dict(cfg))
    # within every size limit, but far more weights than the 17 KB file holds: refused before the
    # network is allocated (the message names the weight count)
    out["wide-within-limits"] = with_config(network={"hidden": 2048})
    out["inf-config-float"] = with_config(gain={"step_db": float("inf")})
    out["nan-config-float"] = with_config(lpc={"gamma": float("nan")})
    out["float-for-int"] = with_config(lpc={"order": 8.5})
    out["huge-packets"] = with_config(entropy={"packet_frames": 1 << 20})
    out["long-codes-limit"] = with_config(entropy={"max_code_len": 64})
    out["huge-window"] = with_config(lpc={"window": 1 << 30})
    lsf = dict(d["lsf"], levels=[[float("nan")] * len(r) for r in d["lsf"]["levels"]])
    out["nan-lsf"] = dict(d, lsf=lsf)
    books = [dict(b) for b in d["codebooks"]]
    books[0]["lengths"] = [20] + list(books[0]["lengths"][1:])   # Kraft holds; 20 > max_code_len 12
    out["codes-too-long"] = dict(d, codebooks=books)
    books = [dict(b) for b in d["codebooks"]]
    books[1] = {"symbol_bits": 4, "lengths": [4] * 16}
    out["codebook-symbol-bits"] = dict(d, codebooks=books)
    paths = {}
    for name, obj in out.items():
        paths[name] = tmp_path / f"{name}.pt"
        torch.save(obj, paths[name])
    return paths


def test_hostile_model_files_are_refused_before_allocating(capsys, tiny_model_path, speech_wav, tmp_path):
    import resource
    for name, path in _hostile_models(tiny_model_path, tmp_path).items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rc, out, err = run(capsys, "encode", speech_wav, tmp_path / f"{name}.cas", "--model", path)
        assert_user_error(rc, err)
        assert rc == 1, (name, err)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 200, (name, grown_mb)
        assert not (tmp_path / f"{name}.cas").exists()
        if name == "wide-within-limits":
            assert "weight values" in err, err


def _stream_with(data: bytes, **fields) -> bytes:
    """A stream whose header fields a hostile writer changed (header CRC recomputed)."""
    from model.bitstream import HEADER_SIZE, _make_header, _parse_header
    return _make_header(dict(_parse_header(data), **fields)) + data[HEADER_SIZE:]


def _hostile_streams(cas: Path, tmp_path: Path, cfg) -> dict:
    """.cas files for the issue's stream cases: K = 0, K > N, another rate or symbol size, a frame
    count the file's size allows but its packets do not hold, fewer frames than the packets hold,
    trailing garbage."""
    from model.bitstream import _min_stream_size, _parse_header
    d = cas.read_bytes()
    hop = cfg.signal.hop
    padded = d + bytes(200_000)
    h = _parse_header(padded)
    lo, hi = h["frames"], 1 << 30          # the most frames the padded file's size allows
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _min_stream_size(dict(h, frames=mid), cfg, True) <= len(padded) else (lo, mid - 1)
    streams = {"k-zero": _stream_with(d, stages=0), "k-above-n": _stream_with(d, stages=3),
               "rate-8000": _stream_with(d, sample_rate=8000), "symbol-bits-0": _stream_with(d, symbol_bits=0),
               "most-frames-size-allows": _stream_with(padded, frames=lo, samples=lo * hop),
               "fewer-frames-than-packets": _stream_with(d, frames=500, samples=500 * hop),
               "trailing-garbage": d + b"trailing garbage"}
    paths = {}
    for name, data in streams.items():
        paths[name] = tmp_path / f"{name}.cas"
        paths[name].write_bytes(data)
    return paths


def test_output_created_during_the_run_is_kept(capsys, monkeypatch, speech_wav, tiny_model_path, tmp_path):
    """A file that appears at the destination after the start-up check (a second cascade run,
    another program) is not replaced without --force."""
    from model.codec import Codec
    target = tmp_path / "late.cas"
    real = Codec.encode_bytes

    def encode_then_race(self, *args, **kw):
        data = real(self, *args, **kw)
        target.write_bytes(SENTINEL)
        return data
    monkeypatch.setattr(Codec, "encode_bytes", encode_then_race)
    rc, out, err = run(capsys, "encode", speech_wav, target, "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert rc == 1 and "--force" in err
    assert target.read_bytes() == SENTINEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.cas"]


def _contract_cases(tmp_path, speech_wav, tiny_model_path, cas):
    """(name, argv) of bad inputs from the issue's matrix that once ended as internal errors."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    (folder / "keep").write_text("x")
    ck_out = tmp_path / "m.pt"
    Path(str(ck_out) + ".ckpt").write_bytes(b"not a checkpoint")
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    m = ("--model", tiny_model_path)
    from model.codec import Codec
    streams = _hostile_streams(cas, tmp_path, Codec.load(tiny_model_path).cfg)
    stream_cases = [(f"decode-{name}", ("decode", path, tmp_path / f"{name}.wav", *m)) for name, path in streams.items()]
    stream_cases += [(f"truncate-{name}", ("truncate", path, tmp_path / f"{name}-k1.cas", "--stages", "1", *m))
                     for name, path in streams.items()]
    stream_cases += [(f"info-{name}", ("info", streams[name])) for name in ("k-zero", "k-above-n", "symbol-bits-0")]
    return stream_cases + [
        ("train-config-binary", ("train", speech_wav.parent, "--out", tmp_path / "c.pt", "--config", binary)),
        ("train-config-folder", ("train", speech_wav.parent, "--out", tmp_path / "c.pt", "--config", folder)),
        ("verify-build-dir-is-file", ("verify", "--build-dir", a_file, "--wav", speech_wav, "--frames", "1", *m)),
        ("synth-out-is-file", ("synth", "--board", "icebreaker", "--out", a_file, "--mode", "yosys", *m)),
        ("report-out-is-file", ("report", "--out", a_file, *m)),
        ("report-float-model-missing", ("report", "--out", tmp_path / "rep", "--float-model", tmp_path / "no.pt", *m)),
        ("report-width-below-int-bits", ("report", "--out", tmp_path / "rep", "--widths", "3", "--test-dir",
                                         speech_wav.parent, *m)),
        ("demo-out-is-file", ("demo", "--out", a_file, "--wav", speech_wav, *m)),
        ("prepare-data-out-is-file", ("prepare-data", "--out", a_file, "--no-asterisk", "--synth-minutes", "0")),
        ("encode-search-candidates-huge", ("encode", speech_wav, tmp_path / "s.cas", "--search-candidates",
                                           "1000000", *m)),
        ("train-device-cuda-plain", ("train", speech_wav.parent, "--out", tmp_path / "c.pt", "--device", "cuda")),
        ("encode-to-folder-force", ("encode", speech_wav, folder, "--force", *m)),
        ("decode-to-folder", ("decode", cas, folder, *m)),
        ("export-out-is-file", ("export", "--out", a_file, *m)),
        ("export-rtl-out-is-file", ("export-rtl", "--out", a_file, *m)),
        ("export-into-full-folder", ("export", "--out", folder, *m)),
        ("train-device-cuda", ("train", speech_wav.parent, "--out", tmp_path / "c.pt", "--device", "cuda:7")),
        ("train-device-bogus", ("train", speech_wav.parent, "--out", tmp_path / "c.pt", "--device", "tpu")),
        ("train-corrupt-checkpoint", ("train", speech_wav.parent, "--out", ck_out, "--config", "tiny",
                                      "--greedy-epochs", "1", "--rounds", "0", "--no-augment")),
        ("info-of-folder", ("info", folder)),
        ("decode-missing", ("decode", tmp_path / "nope.cas", tmp_path / "o.wav", *m)),
        ("verify-json-exists", ("verify", "--json", a_file, *m)),
        ("synth-too-many-lanes", ("synth", "--board", "ulx3s-85f", "--lanes", "256", "--out", folder, *m)),
        ("synth-flash-boot-ecp5", ("synth", "--board", "ulx3s-25f", "--flash-boot", "--out", folder, *m)),
        ("synth-flash-boot-rom", ("synth", "--board", "icebreaker", "--flash-boot", "--storage", "rom",
                                  "--out", folder, *m)),
        ("synth-flash-boot-sweep", ("synth", "--board", "icebreaker", "--flash-boot", "--sweep", "8",
                                    "--out", folder, *m)),
    ]


def test_error_contract_table(capsys, tmp_path, speech_wav, tiny_model_path, cas):
    """Every case: exit 1 and exactly one line ``cascade: error: ...`` (never exit 2, the
    internal-error status), and the user's files untouched."""
    import torch
    for name, argv in _contract_cases(tmp_path, speech_wav, tiny_model_path, cas):
        if name == "train-device-cuda-plain" and torch.cuda.is_available():
            continue
        rc, out, err = run(capsys, *argv)
        assert rc == 1, (name, rc, err)
        assert_user_error(rc, err)
        if name.startswith(("decode-", "truncate-")) and argv[2] != tmp_path / "a_folder":
            assert not Path(argv[2]).exists(), name
        assert (tmp_path / "a_file").read_text() == "x" and (tmp_path / "a_folder" / "keep").read_text() == "x"
    assert (tmp_path / "m.pt.ckpt").read_bytes() == b"not a checkpoint"     # not deleted either


def test_light_commands_import_no_heavy_modules(cas, tmp_path):
    """``info``, argument errors and a missing input answer without importing PyTorch, SciPy or
    Amaranth (their import is most of a command's start-up: docs/RESULTS.md, start-up)."""
    code = ("import sys\n"
            "from model.cli import main\n"
            "rcs = [main(['info', sys.argv[1]]), main(['encode', sys.argv[2], sys.argv[3]]),\n"
            "       main(['decode', sys.argv[2], sys.argv[3]])]\n"
            "heavy = sorted(m for m in ('torch', 'scipy', 'amaranth') if m in sys.modules)\n"
            "print(rcs, heavy)\n")
    p = subprocess.run([sys.executable, "-c", code, str(cas), str(tmp_path / "missing.wav"), str(tmp_path / "o")],
                       cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[0, 1, 1] []", p.stdout


def test_set_search(capsys, tiny_model_path, tmp_path):
    """set-search writes the search into a new model file (weights and config hash unchanged, the
    input file untouched, the command in its provenance); with --board it refuses, in one line and
    writing nothing, a search that would leave the encoder core under --min-rtf there, and the
    real-time factor it reports is the cycle model's at that clock."""
    import torch
    from hw.synth import cycles_per_frame
    from model.codec import Codec
    before = tiny_model_path.read_bytes()
    out = tmp_path / "s.pt"
    rc, stdout, err = run(capsys, "set-search", "--model", tiny_model_path, "--out", out, "--search", 1,
                          "--search-candidates", "3", "--board", "icebreaker", "--clock", "18", "--lanes", 4,
                          "--min-rtf", "0.001")
    assert rc == 0, err
    base, new = Codec.load(tiny_model_path), Codec.load(out)
    assert tiny_model_path.read_bytes() == before
    assert new.cfg.search.candidates == 3 and new.cfg.search.passes == 1
    assert new.cfg.config_hash == base.cfg.config_hash
    for k, v in base.net.state_dict().items():
        assert torch.equal(v, new.net.state_dict()[k]), k
    assert new.provenance().startswith(base.provenance() + " && cascade set-search ")
    got = json.loads(stdout)["real_time"]
    cycles = cycles_per_frame(new.int_model(), 4, ("encoder",))["encoder"]
    assert got["cycles_per_frame"] == cycles and got["clock_mhz"] == 18
    assert got["real_time_factor"] == pytest.approx(18e6 / (cycles * new.cfg.signal.frame_rate), abs=1e-3)
    # a search too slow for the board: one line, nothing written
    too_slow = got["real_time_factor"] * 1.5
    rc, stdout, err = run(capsys, "set-search", "--model", tiny_model_path, "--out", tmp_path / "no.pt",
                          "--search-candidates", "3", "--board", "icebreaker", "--clock", "18", "--lanes", 4,
                          "--min-rtf", too_slow)
    assert rc == 1 and err.startswith("cascade: error: ") and err.count("\n") == 1 and "real time" in err
    assert not (tmp_path / "no.pt").exists()
    rc, stdout, err = run(capsys, "set-search", "--model", tiny_model_path, "--out", tmp_path / "no.pt")
    assert rc == 1 and "needs --search" in err and not (tmp_path / "no.pt").exists()
