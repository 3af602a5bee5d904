"""Simulate the whole board top level (``hw.board.BoardCore``, UART included) with Icarus and
cocotb (``sim/cocotb_board.py``) and check every answer against the golden model.

``run_board`` is what ``tests/test_board.py`` calls.  The UART runs at ``divisor`` clock cycles per
bit (4 by default) so a tiny codec simulates in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hw import host, protocol
from hw.board import BoardCore
from model import golden
from model.golden import IntModel

from . import runner as runner_mod

__all__ = ["build_board", "board_transactions", "run_board"]


def build_board(model: IntModel, lanes: int, build_dir, divisor: int = 4, **board_kwargs):
    """Generate the board's Verilog and compile it with Icarus (``sim.runner.build_icarus``);
    return ``(runner, top, board)``."""
    board = BoardCore(model, lanes, divisor=divisor, **board_kwargs)
    top = "board_top"
    return runner_mod.build_icarus(board, top, build_dir, spram=board.storage == "spram"), top, board


def board_transactions(model: IntModel, frames, ks, lanes: int = 1, storage: str = "rom",
                       flash_boot: bool = False, flash_ok: bool = True,
                       cores=("encoder", "decoder")) -> list[tuple[str, bytes, list]]:
    """``(name, request bytes, [(tag, kind, expected) per reply frame])`` for: info, self-test,
    ``E`` of every frame, ``D`` of every frame's golden codes with the K given, and requests that go
    wrong, each followed by a valid one: truncated, corrupted, oversized, trailing bytes, a bad K,
    and ``W`` on a ROM board (with a short payload; the full-length one is in
    ``tests/test_board_protocol.py``) (a RAM board instead first refuses ``E``, gets a damaged and a truncated
    ``W``, refuses ``E`` again, then gets the load image; a flash-booting board whose image was good
    (``flash_ok``) is loaded from the start).  ``kind`` is ``info``, ``selftest``,
    ``encode``, ``decode`` or ``status`` (expected: (command, status) of an error reply).

    A board with one of the two ``cores`` (the shipped model's iCEBreaker tops) gets the short
    list: info, self-test, and that core's requests (``E`` of every frame, or ``D`` of every
    frame with its K), after the load sequence if it needs one."""
    cfg = model.config
    frames = np.asarray(frames, dtype=np.int64)
    codes = golden.encode(model, frames)
    ram = storage != "rom"
    loaded_at_start = not ram or (flash_boot and flash_ok)
    tags = iter(range(1, 256))
    cores = tuple(cores)
    both = set(cores) == {"encoder", "decoder"}
    info = {"config_hash": cfg.config_hash, "encoder": "encoder" in cores, "decoder": "decoder" in cores,
            "needs_load": ram,
            "loaded": loaded_at_start, "lanes": lanes, "in_flight": 2, "flash_boot": flash_boot,
            "protocol": protocol.VERSION}
    C, S = protocol.Command, protocol.Status

    def req(kind, expected, make):
        tag = next(tags)
        return make(tag), [(tag, kind, expected)]

    def status(command, st, make):
        return req("status", (command, st), make)

    def encode(t):
        return req("encode", [c[t] for c in codes], lambda tag: host.encode_request(cfg, frames[t], tag))

    def decode(t, k):
        expected = golden.decode(model, [c[t:t + 1] for c in codes], stages=k)[0]
        return req("decode", expected, lambda tag: host.decode_request(cfg, [c[t] for c in codes], k, tag))

    tr = [("info", *req("info", info, host.info_request))]
    if not loaded_at_start:
        image = host.load_payload(model, lanes, cores)
        if "encoder" in cores:
            probe_cmd, probe = C.ENCODE, lambda tag: host.encode_request(cfg, frames[0], tag)
        else:
            probe_cmd, probe = C.DECODE, lambda tag: host.decode_request(cfg, [c[0] for c in codes], 1, tag)
        tr += [("unloaded", *status(probe_cmd, S.NOT_LOADED, probe)),
               ("load damaged", *status(C.LOAD, S.BAD_CRC, lambda tag: _flip(protocol.request_frame(
                   C.LOAD, image, tag), len(image) // 2))),
               ("load truncated", *status(C.LOAD, S.TIMEOUT, lambda tag: protocol.request_frame(
                   C.LOAD, image, tag)[:len(image) // 3])),
               ("still unloaded", *status(probe_cmd, S.NOT_LOADED, probe)),
               ("load", *req("status", (C.LOAD, S.OK), lambda tag: protocol.request_frame(C.LOAD, image, tag))),
               ("info", *req("info", dict(info, loaded=True), host.info_request))]
    tr.append(("selftest", *req("selftest", {"encoder_ok": True, "decoder_ok": True}, host.selftest_request)))
    if not both:
        if "encoder" in cores:
            tr += [(f"E{t}", *encode(t)) for t in range(len(frames))]
            if len(frames) > 1:
                (r0, e0), (r1, e1) = encode(0), encode(1)
                tr.append(("E01 in flight", r0 + r1, e0 + e1))
        else:
            tr += [(f"D{t}k{k}", *decode(t, k)) for t, k in enumerate(ks)]
            if len(ks) > 1:
                (r0, e0), (r1, e1) = decode(0, ks[0]), decode(1, ks[1])
                tr.append(("D01 in flight", r0 + r1, e0 + e1))
        return tr
    for t in range(len(frames)):
        tr.append((f"E{t}", *encode(t)))
    if len(frames) > 1:   # two requests in flight: the second arrives while the first computes
        (r0, e0), (r1, e1) = encode(0), encode(1)
        tr.append(("E01 in flight", r0 + r1, e0 + e1))
    for t, k in enumerate(ks):
        tr.append((f"D{t}k{k}", *decode(t, k)))
    # requests that go wrong, each followed by a valid one
    last = len(frames) - 1
    tr += [("truncated D", *status(C.DECODE, S.TIMEOUT, lambda tag: host.decode_request(cfg, [c[last] for c in codes], None, tag)[:-3])),
           (f"D{last} after truncated", *decode(last, cfg.network.stages))]
    tr += [("corrupted E", *status(C.ENCODE, S.BAD_CRC, lambda tag: _flip(host.encode_request(cfg, frames[0], tag), 9))),
           ("E0 after corrupted", *encode(0))]
    tr += [("oversized E", *status(C.ENCODE, S.BAD_LENGTH, lambda tag: protocol.request_frame(
               C.ENCODE, host.encode_payload(cfg, frames[0]) + bytes(16), tag))),
           ("E0 after oversized", *encode(0))]
    r, e = encode(last)
    tr += [("trailing bytes", r + b"\x00E\x01\x02D\xff", e), ("E0 after trailing", *encode(0))]
    tr += [("bad K", *status(C.DECODE, S.BAD_K, lambda tag: protocol.request_frame(
               C.DECODE, bytes([cfg.network.stages + 1]) + bytes(protocol.code_bytes(cfg, 1)), tag))),
           ("D0 after bad K", *decode(0, 1))]
    if not ram:   # a W (here with a short payload that holds a whole request) is no command
        inner = host.info_request(0)
        tr += [("W on ROM", *status(C.LOAD, S.BAD_LENGTH, lambda tag: protocol.request_frame(
                   C.LOAD, inner * 3, tag))), ("E0 after W", *encode(0))]
    return tr


def _flip(request: bytes, at: int) -> bytes:
    """``request`` with one bit of byte ``at`` of its payload flipped (the CRC no longer matches)."""
    out = bytearray(request)
    out[protocol.REQUEST_HEADER + at] ^= 0x08
    return bytes(out)


def _check(cfg, name, reply: bytes, tag: int, kind: str, expected) -> str | None:
    try:
        r = host.parse_reply(reply)
        if r.tag != tag:
            return f"{name}: reply tag {r.tag}, request tag {tag}"
        if kind == "status":
            got = (r.command, r.status)
            want = tuple(int(v) for v in expected)
            return None if got == want and r.payload == b"" else (
                f"{name}: got command {r.command} status {r.status} ({len(r.payload)} bytes), expected {want}")
        if kind == "info":
            got = host.parse_info_reply(reply)
        elif kind == "selftest":
            got = host.parse_selftest_reply(reply)
        elif kind == "encode":
            got = host.parse_encode_reply(cfg, reply)
            bad = [s for s, (g, e) in enumerate(zip(got, expected)) if not np.array_equal(g, e)]
            return f"{name}: code bits of stage(s) {bad} differ from golden.encode" if bad else None
        else:
            got = host.parse_decode_reply(cfg, reply)
            bad = np.flatnonzero(got != expected)
            return (f"{name}: word {bad[0]} is {got[bad[0]]}, golden.decode says {expected[bad[0]]} "
                    f"({len(bad)} words differ)") if len(bad) else None
    except host.ProtocolError as exc:
        return f"{name}: {exc}"
    return None if got == expected else f"{name}: got {got!r}, expected {expected!r}"


def run_board(model: IntModel, lanes: int, build_dir, frames, ks, divisor: int = 4, built=None,
              flash_image: bytes | None = None, **board_kwargs) -> dict:
    """Simulate the board on ``frames`` (``E`` each) and ``ks`` (``D`` of frame t's codes with
    ``ks[t]`` stages), and on the bad requests of :func:`board_transactions`.  Returns ``{"leds":
    [pass, fail] after the power-up self-test, "leds_end": [pass, fail] after the last transaction,
    "errors": [one line per wrong answer], "cycles": {transaction: cycles}, "boot_cycles": n}``.
    The board's inter-byte timeout is 40 byte times unless ``timeout_cycles`` is given.

    A board built with ``flash_boot=True`` boots from ``sim/flash_model.py``'s SPI flash holding
    ``flash_image`` (default: the board's good image, ``protocol.flash_image``) at its offset; the
    result then also has ``"flash": {"commands": [(command, address)], "bytes_read": n}``, and the
    transactions expect the board loaded if ``flash_image`` is the good one."""
    build_dir = Path(build_dir).resolve()   # the simulator runs in build_dir: absolute paths
    board_kwargs.setdefault("timeout_cycles", 400 * divisor)
    runner, top, board = built if built is not None else build_board(model, lanes, build_dir, divisor, **board_kwargs)
    cfg = model.config
    good = None
    if board.flash_boot:
        good = board.flash_image()
        flash_image = good if flash_image is None else bytes(flash_image)
    tr = board_transactions(model, frames, ks, lanes, board.storage, board.flash_boot, flash_image == good,
                            board.cores)
    reqs = [np.frombuffer(r, np.uint8) for _, r, _ in tr]
    longest = max(len(r) for _, r, _ in tr) + 2 * max(host.encode_reply_len(cfg), host.decode_reply_len(cfg))
    cpf = max(getattr(board, c).cycles_per_frame for c in board.cores)
    timeout = 20 * divisor * longest + 4 * cpf * (board._frames + 1) + 2 * board.timeout_cycles + 10_000
    if board.flash_boot:     # the boot reads the image at SPIFlashReader.CYCLES_PER_BYTE a byte, or slower
        from hw.flash import SPIFlashReader
        timeout += 2 * SPIFlashReader.CYCLES_PER_BYTE * len(flash_image)
    res = runner_mod.run_bench(
        runner, top, "sim.cocotb_board", build_dir,
        dict(divisor=board.divisor, timeout_cycles=timeout, quiet_cycles=3 * board.timeout_cycles,
             request_bytes=np.concatenate(reqs), request_splits=np.cumsum([len(r) for r in reqs])[:-1],
             reply_frames=np.array([len(e) for _, _, e in tr]),
             flash_image=np.frombuffer(flash_image or b"", np.uint8),
             flash_offset=board.flash_offset if board.flash_boot else -1), "board")
    errors = []
    for (name, _, expect), frames_hex in zip(tr, res["replies"]):
        if len(frames_hex) != len(expect):
            errors.append(f"{name}: {len(frames_hex)} reply frames, expected {len(expect)}")
            continue
        errors += [e for rep, (tag, kind, exp) in zip(frames_hex, expect)
                   if (e := _check(cfg, name, bytes.fromhex(rep), tag, kind, exp))]
    if res.get("extra"):
        errors.append(f"bytes after the last reply: {res['extra']}")
    out = {"leds": res["leds"], "leds_end": res["leds_end"], "errors": errors, "boot_cycles": res["boot_cycles"],
           "cycles": {name: c for (name, _, _), c in zip(tr, res["cycles"])}}
    if "flash" in res:
        out["flash"] = res["flash"]
    return out
