"""FPGA builds: one real Yosys + nextpnr + icepack build of the tiny preset for the iCEBreaker, a
Yosys-only build for the ULX3S, and fit_check's refusal of a model too big for the board."""

import json

import pytest

from hw.synth import (FitError, choose_lanes, cycles_per_frame, estimate, fit_check, resolve_storage,
                      sweep, synth)
from model import golden
from model.config import CodecConfig, preset


CORES = {}  # the real hw.encoder.EncoderCore and hw.decoder.DecoderCore


@pytest.fixture(scope="module")
def tiny_model():
    return golden.random_model(preset("tiny"), 0)


def test_icebreaker_tiny_full_build(tiny_model, tmp_path, monkeypatch):
    """Two real builds as a lane sweep (P = 1 and 4); the first's report checked in detail; a
    second sweep reuses both builds (same model, same generator) and runs no tool."""
    res = sweep(tiny_model, "icebreaker", (1, 4), tmp_path / "sweep", report_dir=tmp_path / "rep")
    assert [row["lanes"] for row in res["rows"]] == [1, 4] and all(row["fits"] for row in res["rows"])
    for row in res["rows"]:
        for core in ("encoder", "decoder"):
            e = row["per_core"][core]
            assert e["cycles_per_frame"] == cycles_per_frame(tiny_model, row["lanes"])[core]
            assert 1 <= e["over_ideal"] and e["macs_over_p"] > 0
    assert res["rows"][1]["per_core"]["decoder"]["cycles_per_frame"] < res["rows"][0]["per_core"]["decoder"]["cycles_per_frame"]
    md = (tmp_path / "rep" / "sweep.md").read_text()
    assert md.count("| 1 | rom |") == 1 and md.count("| 4 | rom |") == 1
    assert (tmp_path / "rep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "rep" / "sweep.json").read_text())["rows"] == res["rows"]
    import hw.synth
    monkeypatch.setattr(hw.synth, "synth", lambda *a, **k: pytest.fail("a reused build ran the tools"))
    again = sweep(tiny_model, "icebreaker", (1, 4), tmp_path / "sweep", report_dir=tmp_path / "rep")
    assert [row["reused"] for row in again["rows"]] == [True, True]
    monkeypatch.undo()

    tmp_path = tmp_path / "sweep" / "lanes-1"
    r = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "top.bin").stat().st_size > 100_000  # UP5K bitstream ~104 kB
    assert json.loads((tmp_path / "report.json").read_text())["fmax_mhz"] == r["fmax_mhz"]
    md = (tmp_path / "report.md").read_text()
    assert "Fmax (post-route)" in md and "1 pass(es) over the least certain bits of stages 1..N-1: 16 bits" in md
    assert r["fmax_mhz"] > 0
    lc = r["utilization"]["lc"]
    assert lc["available"] == 5280 and 100 < lc["used"] < lc["available"]
    assert 100 < r["synth"]["luts"] < 5280 and r["synth"]["ffs"] > 50
    assert r["utilization"]["io"]["used"] >= 3  # clock, UART rx/tx (+ LEDs)
    for core in ("encoder", "decoder"):
        e = r["per_core"][core]
        assert e["cycles_per_frame"] > 0
        assert e["real_time_factor"] == pytest.approx(
            r["fmax_mhz"] * 1e6 / (e["cycles_per_frame"] * 250), rel=1e-3)


@pytest.mark.slow  # ~45 s of Yosys
def test_ulx3s_yosys_only(tiny_model, tmp_path):
    r = synth(tiny_model, "ulx3s-25f", 1, tmp_path, mode="yosys", **CORES)
    assert r["fmax_mhz"] is None and 100 < r["synth"]["luts"] < 24288
    assert not (tmp_path / "top.bit").exists()


# the first shipped model's shape: 9 x 64 bits, hidden 128, 16-bit scales, 14-bit biases (1.7 Mbit)
BIG = {"network": {"stages": 9, "code_bits": [64] * 9, "hidden": 128}, "fixed": {"scale_bits": 16, "bias_bits": 14}}
# a shape whose cores fit the UP5K one at a time with weights in SPRAM
UP5K = {"network": {"stages": 6, "code_bits": [96] * 6, "hidden": 128}, "fixed": {"scale_bits": 8, "bias_bits": 8}}


def test_fit_check_refuses_oversize_model():
    big = golden.random_model(CodecConfig().replace(**BIG), 0)
    with pytest.raises(FitError, match=r"needs \d+ weight bits .* iCE40 UP5K has 1048576 SPRAM \+ 122880 EBR"):
        fit_check(big, "icebreaker", 1)
    with pytest.raises(FitError) as exc:
        synth(big, "icebreaker", 1, "/nonexistent/never-written")
    assert "\n" not in str(exc.value)
    # the decoder alone fits the UP5K's RAM bits, but its weights are ROM and SPRAM starts empty
    with pytest.raises(FitError, match=r"122880 bits that a bitstream initializes \(1048576 SPRAM bits start empty\)"):
        fit_check(big, "icebreaker", 1, cores=("decoder",))
    with pytest.raises(FitError, match="ECP5 LFE5U-25F has 917504 DP16KD bits"):
        fit_check(big, "ulx3s-25f", 1)
    fit_check(big, "ulx3s-25f", 1, cores=("decoder",))
    fit_check(big, "ulx3s-85f", 1)
    with pytest.raises(FitError, match="lanes"):
        fit_check(big, "ulx3s-85f", 1000)
    with pytest.raises(FitError, match="at most 255 lanes"):
        fit_check(golden.random_model(preset("tiny"), 0), "ulx3s-85f", 256)


def test_choose_lanes_says_why():
    """``--lanes auto``: the largest power of two that fits while doubling still pays."""
    big = golden.random_model(CodecConfig().replace(**BIG), 0)
    c = choose_lanes(big, "ulx3s-85f")
    assert c["lanes"] == 128 and c["stopped_by"] == "largest" and c["storage"] == "rom"
    assert [t["lanes"] for t in c["tried"]] == [1, 2, 4, 8, 16, 32, 64, 128]
    # the default shape's encoder on the 25F: P = 64 pads the 48-bit code layers to 64 lanes and
    # the weights no longer fit the block RAM bits
    default = golden.random_model(CodecConfig(), 0)
    c = choose_lanes(default, "ulx3s-25f", ("encoder",))
    assert c["lanes"] == 32 and c["stopped_by"] == "fit" and "64 lanes do not fit" in c["why"]
    assert estimate(default, "ulx3s-25f", 64, ("encoder",))["weight_bits"]["encoder"] > \
        estimate(default, "ulx3s-25f", 32, ("encoder",))["weight_bits"]["encoder"]
    # SPRAM words are 16 bits wide: the UP5K stops at 16 (few lanes need too many banks)
    up5k = golden.random_model(CodecConfig().replace(**UP5K), 0)
    c = choose_lanes(up5k, "icebreaker", ("encoder",))
    assert c["lanes"] == 16 and c["storage"] == "spram" and "SPRAM words have 16 bits" in c["why"]
    assert not c["tried"][0]["fits"]
    # tiny: beyond P = 32 the 16-bit code layers leave most lanes idle; doubling stops paying
    tiny = golden.random_model(preset("tiny"), 0)
    c = choose_lanes(tiny, "ulx3s-85f")
    assert c["stopped_by"] == "gain" and c["lanes"] < 128
    nxt = cycles_per_frame(tiny, 2 * c["lanes"])
    assert max(nxt.values()) > 0.9 * max(c["cycles_per_frame"].values())
    with pytest.raises(FitError):
        choose_lanes(golden.random_model(CodecConfig().replace(**BIG), 0), "icebreaker")


def test_auto_lanes_halve_when_timing_is_missed(tiny_model, tmp_path, monkeypatch):
    """After place and route, a build under the board clock is redone with fewer lanes, and the
    report says why (the tool run is replaced here by a report with the Fmax it would give)."""
    import hw.synth
    real = hw.synth.synth
    built = []
    first = choose_lanes(tiny_model, "icebreaker")["lanes"]

    def fake(model, board, lanes, out_dir=None, **kw):
        if lanes == "auto":
            return real(model, board, lanes, out_dir, **kw)
        built.append(lanes)
        return {"lanes": lanes, "fmax_mhz": 30.0 if lanes < first else 11.0, "clock_mhz": 12.0,
                "mode": "full", "synth": {"luts": 1, "ffs": 1, "cells": {}, "memories_in_ram": {},
                                          "memories_in_lut_ram": [], "memories_in_logic": []},
                "per_core": {}, "board": board, "device": "d", "top": "t", "config_hash": "h",
                "clock": 12, "baud": 1, "seconds": 0, "frame_rate": 250.0, "storage": "rom"}
    monkeypatch.setattr(hw.synth, "synth", fake)
    r = hw.synth.synth(tiny_model, "icebreaker", "auto", tmp_path)
    assert first > 1 and built == [first, first // 2] and r["lanes"] == first // 2
    assert r["lanes_choice"]["stopped_by"] == "timing" and "under the 12 MHz board clock" in r["lanes_choice"]["why"]
    assert json.loads((tmp_path / "report.json").read_text())["lanes_choice"] == r["lanes_choice"]


def test_spram_storage_fit():
    """Weights in SPRAM: chosen by ``auto`` when the ROM form does not fit, counted in banks."""
    m = golden.random_model(CodecConfig().replace(**UP5K), 0)
    for side in ("encoder", "decoder"):
        assert resolve_storage(m, "icebreaker", 16, (side,)) == "spram"
    e = estimate(m, "icebreaker", 16, ("encoder",), storage="spram")
    assert e["spram_banks"] == {"encoder": 4}         # 47,872 weight rows -> 3 banks, 4,992 params -> 1
    assert e["memory_bits"] < e["ram_bits_available"] == 122880
    with pytest.raises(FitError, match=r"7 SPRAM banks .* has 4 - build the cores one at a time"):
        resolve_storage(m, "icebreaker", 16)
    with pytest.raises(FitError, match="lanes <= 16"):
        fit_check(m, "icebreaker", 32, ("decoder",), storage="spram")
    with pytest.raises(FitError, match="has no SPRAM"):
        fit_check(m, "ulx3s-85f", 16, storage="spram")
    big = golden.random_model(CodecConfig().replace(**BIG), 0)
    with pytest.raises(FitError, match=r"scale_bits \+ bias_bits <= 16 \(is 16 \+ 14\)"):
        resolve_storage(big, "icebreaker", 16, ("decoder",))
    assert resolve_storage(golden.random_model(preset("tiny"), 0), "icebreaker", 1) == "rom"


def test_icebreaker_spram_yosys(tmp_path):
    """Yosys maps the SPRAM store to SB_SPRAM256KA primitives, one per 16K words."""
    cfg = preset("tiny").replace(fixed={"scale_bits": 8, "bias_bits": 8})
    m = golden.random_model(cfg, 0)
    r = synth(m, "icebreaker", 16, tmp_path, cores=("decoder",), mode="yosys", storage="spram")
    assert r["storage"] == "spram"
    assert r["synth"]["cells"].get("SB_SPRAM256KA") == 2    # weights and parameters, one bank each
    assert "SPRAM" in (tmp_path / "report.md").read_text()


def test_icebreaker_flash_boot_build(tmp_path):
    """A real build of a flash-booting SPRAM top: the flash pins are placed, the flash image the
    build writes beside the bitstream is the board's ``W`` frame, and the report says where it goes."""
    from hw import host, protocol
    cfg = preset("tiny").replace(fixed={"scale_bits": 8, "bias_bits": 8})
    m = golden.random_model(cfg, 0)
    r = synth(m, "icebreaker", 16, tmp_path, cores=("decoder",), storage="spram", flash_boot=True)
    image = protocol.flash_image(host.load_payload(m, 16, ("decoder",)))
    assert (tmp_path / r["flash_boot"]["image"]).read_bytes() == image
    assert r["flash_boot"]["image_bytes"] == len(image) and r["flash_boot"]["offset"] == protocol.FLASH_IMAGE_OFFSET
    assert f"-o {protocol.FLASH_IMAGE_OFFSET // 1024}k" in r["flash_boot"]["program"]
    assert r["utilization"]["io"]["used"] >= 3 + 6     # clock, UART, LEDs + the six flash pins
    assert r["fmax_mhz"] > 12
    assert "flash" in (tmp_path / "report.md").read_text()


def test_estimate_counts_weight_bits_exactly(tiny_model):
    cfg = tiny_model.config
    e = estimate(tiny_model, "icebreaker", 1)
    assert e["weight_bits"]["encoder"] + e["weight_bits"]["decoder"] == (
        cfg.binary_macs_per_frame("encoder") + cfg.binary_macs_per_frame("decoder"))


def test_tool_failure_is_one_line_and_keeps_the_old_bitstream(tiny_model, tiny_model_path, tmp_path, monkeypatch, capsys):
    """A failing Yosys/nextpnr run gives a ToolError naming the logs (one `cascade: error:`
    line in the CLI), and the bitstream and report already in the folder stay as they were."""
    import subprocess

    import hw.synth as hs
    real = hs._platform

    def failing(board):
        plat = real(board)

        def build(*args, **kwargs):
            raise subprocess.CalledProcessError(1, ["sh", "build_top.sh"])
        plat.build = build
        return plat
    monkeypatch.setattr(hs, "_platform", failing)
    (tmp_path / "top.bin").write_bytes(b"old bitstream")
    (tmp_path / "report.md").write_text("old report")
    with pytest.raises(hs.ToolError, match="FPGA tools failed building icebreaker"):
        synth(tiny_model, "icebreaker", 1, tmp_path, **CORES)
    assert (tmp_path / "top.bin").read_bytes() == b"old bitstream"
    assert (tmp_path / "report.md").read_text() == "old report"
    from model.cli import main
    assert main(["synth", "--board", "icebreaker", "--model", str(tiny_model_path), "--lanes", "4",
                 "--cores", "encoder", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cascade:")]
    assert errors == [err.splitlines()[-1]] and errors[0].startswith("cascade: error: the FPGA tools failed")
    assert "Traceback" not in err
    assert (tmp_path / "top.bin").read_bytes() == b"old bitstream"


def test_core_timing_host_protocol():
    """With two requests in flight a frame costs the longer of the request's transfer and core +
    reply; the shipped encoder (with its search) stays real-time at the iCEBreaker's 12 MHz
    that way, which one request at a time would not (request + core + reply: 0.80x)."""
    from hw.schedule import Schedule
    from hw.synth import core_timing
    cfg = CodecConfig()
    cpf = Schedule(golden.random_model(cfg, 0), 16, "encoder").cycles_per_frame()
    e = core_timing(cfg, "encoder", cpf, 12e6, 1_000_000, 21.38)
    from hw.protocol import REPLY_OVERHEAD, REQUEST_OVERHEAD
    req_bytes = REQUEST_OVERHEAD + 2 * 320          # framed requests and replies (docs/board.md)
    compute, req, rep = cpf / 12e6, 10 * req_bytes / 1e6, 10 * (REPLY_OVERHEAD + cfg.code_bits_total // 8) / 1e6
    assert e["host_real_time_factor"] == pytest.approx(1 / (50 * max(req, compute + rep)), abs=1e-3)
    assert 1 < e["host_real_time_factor"] < e["real_time_factor_at_board_clock"]
    assert 1 / (50 * (req + compute + rep)) < 1
    assert e["real_time_factor"] == pytest.approx(21.38e6 / (cpf * 50), abs=1e-3)
    slow_link = core_timing(cfg, "encoder", cpf, 12e6, 115_200)
    assert slow_link["host_real_time_factor"] == pytest.approx(1 / (50 * 10 * req_bytes / 115_200), abs=1e-3)


def test_lc_estimate_tracks_the_committed_builds():
    """LC_MODEL (fitted by scripts/fit_lc_model.py) comes within 10 % of nextpnr's logic cells of
    every committed bitstream, built with its own model, lanes, cores, search and storage."""
    import dataclasses
    from pathlib import Path

    from hw.synth import _board
    from model.codec import Codec
    from model.config import SearchConfig
    root = Path(__file__).resolve().parent.parent
    models = {}
    for name in ("default", "large"):
        c = Codec.load(root / "model" / name / "model.pt")
        models[c.cfg.config_hash] = c.int_model()
    reports = sorted(root.glob("bitstreams/*/report.json"))
    assert len(reports) >= 7
    for rep in reports:
        r = json.loads(rep.read_text())
        cells = json.loads((rep.parent / "nextpnr-report.json").read_text())["utilization"]
        fam = _board(r["board"])["family"]
        cells = cells["ICESTORM_LC" if fam == "ice40" else "TRELLIS_COMB"]["used"]
        m, s = models[r["config_hash"]], r["search"]
        cand = tuple(s["candidates"]) if isinstance(s["candidates"], list) else s["candidates"]
        m = dataclasses.replace(m, config=dataclasses.replace(m.config, search=SearchConfig(s["passes"], cand)))
        est = estimate(m, r["board"], r["lanes"], tuple(r["cores"]), r["selftest_frames"], r["storage"],
                       bool(r.get("flash_boot")))
        assert abs(est["luts"] - cells) <= 0.10 * cells, (rep.parent.name, est["luts"], cells)
