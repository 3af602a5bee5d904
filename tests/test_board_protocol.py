"""The board top level (UART, framed link, command decoder, self-test) with stand-in cores, in
Amaranth's simulator: every command of the protocol through ``hw.host``'s request/parse functions,
and every way a request can go wrong (truncated, corrupted, oversized, trailing bytes, a command
the board cannot run), each followed by a valid request that must be answered correctly."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import host, protocol
from hw.board import BoardCore
from hw.protocol import Command, Status
from model import golden
from model.config import preset

from standin_cores import StandinDecoder, StandinEncoder, standin_decode, standin_encode
from uart_tb import uart_recv_frame, uart_send

DIV = 4
TIMEOUT = 400      # the board's inter-byte timeout in cycles (10 bytes on the line)


def run_board(dut, steps, quiet=3 * TIMEOUT, limit=400_000):
    """``steps``: [(bytes sent, reply frames that follow)]; each step's bytes go out after the
    previous step's replies have arrived.  Returns (boot leds, [[reply frames] per step]) and checks
    that nothing else arrives for ``quiet`` cycles after the last reply."""
    replies, boot, extra = [], {}, []
    wanted = np.cumsum([n for _, n in steps]).tolist()

    async def sender(ctx):
        await ctx.tick().until(dut.led_pass | dut.led_fail)
        boot["leds"] = (ctx.get(dut.led_pass), ctx.get(dut.led_fail))
        for (data, _), until in zip(steps, wanted):
            await uart_send(ctx, dut.rx, data, DIV)
            while len(replies) < until:
                await ctx.tick()

    async def receiver(ctx):
        for _ in range(wanted[-1] if wanted else 0):
            replies.append(await uart_recv_frame(ctx, dut.tx, DIV, timeout=limit))
        for _ in range(quiet):
            await ctx.tick()
            if not ctx.get(dut.tx):
                extra.append("a byte after the last expected reply")
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_testbench(receiver)
    sim.run()
    assert extra == []
    out, i = [], 0
    for _, n in steps:
        out.append(replies[i:i + n])
        i += n
    return boot["leds"], out


@pytest.fixture(scope="module")
def tiny():
    cfg = preset("tiny")
    return cfg, golden.random_model(cfg, 0)


def standin_board(cfg, model, cores=("encoder", "decoder"), corrupt=False, lanes=1):
    x = np.random.default_rng(5).integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), (2, cfg.coefficients))
    bits = standin_encode(cfg, x)
    y = standin_decode(cfg, bits, cfg.network.stages)
    if corrupt:
        y = y.copy()
        y[1, 3] += 1
    return BoardCore(model, lanes, divisor=DIV, timeout_cycles=TIMEOUT, cores=cores, encoder_cls=StandinEncoder,
                     decoder_cls=StandinDecoder, selftest=(x, bits, y))


def _frame(cfg, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), cfg.coefficients)


def _status(reply, tag, command, status):
    r = host.parse_reply(reply)
    assert (r.tag, r.command, Status(r.status), r.payload) == (tag, command, status, b"")


def _encoded(cfg, reply, frame, tag):
    assert host.parse_reply(reply).tag == tag
    np.testing.assert_array_equal(np.concatenate(host.parse_encode_reply(cfg, reply)),
                                  standin_encode(cfg, frame[None])[0])


def test_protocol_with_standin_cores(tiny):
    cfg, model = tiny
    frame = _frame(cfg, 7)
    bits = standin_encode(cfg, frame[None])[0]
    codes = [bits[:16], bits[16:]]
    steps = [(host.info_request(1), 1), (host.selftest_request(2), 1), (host.encode_request(cfg, frame, 3), 1),
             (host.decode_request(cfg, codes, 1, 4), 1), (b"xyz" + host.info_request(5), 1)]
    leds, replies = run_board(standin_board(cfg, model), steps)
    assert leds == (1, 0)
    info = host.parse_info_reply(replies[0][0])
    assert info == {"config_hash": cfg.config_hash, "encoder": True, "decoder": True, "needs_load": False,
                    "loaded": True, "lanes": 1, "in_flight": 2, "flash_boot": False, "protocol": protocol.VERSION}
    assert host.parse_selftest_reply(replies[1][0]) == {"encoder_ok": True, "decoder_ok": True}
    _encoded(cfg, replies[2][0], frame, 3)
    np.testing.assert_array_equal(host.parse_decode_reply(cfg, replies[3][0]), standin_decode(cfg, bits[None], 1)[0])
    assert [host.parse_reply(r[0]).tag for r in replies] == [1, 2, 3, 4, 5]   # 'xyz' outside a frame: ignored


def test_bad_requests_then_a_good_one(tiny):
    """The bar of issue 19 item 5: after a truncated, corrupted, oversized or trailing-byte request,
    a bad K or command, the board answers an error status (never reads the rest as requests) and
    then the next valid request correctly."""
    cfg, model = tiny
    f = [_frame(cfg, s) for s in range(8)]
    E = lambda i, tag: host.encode_request(cfg, f[i], tag)           # noqa: E731
    good = E(0, 9)
    corrupted = bytearray(E(1, 10))
    corrupted[20] ^= 0x04
    oversized = protocol.request_frame(Command.ENCODE, host.encode_payload(cfg, f[2]) + b"\x00", 11)
    huge = protocol.request_frame(Command.ENCODE, b"", 12)[:3] + b"\xff\xff\xff" + bytes(40)
    bad_k = protocol.request_frame(Command.DECODE, bytes([cfg.network.stages + 1]) + bytes(4), 13)
    wrong_k_len = protocol.request_frame(Command.DECODE, bytes([1]) + bytes(host.decode_request_len(cfg) - 9), 14)
    commands_inside = protocol.request_frame(Command.DECODE, bytes([0]) + host.info_request(15)[:4], 16)
    steps = [
        (E(3, 1)[:40], 1), (good, 1),                              # truncated: TIMEOUT, then good
        (bytes(corrupted), 1), (good, 1),                           # corrupted: BAD_CRC
        (oversized, 1), (good, 1),                                  # one byte too long: BAD_LENGTH
        (huge, 1), (good, 1),                                       # length 2^24 - 1: BAD_LENGTH
        (E(4, 2) + b"\x00\x11garbage", 1), (good, 1),               # trailing bytes: ignored
        (E(5, 3) + bytes([protocol.REQUEST_SOF, 7, ord("Q")]), 2), (good, 1),   # a start byte among them
        (bad_k, 1), (good, 1), (wrong_k_len, 1), (good, 1),        # K out of range / disagrees with length
        (commands_inside, 1), (good, 1),                            # a request inside a bad D's payload
        (protocol.request_frame(ord("Z"), b"", 17), 1), (good, 1),  # unknown command
        (protocol.request_frame(Command.LOAD, bytes(8), 18), 1), (good, 1),     # W, wrong length, ROM
        (bytes(corrupted) + E(6, 19), 2),                           # two in flight, the first damaged
    ]
    leds, replies = run_board(standin_board(cfg, model), steps)
    assert leds == (1, 0)
    expect_errors = [(1, Command.ENCODE, Status.TIMEOUT), (10, Command.ENCODE, Status.BAD_CRC),
                     (11, Command.ENCODE, Status.BAD_LENGTH), (12, Command.ENCODE, Status.BAD_LENGTH)]
    for n, (tag, cmd, st) in enumerate(expect_errors):
        _status(replies[2 * n][0], tag, cmd, st)
        _encoded(cfg, replies[2 * n + 1][0], f[0], 9)
    _encoded(cfg, replies[8][0], f[4], 2)
    _encoded(cfg, replies[9][0], f[0], 9)
    _encoded(cfg, replies[10][0], f[5], 3)
    _status(replies[10][1], 7, ord("Q"), Status.TIMEOUT)   # the stray header timed out
    _encoded(cfg, replies[11][0], f[0], 9)
    for n, (tag, cmd, st) in enumerate([(13, Command.DECODE, Status.BAD_K), (14, Command.DECODE, Status.BAD_K),
                                        (16, Command.DECODE, Status.BAD_K), (17, ord("Z"), Status.BAD_COMMAND),
                                        (18, Command.LOAD, Status.BAD_LENGTH)]):
        _status(replies[12 + 2 * n][0], tag, cmd, st)
        _encoded(cfg, replies[13 + 2 * n][0], f[0], 9)
    _status(replies[22][0], 10, Command.ENCODE, Status.BAD_CRC)
    _encoded(cfg, replies[22][1], f[6], 19)


def test_refusals(tiny):
    """W on a ROM board, and E/D on a board without that core, are refused after the whole request
    (its payload is never read as requests)."""
    cfg, model = tiny
    board = standin_board(cfg, model, cores=("encoder",), lanes=16)   # a short load image
    frame = _frame(cfg, 1)
    load = protocol.request_frame(Command.LOAD, bytes([protocol.REQUEST_SOF, 0, ord("I")] * 2)
                                  + bytes(board.load_bytes - 6), 4)
    bits = standin_encode(cfg, frame[None])[0]
    steps = [(load, 1), (host.info_request(5), 1), (host.decode_request(cfg, [bits[:16], bits[16:]], 2, 6), 1),
             (host.encode_request(cfg, frame, 7), 1)]
    leds, replies = run_board(board, steps)
    assert leds == (1, 0)
    _status(replies[0][0], 4, Command.LOAD, Status.NOT_WRITABLE)
    assert host.parse_info_reply(replies[1][0])["decoder"] is False
    _status(replies[2][0], 6, Command.DECODE, Status.NO_CORE)
    _encoded(cfg, replies[3][0], frame, 7)


def test_selftest_detects_mismatch(tiny):
    cfg, model = tiny
    leds, replies = run_board(standin_board(cfg, model, corrupt=True), [(host.selftest_request(), 1)])
    assert leds == (0, 1)
    assert host.parse_selftest_reply(replies[0][0]) == {"encoder_ok": True, "decoder_ok": False}


def test_crc_matches_the_gateware_step():
    """``protocol.crc16_step`` (the gateware's XOR network) computes ``protocol.crc16``."""
    from amaranth.hdl import Module, Signal
    m = Module()
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m.d.comb += out.eq(protocol.crc16_step(crc, byte))
    rng = np.random.default_rng(0)
    cases = [(int(c), int(b)) for c, b in zip(rng.integers(0, 1 << 16, 50), rng.integers(0, 256, 50))]
    got = []

    async def tb(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            got.append(ctx.get(out))
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == [protocol.crc16(bytes([b]), c) for c, b in cases]
    assert protocol.crc16(b"123456789") == 0x29B1        # CRC-16/CCITT-FALSE check value
