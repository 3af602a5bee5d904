"""The system clock of a board top: the iCE40 PLL settings, a PLL top elaborated for the
iCEBreaker, one real place-and-route run at a PLL clock, and the one-line refusals."""

import json
import subprocess
import sys

import pytest

from hw.clocks import ICE40_OUT, ICE40_PFD, ICE40_VCO, ClockError, Ice40Pll, ice40_pll, resolve_clock
from hw.synth import platform_for, synth
from model import golden
from model.config import preset


@pytest.mark.parametrize("want", [16.2e6, 18e6, 19.5e6, 20e6, 24e6, 48e6, 100e6])
def test_ice40_pll_is_the_nearest_legal_setting_at_or_below(want):
    pll = ice40_pll(12e6, want)
    assert ICE40_PFD[0] <= pll.f_pfd <= ICE40_PFD[1] and ICE40_VCO[0] <= pll.f_vco <= ICE40_VCO[1]
    assert ICE40_OUT[0] <= pll.f_out <= want
    # no legal setting lies between it and the request (brute force over the dividers' fields)
    better = [Ice40Pll(12e6, r, f, q) for r in range(16) for f in range(128) for q in range(1, 7)]
    better = [p for p in better if ICE40_PFD[0] <= p.f_pfd <= ICE40_PFD[1] and ICE40_VCO[0] <= p.f_vco
              <= ICE40_VCO[1] and pll.f_out < p.f_out <= want]
    assert better == []


def test_ice40_pll_known_settings():
    """The settings icepll prints for 12 MHz in (icepll -i 12 -o 18 / -o 24)."""
    assert (ice40_pll(12e6, 18e6).divf, ice40_pll(12e6, 18e6).divq, ice40_pll(12e6, 18e6).divr) == (47, 5, 0)
    assert ice40_pll(12e6, 24e6).parameters() == {"FEEDBACK_PATH": "SIMPLE", "PLLOUT_SELECT": "GENCLK",
                                                  "DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}
    assert ice40_pll(12e6, 20e6).f_out == 19.875e6


def test_clocks_the_board_cannot_make():
    with pytest.raises(ClockError, match="16 to 275 MHz"):
        ice40_pll(12e6, 15e6)
    with pytest.raises(ClockError, match="iCE40 boards only"):
        resolve_clock(platform_for("ulx3s-85f"), 50e6)
    assert resolve_clock(platform_for("ulx3s-85f"), None) == 25e6
    assert resolve_clock(platform_for("ulx3s-85f"), 25e6) == 25e6
    assert resolve_clock(platform_for("icebreaker"), 12e6) == 12e6


@pytest.mark.parametrize("args, says", [
    (["--board", "icebreaker", "--clock", "15"], "16 to 275 MHz"),
    (["--board", "ulx3s-25f", "--clock", "40"], "iCE40 boards only"),
    (["--board", "icebreaker", "--clock", "0"], "--clock"),
])
def test_cli_refuses_a_clock_in_one_line(args, says, tmp_path):
    r = subprocess.run([sys.executable, "-m", "model.cli", "synth", "--random-weights", "--model", "tiny",
                        "--out", str(tmp_path / "out"), *args], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("cascade: error: ")
    assert says in r.stderr and not (tmp_path / "out").exists()


def test_icebreaker_pll_build(tmp_path):
    """A real Yosys + nextpnr + icepack build of the tiny preset at a PLL clock: the PLL is
    placed, nextpnr checks timing at the PLL's output clock, the UART divisor and the real-time
    figures follow it."""
    model = golden.random_model(preset("tiny"), 0)
    r = synth(model, "icebreaker", 4, tmp_path, clock_hz=20e6)
    assert r["clock_mhz"] == 19.875 and r["oscillator_mhz"] == 12
    assert r["pll"]["DIVF"] == 52 and r["pll"]["DIVQ"] == 5 and r["pll"]["primitive"] == "SB_PLL40_PAD"
    assert r["uart_divisor"] == 20                                  # round(19.875 MHz / 1 Mbaud)
    assert r["fmax_constraint_mhz"] == pytest.approx(19.875, abs=0.01)
    assert r["fmax_mhz"] > 19.875
    pnr = json.loads((tmp_path / "build" / "report.json").read_text())
    assert pnr["utilization"]["ICESTORM_PLL"]["used"] == 1
    for core in ("encoder", "decoder"):
        e = r["per_core"][core]
        assert e["real_time_factor_at_board_clock"] == pytest.approx(
            19.875e6 / (e["cycles_per_frame"] * model.config.signal.frame_rate), rel=1e-3)
    assert "through the PLL (SB_PLL40_PAD: DIVR 0, DIVF 52, DIVQ 5" in (tmp_path / "report.md").read_text()
