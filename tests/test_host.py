"""``hw.host.Board`` over software links: one that answers like the board (the byte-level protocol
itself is checked against the simulated board in tests/test_board.py and test_board_protocol.py),
one that damages, drops and delays frames (the host retries and still gets every answer right),
a silent one (the host gives up within seconds, one line through the CLI too)."""

import os
import time

import numpy as np
import pytest

from hw import host, protocol
from hw.protocol import Command, InfoFlag, Status
from model import golden
from model.config import preset

from helpers import assert_user_error, run


class SoftLink:
    """Answers request frames with ``model.golden``, as ``hw/board.py`` does (CRC checked,
    bytes outside frames ignored)."""

    def __init__(self, model, ram_lanes=None, in_flight=1):
        self.model, self.cfg, self.out, self.buf = model, model.config, b"", b""
        self.ram_lanes, self.image = ram_lanes, None   # a board with weights in RAM (SPRAM)
        self.in_flight, self.log = in_flight, []      # log: ("w", command) / ("r", bytes asked)
        self.requests = 0

    def write(self, data: bytes):
        self.buf += bytes(data)
        while True:
            start = self.buf.find(bytes([protocol.REQUEST_SOF]))
            if start < 0 or len(self.buf) - start < protocol.REQUEST_HEADER:
                return
            self.buf = self.buf[start:]
            n = int.from_bytes(self.buf[3:6], "little")
            if len(self.buf) < protocol.REQUEST_OVERHEAD + n:
                return
            frame, self.buf = self.buf[:protocol.REQUEST_OVERHEAD + n], self.buf[protocol.REQUEST_OVERHEAD + n:]
            tag, cmd, body = frame[1], frame[2], frame[protocol.REQUEST_HEADER:-2]
            self.log.append(("w", bytes([cmd])))
            if protocol.crc16(frame[1:-2]) != int.from_bytes(frame[-2:], "little"):
                self.out += protocol.reply_frame(cmd, Status.BAD_CRC, b"", tag)
            else:
                self.requests += 1
                self.out += self.answer(tag, cmd, body)

    def answer(self, tag, cmd, body) -> bytes:
        cfg, n = self.cfg, self.cfg.network.stages
        if cmd == Command.ENCODE:
            x = np.frombuffer(body, "<i2").astype(np.int64)[None]
            bits = np.concatenate([c[0] for c in golden.encode(self.model, x)]).astype(np.uint8)
            return protocol.reply_frame(cmd, Status.OK, np.packbits(bits, bitorder="little").tobytes(), tag)
        if cmd == Command.DECODE:
            k = body[0]
            if not 1 <= k <= n:
                return protocol.reply_frame(cmd, Status.BAD_K, b"", tag)
            nb = sum(cfg.network.code_bits[:k])
            bits = np.unpackbits(np.frombuffer(body[1:], np.uint8), count=nb, bitorder="little")
            edges = np.cumsum((0,) + cfg.network.code_bits[:k])
            codes = [bits[a:b][None].astype(np.int64) for a, b in zip(edges[:-1], edges[1:])]
            y = golden.decode(self.model, codes, stages=k)[0].astype("<i2").tobytes()
            return protocol.reply_frame(cmd, Status.OK, y, tag)
        if cmd == Command.INFO:
            ram = self.ram_lanes is not None
            flags = (InfoFlag.ENCODER | InfoFlag.DECODER | (InfoFlag.NEEDS_LOAD if ram else 0)
                     | (InfoFlag.LOADED if not ram or self.image is not None else 0)
                     | (InfoFlag.TWO_IN_FLIGHT if self.in_flight == 2 else 0))
            payload = bytes.fromhex(cfg.config_hash) + bytes([flags, self.ram_lanes or 1, protocol.VERSION])
            return protocol.reply_frame(cmd, Status.OK, payload, tag)
        if cmd == Command.LOAD:
            if self.ram_lanes is None:
                return protocol.reply_frame(cmd, Status.NOT_WRITABLE, b"", tag)
            self.image = body
            return protocol.reply_frame(cmd, Status.OK, b"", tag)
        if cmd == Command.SELFTEST:
            return protocol.reply_frame(cmd, Status.OK, b"\x00", tag)
        return protocol.reply_frame(cmd, Status.BAD_COMMAND, b"", tag)

    def read(self, n: int) -> bytes:
        self.log.append(("r", n))
        data, self.out = self.out[:n], self.out[n:]
        return data


class FaultyLink(SoftLink):
    """A SoftLink on a bad line: a seeded share of requests is damaged (one bit) or lost, and of
    replies damaged, lost, cut short or preceded by noise."""

    def __init__(self, model, p=0.2, seed=0, **kw):
        super().__init__(model, **kw)
        self.rng, self.p, self.faults = np.random.default_rng(seed), p, 0

    def write(self, data: bytes):
        data = bytearray(data)
        if self.rng.random() < self.p:
            self.faults += 1
            if self.rng.random() < 0.5:
                return                                   # lost
            data[self.rng.integers(len(data))] ^= 1 << int(self.rng.integers(8))
        super().write(bytes(data))

    def answer(self, tag, cmd, body) -> bytes:
        reply = bytearray(super().answer(tag, cmd, body))
        if self.rng.random() < self.p:
            self.faults += 1
            how = self.rng.integers(4)
            if how == 0:
                return b""                               # lost
            if how == 1:
                reply[self.rng.integers(len(reply))] ^= 1 << int(self.rng.integers(8))
            elif how == 2:
                return bytes(reply[:int(self.rng.integers(1, len(reply)))])
            else:
                return b"\x00\x5a\x13" + bytes(reply)
        return bytes(reply)


class SilentLink:
    def __init__(self):
        self.written = 0

    def write(self, data):
        self.written += len(data)

    def read(self, n):
        return b""


def _frames(cfg, n, seed):
    A = cfg.fixed.act_bits
    return np.random.default_rng(seed).integers(-(1 << (A - 1)), 1 << (A - 1), (n, cfg.coefficients))


def test_board_roundtrip_matches_golden():
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    board = host.Board(SoftLink(model), cfg)
    assert board.info() == {"config_hash": cfg.config_hash, "encoder": True, "decoder": True,
                            "needs_load": False, "loaded": True, "lanes": 1, "in_flight": 1, "flash_boot": False,
                            "protocol": protocol.VERSION}
    assert board.selftest() == {"encoder_ok": True, "decoder_ok": True}
    x = _frames(cfg, 3, 0)
    codes = board.encode(x)
    for got, want in zip(codes, golden.encode(model, x)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(board.decode(codes, 1), golden.decode(model, codes, stages=1))
    assert board.resyncs == 0
    with pytest.raises(ValueError, match="K must be"):
        host.decode_request(cfg, [c[0] for c in codes], 3)
    A = cfg.fixed.act_bits
    with pytest.raises(ValueError, match=f"signed {A}-bit"):
        host.encode_request(cfg, np.full(cfg.coefficients, 1 << (A - 1)))
    other = host.Board(SoftLink(model), preset("default"))
    with pytest.raises(host.ProtocolError, match="host config is"):
        other.info()


def test_request_and_reply_frames():
    """The wire format of docs/board.md: start byte, tag, command, 3-byte length, payload, CRC-16
    (CCITT-FALSE, little-endian) over everything after the start byte; replies likewise with a
    status byte and a 2-byte length; the lengths come from the one table in hw/protocol.py."""
    cfg = preset("tiny")
    req = host.info_request(7)
    assert req == bytes([0xA5, 7, ord("I"), 0, 0, 0]) + protocol.crc16(bytes([7, ord("I"), 0, 0, 0])).to_bytes(2, "little")
    assert len(host.encode_request(cfg, np.zeros(cfg.coefficients))) == host.encode_request_len(cfg) == 8 + 2 * cfg.coefficients
    assert host.decode_request_len(cfg, 1) == 8 + 1 + 2
    reply = protocol.reply_frame(Command.SELFTEST, Status.OK, b"\x02", 9)
    assert host.parse_reply(reply) == (9, ord("T"), 0, b"\x02")
    assert host.parse_selftest_reply(reply) == {"encoder_ok": True, "decoder_ok": False}
    for bad, why in [(reply[:-1], "has"), (reply[:-1] + bytes([reply[-1] ^ 1]), "CRC"), (b"T\x00", "not a reply")]:
        with pytest.raises(host.ProtocolError, match=why):
            host.parse_reply(bad)
    with pytest.raises(host.ProtocolError, match="NOT_LOADED"):
        host.parse_selftest_reply(protocol.reply_frame(Command.SELFTEST, Status.NOT_LOADED))


def test_load_sends_the_schedule_images():
    """A RAM board gets ``W`` + the encoder's then the decoder's ``Schedule.load_words()``, 2 bytes
    a word; a ROM board gets nothing."""
    from hw.schedule import Schedule
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    link = SoftLink(model, ram_lanes=16)
    board = host.Board(link, cfg)
    info = board.info()
    assert info["needs_load"] and not info["loaded"] and info["lanes"] == 16
    board.load(model)
    words = Schedule(model, 16, "encoder").load_words() + Schedule(model, 16, "decoder").load_words()
    assert link.image == b"".join(w.to_bytes(2, "little") for w in words)
    assert board.info()["loaded"]
    rom = SoftLink(model)
    host.Board(rom, cfg).load(model)
    assert rom.image is None


def test_open_without_pyserial_says_so(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_serial(name, *a, **kw):
        if name == "serial":
            raise ImportError(name)
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_serial)
    with pytest.raises(ImportError, match="pip install pyserial"):
        host.Board.open("/dev/null", preset("tiny"))


@pytest.mark.parametrize("in_flight", [1, 2])
def test_requests_in_flight(in_flight):
    """After ``info`` says the board takes two requests, ``encode`` and ``decode`` send the next
    one before reading the answer to the previous; the answers are the same either way."""
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    link = SoftLink(model, in_flight=in_flight)
    board = host.Board(link, cfg)
    assert board.info()["in_flight"] == board.in_flight == in_flight
    x = _frames(cfg, 3, 1)
    link.log.clear()
    codes = board.encode(x)
    order = "".join("w" if op == "w" else "r" for op, _ in link.log if op == "w" or _ == 1)
    assert order == ("wrwrwr" if in_flight == 1 else "wwrwrr")
    for got, want in zip(codes, golden.encode(model, x)):
        np.testing.assert_array_equal(got, want)
    y = board.decode(codes, 1)
    np.testing.assert_array_equal(y, golden.decode(model, codes, 1))


@pytest.mark.parametrize("in_flight", [1, 2])
def test_bad_line_retries_and_resyncs(in_flight):
    """Damaged, lost, cut-short and noisy frames both ways: the host resynchronizes, sends again
    what was not answered, skips late answers to earlier tries (by their tag) and still returns
    exactly golden.encode / golden.decode, in order."""
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    link = FaultyLink(model, p=0.15, seed=in_flight, in_flight=in_flight)
    board = host.Board(link, cfg, margin=0.02, gap=0.01, retries=8)
    board.info()
    x = _frames(cfg, 24, 3)
    codes = board.encode(x)
    for got, want in zip(codes, golden.encode(model, x)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(board.decode(codes, 2), golden.decode(model, codes, 2))
    assert link.faults > 3 and board.resyncs >= link.faults // 2


def test_refusal_is_not_retried():
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    link = SoftLink(model)
    with pytest.raises(host.ProtocolError, match="refused 'W': NOT_WRITABLE"):
        host.Board(link, cfg)._exchange(Command.LOAD, [b"\x00\x00"], 0)
    assert link.requests == 1


def test_silent_board_fails_in_seconds():
    cfg = preset("tiny")
    link = SilentLink()
    board = host.Board(link, cfg)
    t0 = time.monotonic()
    with pytest.raises(host.ProtocolError) as exc:
        board.info()
    seconds = time.monotonic() - t0
    assert seconds < 3, seconds
    msg = str(exc.value)
    assert "\n" not in msg and "'I' failed 4 times" in msg and "no answer" in msg
    assert link.written == 4 * len(host.info_request())


def test_cli_silent_board_on_a_pty_is_one_line(capsys, tmp_path):
    """``cascade board info`` on a serial port where nothing answers (a pseudo-terminal): one line
    ``cascade: error: ...``, exit 1, within a few seconds (not hours)."""
    pytest.importorskip("serial")
    import tty
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        t0 = time.monotonic()
        rc, out, err = run(capsys, "board", "info", "--port", os.ttyname(slave))
        seconds = time.monotonic() - t0
    finally:
        os.close(master)
        os.close(slave)
    assert_user_error(rc, err)
    assert rc == 1 and "no answer" in err and seconds < 5, (err, seconds)
