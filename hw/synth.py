"""FPGA builds of the board top level: bitstreams, resources, Fmax and real-time factor.

``synth(model, board, lanes, out_dir)`` builds :class:`hw.board.BoardTop` (UART, self-test and the
requested cores, by default encoder and decoder in one top) for a real board with the YoWASP tools
(Yosys, nextpnr, icepack/ecppack from PyPI) and writes into ``out_dir``:

* the bitstream (``top.bin`` for iCE40, ``top.bit`` for ECP5);
* ``report.json`` / ``report.md``: LUTs and FFs (Yosys cell counts), logic cells, block RAM, SPRAM
  and DSPs used/available (nextpnr), post-route ``fmax_mhz``, which memories went to RAM blocks and
  which to logic, and per core ``cycles_per_frame`` and ``real_time_factor`` =
  ``fmax_hz / (cycles_per_frame * frame_rate)`` (also at the board's own clock, and the bound the
  UART link puts on a frame's round trip);
* ``nextpnr-report.json``: nextpnr's ``--report`` as it came;
* ``build/``: the tool inputs and logs.

``mode="yosys"`` stops after Yosys (no place and route, no bitstream, no Fmax): a quick resource
check for CI.  :func:`fit_check` refuses, before any tool runs, a model that cannot fit the board.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

from model.errors import CascadeError
from model.golden import IntModel

from . import host, protocol
from .flash import SPIFlashReader
from .tools import require, tool_env

__all__ = ["BOARDS", "FitError", "ToolError", "fit_check", "platform_for", "estimate", "resolve_storage", "synth",
           "choose_lanes", "cycles_per_frame", "sweep", "generator_hash", "LANE_CANDIDATES"]


class ToolError(CascadeError, RuntimeError):
    """Yosys, nextpnr or the bitstream packer failed; the message names the log to read."""


class FitError(CascadeError, ValueError):
    """The model cannot fit the board (one line: what is needed, what the board has)."""


# Device facts (see /work/shared/notes/toolchain.md).  ram: kind -> (blocks, bits per block that
# the cores' memories can use).  An ECP5 DP16KD has 18 kbit, but as 1024 x 18, 2048 x 9 ... its rows
# are 18 or 9 bits wide, and the cores' big memories hold words of 2^k bits (weights: P lanes of
# one bit; parameters: 16 bits), which use 16 of every 18 bits: 16 kbit per block.  (The large
# model of hidden 128 has 3.7 Mbit of memory for both cores: under 208 x 18 kbit, over 208 x 16.)
#: (width, depth) shapes of one block RAM (ECP5 DP16KD; the 36-bit shape is its pseudo-dual-port
#: mode).  A memory of ``w`` x ``d`` takes ``ceil(w / width) * ceil(d / depth)`` blocks in its best
#: shape: a weight memory of P-bit rows needs ``ceil(P / 36)`` blocks side by side at least.
_DP16KD = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))

BOARDS = {
    "icebreaker": dict(family="ice40", device="iCE40 UP5K", luts=5280,
                       ram={"SPRAM": (4, 256 * 1024), "EBR": (30, 4096)}, no_init=("SPRAM",),
                       block="EBR", block_shapes=((2, 2048), (4, 1024), (8, 512), (16, 256)),
                       dsps=8, dsp_width=16, synth_opts="-dsp -spram", spram_banks=4,
                       cells={"lc": "ICESTORM_LC", "EBR": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
                              "dsp": "ICESTORM_DSP", "io": "SB_IO"},
                       lut_cells=("SB_LUT4",), ff_prefix="SB_DFF", bitstream="bin"),
    "ulx3s-25f": dict(family="ecp5", device="ECP5 LFE5U-25F", luts=24288,
                      ram={"DP16KD": (56, 16 * 1024)}, block="DP16KD", block_shapes=_DP16KD, dsps=28, dsp_width=18, synth_opts="",
                      cells={"lc": "TRELLIS_COMB", "DP16KD": "DP16KD", "dsp": "MULT18X18D",
                             "io": "TRELLIS_IO"},
                      lut_cells=("LUT4",), ff_prefix="TRELLIS_FF", bitstream="bit"),
    "ulx3s-85f": dict(family="ecp5", device="ECP5 LFE5U-85F", luts=83640,
                      ram={"DP16KD": (208, 16 * 1024)}, block="DP16KD", block_shapes=_DP16KD, dsps=156, dsp_width=18, synth_opts="",
                      cells={"lc": "TRELLIS_COMB", "DP16KD": "DP16KD", "dsp": "MULT18X18D",
                             "io": "TRELLIS_IO"},
                      lut_cells=("LUT4",), ff_prefix="TRELLIS_FF", bitstream="bit"),
}

_CORES = ("encoder", "decoder")


def platform_for(board: str):
    """A fresh Amaranth platform of ``board`` (one prepares one design only)."""
    return _platform(board)


def _platform(board: str):
    if board == "icebreaker":
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        return ICEBreakerPlatform()
    if board == "ulx3s-25f":
        from amaranth_boards.ulx3s import ULX3S_25F_Platform
        return ULX3S_25F_Platform()
    if board == "ulx3s-85f":
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
        return ULX3S_85F_Platform()
    raise ValueError(f"unknown board {board!r} (boards: {', '.join(BOARDS)})")


def _board(board: str) -> dict:
    try:
        return BOARDS[board]
    except KeyError:
        raise ValueError(f"unknown board {board!r} (boards: {', '.join(BOARDS)})") from None


# ---- estimates ----------------------------------------------------------------------------------
def _blocks(width: int, depth: int, shapes) -> int:
    """Block RAMs a ``width`` x ``depth`` memory takes in its best block shape."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in shapes)


#: Logic-cell model of a board top (``estimate``): the board's UART, self-test and command
#: logic; per core a base, the layer table's decode per layer op, the code search (margins,
#: flips, error accumulator); per lane and accumulator bit the MAC lane and its shadow register.
#: The terms are :func:`lc_terms`'; the coefficients are fitted by ``scripts/fit_lc_model.py``
#: to nextpnr's logic cells of the committed builds and lane sweeps (ECP5 linear terms, then
#: ``ice40_factor`` on the two iCE40 builds, which boot from flash; ``flash_boot``, the SPI
#: flash reader and its sequencing, is not fitted).  How close it comes: docs/RESULTS.md.
LC_MODEL = {"board": 1505, "core": 1012, "per_op": 2, "search": 965, "per_lane_acc_bit": 4,
            "per_lane": 0, "ice40_factor": 1.015, "flash_boot": 140}


def lc_terms(model: IntModel, lanes: int, cores=_CORES, flash_boot: bool = False) -> dict:
    """What each coefficient of :data:`LC_MODEL` multiplies for a board top of ``cores`` with
    ``lanes`` lanes (except ``ice40_factor``, a factor on the sum): the one place both
    :func:`estimate` and its fit (``scripts/fit_lc_model.py``) take them from."""
    from .schedule import Schedule
    t = {"board": 1, "flash_boot": int(bool(flash_boot)), "core": 0, "per_op": 0, "search": 0,
         "per_lane_acc_bit": 0, "per_lane": 0}
    for side in cores:
        sc = Schedule(model, lanes, side)
        t["core"] += 1
        t["per_op"] += len(sc.ops)
        t["search"] += int(bool(sc.searches))
        t["per_lane_acc_bit"] += lanes * sc.acc_bits
        t["per_lane"] += lanes
    return t


def estimate(model: IntModel, board: str, lanes: int = 1, cores=_CORES, selftest_frames: int = 1,
             storage: str = "rom", flash_boot: bool = False) -> dict:
    """Memory bits, LUTs and DSPs that the board top needs, before any tool runs.

    Memory bits are exact for weights (padded to whole groups of ``lanes`` outputs) and parameters
    (``scale_bits + bias_bits`` per output), plus activation, frame and self-test memories, all
    from the cores' own :class:`~hw.schedule.Schedule`.  ``luts`` is an estimate of logic cells
    (:data:`LC_MODEL`); DSPs: one multiplier per core's post unit.  With ``storage="spram"``
    weights and parameters go to SPRAM banks (``spram_banks``: per core, weights + parameters)
    and only the rest needs block RAM."""
    from .schedule import Schedule
    from .store import spram_banks
    b = _board(board)
    cfg = model.config
    fx, D, A = cfg.fixed, cfg.coefficients, cfg.fixed.act_bits
    B = cfg.code_bits_total
    est = {"storage": storage, "weight_bits": {}, "param_bits": {}, "other_bits": {}, "luts": 0, "dsps": 0}
    if storage == "spram":
        est["spram_banks"] = {}
        est["spram_banks_available"] = b.get("spram_banks", 0)
    shapes, blocks = b["block_shapes"], 0
    lc = sum(LC_MODEL[k] * n for k, n in lc_terms(model, lanes, cores, flash_boot).items())
    for side in cores:
        sc = Schedule(model, lanes, side)
        if storage == "spram":
            est["spram_banks"][side] = spram_banks(sc.weight_depth) + spram_banks(sc.param_depth)
        else:
            blocks += _blocks(lanes, sc.weight_depth, shapes) + _blocks(sc.scale_bits + sc.bias_bits,
                                                                         sc.param_depth, shapes)
        est["weight_bits"][side] = sc.weight_depth * lanes
        est["param_bits"][side] = sc.param_depth * (sc.scale_bits + sc.bias_bits)
        io = 2 * D * A if side == "encoder" else 2 * B
        est["other_bits"][side] = sc.act_depth * A + io
        est["dsps"] += math.ceil(sc.acc_bits / b["dsp_width"]) * math.ceil(fx.scale_bits / b["dsp_width"])
    est["luts"] = round(lc * (LC_MODEL["ice40_factor"] if b["family"] == "ice40" else 1))
    st = selftest_frames * ((2 * D * A) + B)
    est["other_bits"]["selftest"] = st
    # a lower bound: the weight and parameter memories alone (Yosys may put small ones in logic)
    est["blocks"] = blocks
    est["blocks_available"] = b["ram"][b["block"]][0]
    est["block_kind"] = b["block"]
    if storage == "spram":   # weights and parameters live in SPRAM, the rest in block RAM
        est["memory_bits"] = sum(est["other_bits"].values())
        est["rom_bits"] = st
        est["ram_bits_available"] = sum(n * bits for kind, (n, bits) in b["ram"].items() if kind != "SPRAM")
    else:
        est["memory_bits"] = sum(sum(est[k].values()) for k in ("weight_bits", "param_bits", "other_bits"))
        # ROM storage: weights, parameters and self-test vectors need RAM that the bitstream initializes
        est["rom_bits"] = (sum(est["weight_bits"].values()) + sum(est["param_bits"].values())
                           + est["other_bits"]["selftest"]) if storage == "rom" else st
        est["ram_bits_available"] = sum(n * bits for n, bits in b["ram"].values())
    est["rom_bits_available"] = sum(n * bits for kind, (n, bits) in b["ram"].items()
                                    if kind not in b.get("no_init", ()))
    if est["dsps"] > b["dsps"]:  # multipliers without a DSP go to LUTs
        est["luts"] += (est["dsps"] - b["dsps"]) * b["dsp_width"] ** 2
    return est


def fit_check(model: IntModel, board: str, lanes: int = 1, cores=_CORES, selftest_frames: int = 1,
              storage: str = "rom") -> None:
    """Raise :class:`FitError` (one line) if the model cannot fit ``board`` with its weights in
    ``storage`` (``hw/store.py``); else return None."""
    if not isinstance(model, IntModel):
        raise TypeError(f"model must be an IntModel, not {type(model).__name__}")
    b = _board(board)
    lanes = int(lanes)
    cfg = model.config
    if not 1 <= lanes <= host.MAX_BOARD_LANES:
        raise FitError(f"a board top has 1 to at most {host.MAX_BOARD_LANES} lanes (its info reply carries P "
                       f"in one byte), not {lanes}")
    names = " and ".join(cores)
    if storage == "spram":
        fx = cfg.fixed
        if not b.get("spram_banks"):
            raise FitError(f"{b['device']} has no SPRAM (storage 'spram' is for the iCE40 UltraPlus)")
        from .store import spram_misfit
        misfit = spram_misfit(lanes, fx.scale_bits, fx.bias_bits)
        if misfit:
            raise FitError(misfit)
        e = estimate(model, board, lanes, cores, selftest_frames, storage)
        need = sum(e["spram_banks"].values())
        if need > b["spram_banks"]:
            per = ", ".join(f"{n} for the {c}" for c, n in e["spram_banks"].items())
            raise FitError(f"weights and parameters need {need} SPRAM banks of 256 kbit ({per}); {b['device']} "
                           f"has {b['spram_banks']}" + (" - build the cores one at a time" if len(cores) > 1 and
                                                        max(e["spram_banks"].values()) <= b["spram_banks"] else ""))
    else:
        e = estimate(model, board, lanes, cores, selftest_frames, storage)
    have = " + ".join(f"{n * bits} {kind}" for kind, (n, bits) in b["ram"].items()
                      if storage != "spram" or kind != "SPRAM")
    if e["memory_bits"] > e["ram_bits_available"]:
        w = sum(e["weight_bits"].values())
        raise FitError(f"model needs {w} weight bits + {e['memory_bits'] - w} other memory bits in the {names}; "
                       f"{b['device']} has {have} bits ({e['ram_bits_available']} in all)"
                       + (" - build the cores one at a time" if len(cores) > 1 and all(
                           estimate(model, board, lanes, (c,), selftest_frames, storage)["memory_bits"]
                           <= e["ram_bits_available"] for c in cores) else "")
                       + (" - weights in SPRAM: --storage spram" if storage == "rom" and b.get("spram_banks") else ""))
    if e["rom_bits"] > e["rom_bits_available"]:
        w = sum(e["weight_bits"].values())
        empty = " + ".join(f"{n * bits} {kind}" for kind, (n, bits) in b["ram"].items() if kind in b.get("no_init", ()))
        raise FitError(f"model needs {w} weight bits + {e['rom_bits'] - w} parameter/self-test bits of initialized "
                       f"memory in the {names}; {b['device']} has {e['rom_bits_available']} bits that a bitstream "
                       f"initializes ({empty} bits start empty)")
    if e["blocks"] > e["blocks_available"]:
        widest = max(w for w, _ in b["block_shapes"])
        raise FitError(f"with {lanes} lanes the memories of the {names} need at least {e['blocks']} {b['block']} "
                       f"blocks for weights and parameters ({lanes}-bit weight rows take {math.ceil(lanes / widest)} "
                       f"side by side); "
                       f"{b['device']} has {e['blocks_available']}")
    if e["luts"] > b["luts"]:
        raise FitError(f"the {names} need about {e['luts']} logic cells with {lanes} lanes (estimate); "
                       f"{b['device']} has {b['luts']}")


def resolve_storage(model: IntModel, board: str, lanes: int = 1, cores=_CORES, selftest_frames: int = 1,
                    storage: str = "auto") -> str:
    """The storage a build uses: ``storage`` itself after a fit check, or for ``"auto"`` the ROM form
    (weights in the bitstream) when it fits, else SPRAM where the board has it (weights loaded by
    the host at run time).  Raises :class:`FitError` when nothing fits."""
    if storage != "auto":
        fit_check(model, board, lanes, cores, selftest_frames, storage)
        return storage
    try:
        fit_check(model, board, lanes, cores, selftest_frames, "rom")
        return "rom"
    except FitError as rom_error:
        if not _board(board).get("spram_banks"):
            raise
        try:
            fit_check(model, board, lanes, cores, selftest_frames, "spram")
        except FitError as spram_error:
            raise FitError(f"{spram_error} (in ROM: {rom_error})") from None
        return "spram"


# ---- choosing the lane count ----------------------------------------------------------------------
#: ``--lanes auto`` tries these P (powers of two up to what a board top's info reply carries).
LANE_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
#: ``--lanes auto`` stops doubling P when the next doubling saves less than this share of the
#: slowest core's cycles per frame (lanes idle in short layers and the code search's waits).
MIN_GAIN = 0.10


def cycles_per_frame(model: IntModel, lanes: int, cores=_CORES) -> dict:
    """Designed cycles per frame of each core (``hw.schedule.Schedule.cycles_per_frame``)."""
    from .schedule import Schedule
    return {c: Schedule(model, lanes, c).cycles_per_frame() for c in cores}


def choose_lanes(model: IntModel, board: str, cores=_CORES, selftest_frames: int = 1,
                 storage: str = "auto", below: int | None = None) -> dict:
    """The lane count ``--lanes auto`` builds with, and why it stopped there.

    Doubles P through :data:`LANE_CANDIDATES` (below ``below`` if given: a retry after a build
    that missed its clock) while :func:`resolve_storage` finds that the board's cells, memory bits,
    block RAMs (P-bit rows need ``ceil(P / 36)`` DP16KD side by side) and SPRAM word width take it,
    and while doubling still cuts the slowest core's cycles per frame by :data:`MIN_GAIN`.
    Returns ``{"lanes", "storage", "stopped_by", "why", "tried": [{"lanes", "fits", "reason" or
    "cycles_per_frame"}]}``; ``stopped_by`` is ``"fit"``, ``"gain"``, ``"largest"`` or ``"timing"``.
    Raises :class:`FitError` when not even one lane fits.
    """
    cands = [P for P in LANE_CANDIDATES if below is None or P < below]
    tried, best = [], None
    for P in cands:
        try:
            st = resolve_storage(model, board, P, cores, selftest_frames, storage)
        except FitError as e:
            tried.append({"lanes": P, "fits": False, "reason": str(e)})
            if best is None:
                if P == cands[-1]:
                    raise
                continue        # few lanes make deep memories: SPRAM banks may run out first
            return {**best, "stopped_by": "fit", "tried": tried,
                    "why": f"{P} lanes do not fit: {e}"}
        cpf = cycles_per_frame(model, P, cores)
        tried.append({"lanes": P, "fits": True, "cycles_per_frame": cpf})
        if best is not None:
            gain = 1 - max(cpf.values()) / max(best["cycles_per_frame"].values())
            if gain < MIN_GAIN:
                return {**best, "stopped_by": "gain", "tried": tried,
                        "why": f"{P} lanes would fit but cut cycles per frame by only {100 * gain:.1f} % "
                               f"(lanes idle in layers narrower than P, and the code search's waits)"}
        best = {"lanes": P, "storage": st, "cycles_per_frame": cpf}
    return {**best, "stopped_by": "largest", "tried": tried,
            "why": f"{best['lanes']} is the largest candidate (a board top carries P in one byte)"}


# ---- tools --------------------------------------------------------------------------------------
def _parse_yosys(stat_path: Path, log_path: Path, b: dict) -> dict:
    stat = json.loads(stat_path.read_text())
    by_type = stat["design"]["num_cells_by_type"]
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    to_ram = re.findall(r"^mapping memory (\S+) via (\S+)", log, re.M)
    to_logic = re.findall(r"^Mapping memory \\?(\S+) in module", log, re.M)
    distributed = ("TRELLIS_DPR16X4",)  # ECP5 LUT RAM
    return {
        "luts": sum(n for t, n in by_type.items() if t in b["lut_cells"]),
        "ffs": sum(n for t, n in by_type.items() if t.startswith(b["ff_prefix"])),
        "cells": {t: n for t, n in sorted(by_type.items()) if not t.startswith("$")},
        "memories_in_ram": {name: kind.strip("$_") for name, kind in to_ram if kind.strip("$_") not in distributed},
        "memories_in_lut_ram": [name for name, kind in to_ram if kind.strip("$_") in distributed],
        "memories_in_logic": to_logic,
    }


#: Extra ``synth_ecp5`` option for a rebuild when Yosys's ABC9 pass stops on the assertion
#: ``GetSize(conn.first) == GetSize(conn.second)`` in ``abc9_ops -reintegrate`` (seen with Yosys
#: 0.70 on some ECP5 builds at 128 lanes, and on the ULX3S-25F decoder): ``-dff`` passes the
#: flip-flops through ABC9 as boxes and the netlist reintegrates; ``-nowidelut``/``-noccu2`` do not help.
ABC9_WORKAROUND = "-dff"
_ABC9_ASSERT = "GetSize(conn.first) == GetSize(conn.second)"


def _abc9_reintegrate_bug(log: Path) -> bool:
    return log.is_file() and _ABC9_ASSERT in log.read_text(errors="replace")


def _yosys_version(env) -> str:
    try:
        out = subprocess.run([env["YOSYS"], "-V"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError, KeyError):
        return "?"
    m = re.search(r"Yosys (\S+)", out)
    return m.group(1) if m else "?"


def _run_yosys_only(top_core, b, out_dir: Path, env) -> dict:
    from amaranth.back import rtlil
    build = out_dir / "build"
    build.mkdir(parents=True, exist_ok=True)
    (build / "top.il").write_text(rtlil.convert(top_core, name="top"))
    cmd = "synth_ice40" if b["family"] == "ice40" else "synth_ecp5"
    script = f"read_rtlil top.il; {cmd} {b['synth_opts']} -top top; tee -q -o stat.json stat -json"
    subprocess.run([env["YOSYS"], "-q", "-l", "top.rpt", "-p", script], cwd=build, check=True,
                   env={**os.environ, **env})
    return _parse_yosys(build / "stat.json", build / "top.rpt", b)


# ---- the build ----------------------------------------------------------------------------------
#: The flash image a flash-booting build writes beside its bitstream (``protocol.flash_image``).
FLASH_IMAGE = "flash-image.bin"


def synth(model: IntModel, board: str, lanes: int = 1, out_dir=None, *, cores=_CORES, mode: str = "full",
          baud: int = 1_000_000, selftest_frames: int = 1, seed: int = 1, check_fit: bool = True,
          storage: str = "auto", clock_hz: float | None = None, **board_kwargs) -> dict:
    """Build the board top for ``board`` and return (and write) its report.

    Parameters
    ----------
    model : IntModel
    board : str
        ``"icebreaker"``, ``"ulx3s-25f"`` or ``"ulx3s-85f"``.
    lanes : int or "auto"
        Passed to the cores; ``"auto"``: :func:`choose_lanes`, and after place and route half as
        many while the build misses the board clock or does not place (``report["lanes_choice"]``
        says why the build has the P it has).
    out_dir : path
        Where everything goes (default ``bitstreams/<board>``).
    cores : tuple of str
        Cores in the one top (default both; build them one at a time for a model that does not
        fit with both).
    mode : str
        ``"full"`` (Yosys, nextpnr, pack: bitstream and Fmax) or ``"yosys"`` (synthesis only).
    seed : int
        nextpnr placement seed.
    storage : str
        Where the weights live (``hw/store.py``): ``"rom"``, ``"ram"``, ``"spram"`` or ``"auto"``
        (:func:`resolve_storage`: ROM if it fits, else SPRAM on the iCE40 UltraPlus).
    clock_hz : float or None
        The system clock: None for the board's oscillator, else the nearest clock at or below it
        that the board's PLL makes (``hw.clocks``; iCE40 only).  The UART divisor, the timing
        constraint and every real-time figure of the report use it.
    board_kwargs :
        Passed to :class:`hw.board.BoardCore` (e.g. ``encoder_cls`` for tests).
    """
    from .board import BoardTop
    from .clocks import SystemClock, resolve_clock

    if lanes == "auto":
        return _synth_auto(model, board, out_dir, cores=cores, mode=mode, baud=baud,
                           selftest_frames=selftest_frames, seed=seed, check_fit=check_fit,
                           storage=storage, clock_hz=clock_hz, **board_kwargs)
    b = _board(board)
    if mode not in ("full", "yosys"):
        raise ValueError(f"mode must be 'full' or 'yosys', not {mode!r}")
    cores = tuple(cores)
    if check_fit:
        storage = resolve_storage(model, board, lanes, cores, selftest_frames, storage)
    elif storage == "auto":
        storage = "rom"
    out_dir = Path(out_dir if out_dir is not None else Path("bitstreams") / board)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env()
    os.environ.update(env)  # Amaranth's build reads the tool variables from the environment
    platform = _platform(board)
    clk = resolve_clock(platform, clock_hz)
    pll = SystemClock.plan(platform, clk)
    top = BoardTop(model, lanes, clk_freq=clk, baud=baud, cores=cores, selftest_frames=selftest_frames,
                   storage=storage, **board_kwargs)
    t0 = time.monotonic()
    report = {"board": board, "device": b["device"], "mode": mode, "lanes": int(lanes), "cores": list(cores),
              "config_hash": model.config.config_hash, "generator": generator_hash(), "clock_mhz": clk / 1e6,
              "oscillator_mhz": platform.default_clk_frequency / 1e6,
              "pll": None if pll is None else {"primitive": "SB_PLL40_PAD", **pll.parameters(),
                                               "vco_mhz": round(pll.f_vco / 1e6, 3)},
              "baud": baud,
              "uart_divisor": top.core.divisor, "selftest_frames": selftest_frames,
              "top": "one board top (hw.board.BoardTop) holding " + " and ".join(cores),
              "storage": storage,
              "estimate": estimate(model, board, lanes, cores, selftest_frames, storage, top.core.flash_boot)}
    if top.core.flash_boot:
        from model.files import write_file
        image = top.core.flash_image()
        write_file(out_dir / FLASH_IMAGE, image, force=True)
        report["flash_boot"] = {
            "image": FLASH_IMAGE, "image_bytes": len(image), "offset": protocol.FLASH_IMAGE_OFFSET,
            "program": f"iceprog top.bin && iceprog -o {protocol.FLASH_IMAGE_OFFSET // 1024}k {FLASH_IMAGE}",
            "boot_ms": round(1e3 * len(image) * SPIFlashReader.CYCLES_PER_BYTE / clk, 1)}

    if mode == "yosys":
        require(env, "YOSYS")
        top._MustUse__silence = True  # only its core is synthesized (no I/O buffers)
        report["synth"] = _run_yosys_only(top.core, b, out_dir, env)
        report["fmax_mhz"] = None
    else:
        require(env, "YOSYS", "NEXTPNR_ICE40" if b["family"] == "ice40" else "NEXTPNR_ECP5",
                 "ICEPACK" if b["family"] == "ice40" else "ECPPACK")
        build = out_dir / "build"
        synth_opts = b["synth_opts"]
        for attempt in (0, 1):
            try:
                platform.build(top, name="top", build_dir=str(build), do_program=False,
                               synth_opts=synth_opts,
                               script_after_synth="tee -q -o stat.json stat -json",
                               nextpnr_opts=f"--report report.json --seed {int(seed)}")
                break
            except subprocess.CalledProcessError:
                if attempt == 0 and b["family"] == "ecp5" and _abc9_reintegrate_bug(build / "top.rpt"):
                    synth_opts = f"{synth_opts} {ABC9_WORKAROUND}".strip()
                    platform = _platform(board)      # an Amaranth platform prepares one design only
                    report["synth_workaround"] = (
                        f"synth_ecp5 {ABC9_WORKAROUND}: Yosys {_yosys_version(env)} stopped in ABC9 "
                        f"(assertion in abc9_ops -reintegrate); rebuilt with the flip-flops kept out of ABC9")
                    continue
                logs = [str(build / f) for f in ("top.rpt", "top.tim") if (build / f).is_file()]
                raise ToolError(f"the FPGA tools failed building {board}; see {' and '.join(logs) or build}") from None
        report["synth"] = _parse_yosys(build / "stat.json", build / "top.rpt", b)
        pnr = json.loads((build / "report.json").read_text())
        from model.files import write_file
        write_file(out_dir / "nextpnr-report.json", (build / "report.json").read_bytes(), force=True)
        bit = f"top.{b['bitstream']}"
        write_file(out_dir / bit, (build / bit).read_bytes(), force=True)
        report["bitstream"] = bit
        util = pnr.get("utilization", {})
        report["utilization"] = {k: util[v] for k, v in b["cells"].items() if v in util}
        fmax = [c["achieved"] for c in pnr.get("fmax", {}).values()]
        report["fmax_mhz"] = round(min(fmax), 2) if fmax else None
        report["fmax_constraint_mhz"] = round(min(c["constraint"] for c in pnr["fmax"].values()), 2) if fmax else None
    report["seconds"] = round(time.monotonic() - t0, 1)

    cfg = model.config
    report["frame_rate"] = cfg.signal.frame_rate
    report["search"] = {"passes": cfg.search.passes, "candidates": cfg.search.candidates,
                        "bits_per_stage": [cfg.search_bits(n) for n in range(cfg.network.stages)]}
    report["per_core"] = {name: core_timing(cfg, name, int(getattr(top.core, name).cycles_per_frame),
                                            clk, baud, report["fmax_mhz"]) for name in cores}

    _write_report(report, out_dir, b)      # the bitstream folder's own files, rebuilt by synth
    return report


def _write_report(report: dict, out_dir: Path, b: dict) -> None:
    from model.files import write_file
    write_file(out_dir / "report.json", json.dumps(report, indent=1), force=True)
    write_file(out_dir / "report.md", _markdown(report, b), force=True)


def generator_hash() -> str:
    """Fingerprint of the hardware generator: the sources that make the board top's RTL and the
    Amaranth version (a sweep reuses a build of the same model by the same generator)."""
    import hashlib
    from importlib.metadata import version
    h = hashlib.sha256(version("amaranth").encode())
    here = Path(__file__).parent
    for name in _GENERATOR_SOURCES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()[:16]


_GENERATOR_SOURCES = ("board.py", "clocks.py", "core.py", "decoder.py", "encoder.py", "host.py", "link.py", "mac.py", "post.py",
                      "protocol.py", "schedule.py", "store.py", "uart.py")


def _synth_auto(model, board, out_dir, *, cores, mode, storage, selftest_frames, **kw) -> dict:
    b = _board(board)
    cores = tuple(cores)
    choice = choose_lanes(model, board, cores, selftest_frames, storage)
    while True:
        P = choice["lanes"]
        try:
            report = synth(model, board, P, out_dir, cores=cores, mode=mode, storage=choice["storage"],
                           selftest_frames=selftest_frames, **kw)
        except ToolError as e:
            if P == 1:
                raise
            failed = f"{P} lanes did not place and route ({e})"
        else:
            fmax, clk = report.get("fmax_mhz"), report["clock_mhz"]
            if mode == "yosys" or fmax is None or fmax >= clk or P == 1:
                break
            failed = f"{P} lanes reached {fmax} MHz after place and route, under the {clk:g} MHz board clock"
        tried = choice["tried"]
        choice = choose_lanes(model, board, cores, selftest_frames, storage, below=P)
        choice.update(stopped_by="timing", why=failed, tried=tried + [{"lanes": P, "fits": False, "reason": failed}])
    report["lanes_choice"] = {"mode": "auto", "stopped_by": choice["stopped_by"], "why": choice["why"],
                              "tried": choice["tried"]}
    _write_report(report, Path(out_dir if out_dir is not None else Path("bitstreams") / board), b)
    return report


def sweep(model: IntModel, board: str, lanes=(8, 16, 32, 64, 128), out_dir=None, *, cores=_CORES,
          storage: str = "auto", selftest_frames: int = 1, seed: int = 1, report_dir=None,
          progress=None, clock_hz: float | None = None) -> dict:
    """Real builds at each P in ``lanes``: one :func:`synth` per P into ``out_dir/lanes-P``, a
    row per P (cells, block RAM, SPRAM, DSPs, Fmax, cycles per frame, MACs / P, real-time factors
    at the board clock and at Fmax; or why it does not fit), written as ``sweep.json``,
    ``sweep.md`` and ``sweep.png`` (real-time factor and logic cells against P) into
    ``report_dir`` (default ``out_dir``).  A P whose folder holds the report of a build of this
    model (``config_hash``) by this generator (:func:`generator_hash`), or whose row is in an
    earlier ``sweep.json`` of the same model, cores and generator, is not built again."""
    from .schedule import Schedule
    b = _board(board)
    cores = tuple(cores)
    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir
    from .clocks import resolve_clock
    clk = resolve_clock(_platform(board), clock_hz) / 1e6
    gen, rows = generator_hash(), []
    previous = {}     # rows of an earlier sweep of this model by this generator (the build folders may be gone)
    try:
        prev = json.loads((report_dir / "sweep.json").read_text())
        if prev.get("generator") == gen and prev.get("config_hash") == model.config.config_hash \
                and prev.get("cores") == list(cores) and prev.get("board") == board \
                and prev.get("clock_mhz") == clk:
            previous = {row["lanes"]: row for row in prev.get("rows", []) if row.get("fits")}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        previous = {}
    for P in lanes:
        sub = out_dir / f"lanes-{P}"
        if P in previous and not (sub / "report.json").is_file():
            rows.append({**previous[P], "reused": True})
            if progress:
                progress(P, rows[-1])
            continue
        old = None
        if (sub / "report.json").is_file():
            try:
                old = json.loads((sub / "report.json").read_text())
            except ValueError:
                old = None
        if old and old.get("generator") == gen and old.get("config_hash") == model.config.config_hash \
                and old.get("cores") == list(cores) and old.get("lanes") == P and old.get("mode") == "full" \
                and old.get("clock_mhz") == clk:
            rep, reused = old, True
        else:
            reused = False
            try:
                rep = synth(model, board, P, sub, cores=cores, storage=storage, selftest_frames=selftest_frames,
                            seed=seed, clock_hz=clock_hz)
            except (FitError, ToolError) as e:
                rows.append({"lanes": P, "fits": False, "reason": str(e)})
                if progress:
                    progress(P, rows[-1])
                continue
        util = rep.get("utilization", {})
        row = {"lanes": P, "fits": True, "reused": reused, "storage": rep["storage"],
               "cells": util.get("lc", {}).get("used"), "cells_available": util.get("lc", {}).get("available"),
               "luts": rep["synth"]["luts"], "ffs": rep["synth"]["ffs"],
               "memories": {k: u["used"] for k, u in util.items() if k in b["ram"]},
               "dsps": util.get("dsp", {}).get("used"), "fmax_mhz": rep["fmax_mhz"], "per_core": {}}
        if rep.get("synth_workaround"):
            row["synth_workaround"] = rep["synth_workaround"]
        for c in cores:
            e = rep["per_core"][c]
            ideal = Schedule(model, P, c).ideal_cycles_per_frame()
            row["per_core"][c] = {"cycles_per_frame": e["cycles_per_frame"], "macs_over_p": round(ideal, 1),
                                  "over_ideal": round(e["cycles_per_frame"] / ideal, 4),
                                  "rtf_at_board_clock": e["real_time_factor_at_board_clock"],
                                  "rtf_at_fmax": e.get("real_time_factor")}
        rows.append(row)
        if progress:
            progress(P, row)
    result = {"board": board, "device": b["device"], "cores": list(cores), "config_hash": model.config.config_hash,
              "generator": gen, "clock_mhz": clk, "frame_rate": model.config.signal.frame_rate, "rows": rows}
    from model.files import write_file
    report_dir.mkdir(parents=True, exist_ok=True)
    write_file(report_dir / "sweep.json", json.dumps(result, indent=1), force=True)
    write_file(report_dir / "sweep.md", _sweep_markdown(result), force=True)
    _sweep_plot(result, report_dir / "sweep.png")
    return result


def _sweep_markdown(r: dict) -> str:
    lines = [f"# Lane sweep: {' + '.join(r['cores'])} on {r['board']} ({r['device']})", "",
             f"codec {r['config_hash']}, generator {r['generator']}, board clock {r['clock_mhz']:g} MHz; every row "
             "is a real Yosys + nextpnr build (`cascade synth --sweep`).  cycles/frame is the designed count "
             "(cocotb measures the same); MACs / P is the ideal; the ratio is what idle lanes in layers "
             "narrower than P and the code search's waits cost.", "",
             "| P | storage | logic cells | LUT4 | FF | block RAM | DSP | Fmax MHz | core | cycles/frame | "
             "MACs / P | ratio | RTF at board clock | RTF at Fmax |", "|" + "---|" * 14]
    for row in r["rows"]:
        if not row["fits"]:
            lines.append(f"| {row['lanes']} | does not fit: {row['reason']} |" + " |" * 12)
            continue
        mem = ", ".join(f"{v} {k}" for k, v in row["memories"].items())
        for i, (c, e) in enumerate(row["per_core"].items()):
            head = (f"| {row['lanes']} | {row['storage']} | {row['cells']} / {row['cells_available']} | {row['luts']} | "
                    f"{row['ffs']} | {mem} | {row['dsps']} | {row['fmax_mhz']} |") if i == 0 else "|" + " |" * 8
            lines.append(f"{head} {c} | {e['cycles_per_frame']} | {e['macs_over_p']} | {e['over_ideal']} | "
                         f"{e['rtf_at_board_clock']} | {e['rtf_at_fmax']} |")
    lines += ["", f"RTF = frames per second the core computes over the {r['frame_rate']:g} frames per second "
              "speech needs.", ""]
    lines += [f"P = {row['lanes']}: {row['synth_workaround']}." for row in r["rows"] if row.get("synth_workaround")]
    return "\n".join(lines) + "\n"


def _sweep_plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [x for x in r["rows"] if x["fits"]]
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    P = [x["lanes"] for x in rows]
    for c in r["cores"]:
        ax1.plot(P, [x["per_core"][c]["rtf_at_board_clock"] for x in rows], "o-", label=f"{c} at {r['clock_mhz']:g} MHz")
    ax1.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax1.set(xscale="log", yscale="log", xlabel="lanes P", ylabel="real-time factor",
            title="real-time factor at the board clock")
    ax1.set_xticks(P, [str(p) for p in P])
    ax1.legend()
    ax2.plot(P, [x["cells"] for x in rows], "o-", label="logic cells used")
    if rows[0]["cells_available"]:
        ax2.axhline(rows[0]["cells_available"], color="grey", lw=0.8, ls="--", label="available")
    ax2.set(xscale="log", xlabel="lanes P", ylabel="logic cells", title=f"{r['device']}")
    ax2.set_xticks(P, [str(p) for p in P])
    ax2.legend()
    fig.suptitle(f"{' + '.join(r['cores'])}, codec {r['config_hash']}")
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from model.files import write_file
    write_file(path, buf.getvalue(), force=True)


def core_timing(cfg, core: str, cycles_per_frame: int, clk_hz: float, baud: int,
                fmax_mhz: float | None = None) -> dict:
    """Frames per second over frames per second needed (real-time factors) of one core on a
    board: the core alone at the board clock (and at Fmax), the UART link alone (request and
    reply bytes at 10 bits each), and the host protocol as ``cascade board`` runs it, with two
    requests in flight (``docs/board.md``): the next request arrives while the board computes
    and answers, so a frame takes the longer of the request's transfer and core + reply."""
    fps = cfg.signal.frame_rate
    tx_in, tx_out = {"encoder": (host.encode_request_len(cfg), host.encode_reply_len(cfg)),
                     "decoder": (host.decode_request_len(cfg), host.decode_reply_len(cfg))}[core]
    compute = cycles_per_frame / clk_hz
    entry = {"cycles_per_frame": cycles_per_frame,
             "real_time_factor_at_board_clock": round(1 / (compute * fps), 3),
             "uart_real_time_factor": round(baud / (10 * max(tx_in, tx_out)) / fps, 4),
             "host_real_time_factor": round(1 / (max(10 * tx_in / baud, compute + 10 * tx_out / baud) * fps), 3)}
    if fmax_mhz:
        entry["real_time_factor"] = round(fmax_mhz * 1e6 / (cycles_per_frame * fps), 3)
    return entry


def _search_words(sc: dict) -> str:
    if not sc["passes"]:
        return "none"
    bits = sc["bits_per_stage"][:-1]
    return (f"{sc['passes']} pass(es) over the least certain bits of stages 1..N-1: "
            f"{', '.join(map(str, bits))} bits")


def _markdown(r: dict, b: dict) -> str:
    s = r["synth"]
    lines = [f"# {r['board']} ({r['device']}): {r['top']}", "",
             *([f"lanes chosen by `--lanes auto`: {r['lanes']} ({r['lanes_choice']['why']})", ""]
               if r.get("lanes_choice") else []),
             f"lanes {r['lanes']}, codec {r['config_hash']}, mode {r['mode']}, system clock {r['clock_mhz']:g} MHz, "
             f"UART {r['baud']} baud, built in {r['seconds']} s", "",
             *([f"System clock {r['clock_mhz']:g} MHz from the board's {r['oscillator_mhz']:g} MHz oscillator "
                f"through the PLL ({r['pll']['primitive']}: DIVR {r['pll']['DIVR']}, DIVF {r['pll']['DIVF']}, "
                f"DIVQ {r['pll']['DIVQ']}, VCO {r['pll']['vco_mhz']:g} MHz; `cascade synth --clock`).", ""]
               if r.get("pll") else []),
             *([f"Synthesis workaround: {r['synth_workaround']}.", ""] if r.get("synth_workaround") else []),
             *([f"Encoder code search (`SearchConfig`): {_search_words(r['search'])}; `cascade encode` "
                f"with the same setting sends the same streams.", ""] if "encoder" in r["per_core"] else []),
             {"rom": "Weights and parameters in block RAM initialized by the bitstream.",
              "ram": "Weights and parameters in block RAM, loaded over the UART (`cascade board load`).",
              "spram": "Weights and parameters in SPRAM (a bitstream cannot initialize it), loaded over the UART "
                       "after configuration: `cascade board load --port ...` (every `cascade board` action does it "
                       "when the board says it has no weights)."}[r.get("storage", "rom")]
             if not r.get("flash_boot") else
             (f"Weights and parameters in {r['storage'].upper()}, read from the board's SPI flash at power-up "
              f"({r['flash_boot']['image_bytes']} bytes at offset {r['flash_boot']['offset']:#x}, about "
              f"{r['flash_boot']['boot_ms']:g} ms), checked (length, CRC-16) and self-tested before the LEDs light; "
              f"program both once: `{r['flash_boot']['program']}` (`cascade board load` over the UART still works)."),
             "",
             "| resource | used | available |", "|---|---|---|",
             f"| LUT4 (Yosys) | {s['luts']} | {b['luts']} |", f"| FF (Yosys) | {s['ffs']} | |"]
    for k, u in r.get("utilization", {}).items():
        lines.append(f"| {k} (nextpnr) | {u['used']} | {u['available']} |")
    if r["mode"] == "yosys":
        for cell in sorted(s["cells"]):
            if any(t in cell for t in ("RAM", "DP16", "MAC", "MULT", "SPRAM")):
                lines.append(f"| {cell} (Yosys) | {s['cells'][cell]} | |")
    lines += ["", f"Fmax (post-route): {r['fmax_mhz']} MHz" if r["fmax_mhz"] else "Fmax: not placed (yosys mode)", "",
              "memories in RAM blocks: " + (", ".join(f"{k} ({v})" for k, v in s["memories_in_ram"].items()) or "none"),
              "", "memories in LUT RAM: " + (", ".join(s["memories_in_lut_ram"]) or "none"), "",
              "memories in logic (flip-flops and LUTs): " + (", ".join(s["memories_in_logic"]) or "none"), "",
              "| core | cycles/frame | real-time factor at Fmax | at board clock | UART bound | host protocol |",
              "|---|---|---|---|---|---|"]
    for name, e in r["per_core"].items():
        lines.append(f"| {name} | {e['cycles_per_frame']} | {e.get('real_time_factor', '-')} | "
                     f"{e['real_time_factor_at_board_clock']} | {e['uart_real_time_factor']} | "
                     f"{e.get('host_real_time_factor', '-')} |")
    lines += ["", f"real-time factor = f / (cycles_per_frame * {r['frame_rate']:g} frames/s); the UART bound is "
              "frames/s that the link carries (one request and reply per frame) over frames/s needed; "
              "the host protocol column is `cascade board` streaming frames with two requests in flight "
              "(a frame takes the longer of its request's transfer and core + reply).", ""]
    return "\n".join(lines)
