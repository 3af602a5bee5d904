"""``hw.host.Board`` over a software link that answers like the board (the byte-level protocol
itself is checked against the simulated board in tests/test_board.py)."""

import numpy as np
import pytest

from hw import host
from model import golden
from model.config import preset


class SoftLink:
    """Answers requests with ``model.golden``, as ``hw/board.py`` does."""

    def __init__(self, model, ram_lanes=None, in_flight=1):
        self.model, self.cfg, self.out = model, model.config, b""
        self.ram_lanes, self.image = ram_lanes, None   # a board with weights in RAM (SPRAM)
        self.in_flight, self.log = in_flight, []      # log: ("w", command) / ("r", bytes asked)

    def write(self, data: bytes):
        cfg, n = self.cfg, self.cfg.network.stages
        cmd, body = data[:1], data[1:]
        self.log.append(("w", cmd))
        if cmd == b"E":
            x = np.frombuffer(body, "<i2").astype(np.int64)[None]
            bits = np.concatenate([c[0] for c in golden.encode(self.model, x)]).astype(np.uint8)
            self.out += b"E" + np.packbits(bits, bitorder="little").tobytes()
        elif cmd == b"D":
            k = body[0]
            if not 1 <= k <= n:
                self.out += b"!"
                return
            nb = sum(cfg.network.code_bits[:k])
            bits = np.unpackbits(np.frombuffer(body[1:], np.uint8), count=nb, bitorder="little")
            edges = np.cumsum((0,) + cfg.network.code_bits[:k])
            codes = [bits[a:b][None].astype(np.int64) for a, b in zip(edges[:-1], edges[1:])]
            self.out += b"D" + golden.decode(self.model, codes, stages=k)[0].astype("<i2").tobytes()
        elif cmd == b"I":
            ram = self.ram_lanes is not None
            flags = 3 | (ram << 2) | ((not ram or self.image is not None) << 3) | ((self.in_flight == 2) << 4)
            self.out += b"I" + bytes.fromhex(cfg.config_hash) + bytes([flags, self.ram_lanes or 1])
        elif cmd == b"W":
            self.image = body
            self.out += b"W"
        elif cmd == b"T":
            self.out += b"T\x00"

    def read(self, n: int) -> bytes:
        self.log.append(("r", n))
        data, self.out = self.out[:n], self.out[n:]
        return data


def test_board_roundtrip_matches_golden():
    cfg = preset("tiny")
    model = golden.random_model(cfg, 2)
    board = host.Board(SoftLink(model), cfg)
    assert board.info() == {"config_hash": cfg.config_hash, "encoder": True, "decoder": True,
                            "needs_load": False, "loaded": True, "lanes": 1, "in_flight": 1}
    assert board.selftest() == {"encoder_ok": True, "decoder_ok": True}
    x = np.random.default_rng(0).integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), (3, cfg.coefficients))
    codes = board.encode(x)
    for got, want in zip(codes, golden.encode(model, x)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(board.decode(codes, 1), golden.decode(model, codes, stages=1))
    with pytest.raises(ValueError, match="K must be"):
        host.decode_request(cfg, [c[0] for c in codes], 3)
    A = cfg.fixed.act_bits
    with pytest.raises(ValueError, match=f"signed {A}-bit"):
        host.encode_request(cfg, np.full(cfg.coefficients, 1 << (A - 1)))
    other = host.Board(SoftLink(model), preset("default"))
    with pytest.raises(host.ProtocolError, match="host config is"):
        other.info()


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
    x = np.random.default_rng(1).integers(-(1 << (cfg.fixed.act_bits - 1)), 1 << (cfg.fixed.act_bits - 1), (3, cfg.coefficients))
    link.log.clear()
    codes = board.encode(x)
    order = "".join("w" if op == "w" else "r" for op, _ in link.log if op == "w" or _ == 1)
    assert order == ("wrwrwr" if in_flight == 1 else "wwrwrr")
    for got, want in zip(codes, golden.encode(model, x)):
        np.testing.assert_array_equal(got, want)
    y = board.decode(codes, 1)
    np.testing.assert_array_equal(y, golden.decode(model, codes, 1))
