"""The board top level (UART, command decoder, self-test) with stand-in cores, in Amaranth's
simulator: every command of the protocol through ``hw.host``'s request/parse functions."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import host
from hw.board import BoardCore
from model import golden
from model.config import preset

from standin_cores import StandinDecoder, StandinEncoder, standin_decode, standin_encode
from uart_tb import uart_recv, uart_send

DIV = 4


def run_board(dut, transactions, cycles=400_000):
    """``transactions``: [(request bytes, reply length)] -> (boot leds, [reply bytes])."""
    replies, boot = [], {}
    done = []

    async def sender(ctx):
        await ctx.tick().until(dut.led_pass | dut.led_fail)
        boot["leds"] = (ctx.get(dut.led_pass), ctx.get(dut.led_fail))
        for i, (req, _) in enumerate(transactions):
            await uart_send(ctx, dut.rx, req, DIV)
            while len(done) <= i:
                await ctx.tick()

    async def receiver(ctx):
        for _, n in transactions:
            replies.append(await uart_recv(ctx, dut.tx, n, DIV, timeout=cycles))
            done.append(True)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_testbench(receiver)
    sim.run()
    return boot["leds"], replies


@pytest.fixture(scope="module")
def tiny():
    cfg = preset("tiny")
    return cfg, golden.random_model(cfg, 0)


def standin_board(cfg, model, cores=("encoder", "decoder"), corrupt=False):
    x = np.random.default_rng(5).integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), (2, cfg.coefficients))
    bits = standin_encode(cfg, x)
    y = standin_decode(cfg, bits, cfg.network.stages)
    if corrupt:
        y = y.copy()
        y[1, 3] += 1
    return BoardCore(model, 1, divisor=DIV, cores=cores, encoder_cls=StandinEncoder,
                     decoder_cls=StandinDecoder, selftest=(x, bits, y))


def test_protocol_with_standin_cores(tiny):
    cfg, model = tiny
    rng = np.random.default_rng(7)
    frame = rng.integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), cfg.coefficients)
    bits = standin_encode(cfg, frame[None])[0]
    k = 1
    codes = [bits[:16], bits[16:]]
    trans = [(host.info_request(), host.INFO_REPLY_LEN), (host.selftest_request(), 2),
             (host.encode_request(cfg, frame), host.encode_reply_len(cfg)),
             (host.decode_request(cfg, codes, k), host.decode_reply_len(cfg)),
             (b"D\x09", 1), (b"xI", host.INFO_REPLY_LEN)]
    leds, replies = run_board(standin_board(cfg, model), trans)
    assert leds == (1, 0)
    info = host.parse_info_reply(replies[0])
    assert info == {"config_hash": cfg.config_hash, "encoder": True, "decoder": True,
                    "needs_load": False, "loaded": True, "lanes": 1, "in_flight": 2}
    assert host.parse_selftest_reply(replies[1]) == {"encoder_ok": True, "decoder_ok": True}
    got = host.parse_encode_reply(cfg, replies[2])
    np.testing.assert_array_equal(np.concatenate(got), bits)
    np.testing.assert_array_equal(host.parse_decode_reply(cfg, replies[3]),
                                  standin_decode(cfg, bits[None], k)[0])
    with pytest.raises(host.ProtocolError, match="refused"):
        host.parse_decode_reply(cfg, replies[4])
    assert host.parse_info_reply(replies[5])["config_hash"] == cfg.config_hash  # 'x' ignored


def test_selftest_detects_mismatch_and_missing_core(tiny):
    cfg, model = tiny
    leds, replies = run_board(standin_board(cfg, model, corrupt=True), [(host.selftest_request(), 2)])
    assert leds == (0, 1)
    assert host.parse_selftest_reply(replies[0]) == {"encoder_ok": True, "decoder_ok": False}
    leds, replies = run_board(standin_board(cfg, model, cores=("encoder",)),
                              [(b"D", 1), (host.info_request(), host.INFO_REPLY_LEN)])
    assert leds == (1, 0)
    assert replies[0] == b"!"
    assert host.parse_info_reply(replies[1])["decoder"] is False
