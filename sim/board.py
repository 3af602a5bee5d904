"""Simulate the whole board top level (``hw.board.BoardCore``, UART included) with Icarus and
cocotb (``sim/cocotb_board.py``) and check every answer against the golden model.

``run_board`` is what ``tests/test_board.py`` calls.  The UART runs at ``divisor`` clock cycles per
bit (4 by default) so a tiny codec simulates in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hw import host
from hw.board import BoardCore
from model import golden
from model.golden import IntModel

__all__ = ["build_board", "board_transactions", "run_board"]

_REPO = str(Path(__file__).resolve().parents[1])


def build_board(model: IntModel, lanes: int, build_dir, divisor: int = 4, **board_kwargs):
    """Generate the board's Verilog and compile it with Icarus; return ``(runner, top, board)``."""
    from cocotb_tools.runner import get_runner

    from hw.rtl import to_verilog
    from sim.runner import _icarus_patch, spram_model
    build_dir = Path(build_dir).resolve()   # the simulator runs in build_dir: absolute paths
    build_dir.mkdir(parents=True, exist_ok=True)
    board = BoardCore(model, lanes, divisor=divisor, **board_kwargs)
    top = "board_top"
    src = build_dir / f"{top}.v"
    src.write_text(_icarus_patch(to_verilog(board, top)))
    runner = get_runner("icarus")
    sources = [src] + ([spram_model(build_dir)] if board.storage == "spram" else [])
    runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"), always=True)
    return runner, top, board


def board_transactions(model: IntModel, frames, ks, lanes: int = 1,
                       storage: str = "rom") -> list[tuple[str, bytes, int, object]]:
    """``(name, request, reply length, expected)`` for: info, self-test, ``E`` of every frame,
    ``D`` of every frame's golden codes with the K given, and ``D`` with a bad K.  A board with
    RAM-stored weights first refuses ``E``, then gets ``W`` with the load image."""
    cfg = model.config
    frames = np.asarray(frames, dtype=np.int64)
    codes = golden.encode(model, frames)
    ram = storage != "rom"
    info = {"config_hash": cfg.config_hash, "encoder": True, "decoder": True, "needs_load": ram,
            "loaded": not ram, "lanes": lanes, "in_flight": 2}
    tr = [("info", host.info_request(), host.INFO_REPLY_LEN, info)]
    if ram:
        tr += [("unloaded", host.encode_request(cfg, frames[0])[:1], 1, b"!"),
               ("load", host.load_request(model, lanes, ("encoder", "decoder")), 1, b"W"),
               ("info", host.info_request(), host.INFO_REPLY_LEN, dict(info, loaded=True))]
    tr.append(("selftest", host.selftest_request(), 2, {"encoder_ok": True, "decoder_ok": True}))
    for t, f in enumerate(frames):
        tr.append((f"E{t}", host.encode_request(cfg, f), host.encode_reply_len(cfg), [c[t] for c in codes]))
    if len(frames) > 1:   # two requests in flight: the second arrives while the first computes
        n = host.encode_reply_len(cfg)
        tr.append(("E01 in flight", host.encode_request(cfg, frames[0]) + host.encode_request(cfg, frames[1]),
                   2 * n, [[c[t] for c in codes] for t in (0, 1)]))
    for t, k in enumerate(ks):
        per_stage = [c[t] for c in codes]
        expected = golden.decode(model, [c[t:t + 1] for c in codes], stages=k)[0]
        tr.append((f"D{t}k{k}", host.decode_request(cfg, per_stage, k), host.decode_reply_len(cfg), expected))
    tr.append(("badk", bytes([host._D[0], cfg.network.stages + 1]), 1, b"!"))
    return tr


def _check(cfg, name, reply: bytes, expected) -> str | None:
    try:
        if name == "info":
            got = host.parse_info_reply(reply)
        elif name == "selftest":
            got = host.parse_selftest_reply(reply)
        elif name.endswith("in flight"):
            n = len(reply) // 2
            return (_check(cfg, "E0", reply[:n], expected[0]) or _check(cfg, "E1", reply[n:], expected[1])
                    or None) if len(reply) == 2 * n else f"{name}: {len(reply)} bytes"
        elif name.startswith("E"):
            got = host.parse_encode_reply(cfg, reply)
            bad = [s for s, (g, e) in enumerate(zip(got, expected)) if not np.array_equal(g, e)]
            return f"{name}: code bits of stage(s) {bad} differ from golden.encode" if bad else None
        elif name.startswith("D"):
            got = host.parse_decode_reply(cfg, reply)
            bad = np.flatnonzero(got != expected)
            return (f"{name}: word {bad[0]} is {got[bad[0]]}, golden.decode says {expected[bad[0]]} "
                    f"({len(bad)} words differ)") if len(bad) else None
        else:
            got = reply
    except host.ProtocolError as exc:
        return f"{name}: {exc}"
    return None if got == expected else f"{name}: got {got!r}, expected {expected!r}"


def run_board(model: IntModel, lanes: int, build_dir, frames, ks, divisor: int = 4, built=None,
              **board_kwargs) -> dict:
    """Simulate the board on ``frames`` (``E`` each) and ``ks`` (``D`` of frame t's codes with
    ``ks[t]`` stages).  Returns ``{"leds": [pass, fail] after the power-up self-test, "leds_end":
    [pass, fail] after the last transaction, "errors":
    [one line per wrong answer], "cycles": {transaction: cycles}, "boot_cycles": n}``."""
    build_dir = Path(build_dir).resolve()   # the simulator runs in build_dir: absolute paths
    runner, top, board = built if built is not None else build_board(model, lanes, build_dir, divisor, **board_kwargs)
    cfg = model.config
    tr = board_transactions(model, frames, ks, lanes, board.storage)
    reqs = [np.frombuffer(r, np.uint8) for _, r, _, _ in tr]
    longest = max(len(r) + n for _, r, n, _ in tr)
    cpf = max(getattr(board, c).cycles_per_frame for c in board.cores)
    timeout = 20 * divisor * longest + 4 * cpf * (board._frames + 1) + 10_000
    vpath, rpath = build_dir / "board_vectors.npz", build_dir / "board_result.json"
    np.savez(vpath, divisor=board.divisor, timeout_cycles=timeout,
             request_bytes=np.concatenate(reqs), request_splits=np.cumsum([len(r) for r in reqs])[:-1],
             reply_lengths=np.array([n for _, _, n, _ in tr]))
    if rpath.exists():
        rpath.unlink()
    env = {"CASCADE_BOARD": str(vpath), "CASCADE_RESULT": str(rpath),
           "PYTHONPATH": os.pathsep.join([_REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    runner.test(hdl_toplevel=top, test_module="sim.cocotb_board", build_dir=build_dir, test_dir=build_dir,
                extra_env=env)
    if not rpath.exists():
        raise RuntimeError(f"simulation of {top} wrote no result (see {build_dir})")
    res = json.loads(rpath.read_text())
    errors = [e for (name, _, _, exp), rep in zip(tr, res["replies"])
              if (e := _check(cfg, name, bytes.fromhex(rep), exp))]
    return {"leds": res["leds"], "leds_end": res["leds_end"], "errors": errors, "boot_cycles": res["boot_cycles"],
            "cycles": {name: c for (name, _, _, _), c in zip(tr, res["cycles"])}}
