"""Host side of the board protocol (``docs/board.md``, ``hw/board.py``).

The ``*_request`` / ``parse_*`` functions turn frames and codes into the bytes on the wire and back;
they are pure and tested against the simulated board.  :class:`Board` sends them over any object
with ``write(bytes)`` and ``read(n) -> bytes`` (a ``serial.Serial`` from pyserial, opened by
:meth:`Board.open`).
"""

from __future__ import annotations

import numpy as np

from model.errors import CascadeError
from model.config import CodecConfig

__all__ = ["ProtocolError", "encode_request", "encode_request_len", "encode_reply_len",
           "parse_encode_reply", "decode_request", "decode_request_len", "decode_reply_len",
           "parse_decode_reply", "info_request",
           "parse_info_reply", "INFO_REPLY_LEN", "MAX_BOARD_LANES", "selftest_request", "parse_selftest_reply",
           "load_request", "Board"]

_E, _D, _T, _I, _W, _NAK = b"E", b"D", b"T", b"I", b"W", b"!"
INFO_REPLY_LEN = 11
#: The info reply carries the lane count P in one byte (its last).
MAX_BOARD_LANES = 255


class ProtocolError(CascadeError, RuntimeError):
    """The board answered something the protocol does not allow (or nothing at all)."""


def _code_bytes(cfg: CodecConfig, k: int) -> int:
    return (sum(cfg.network.code_bits[:k]) + 7) // 8


def encode_request(cfg: CodecConfig, frame) -> bytes:
    """``E`` and one integer frame (D values of the golden model's input format)."""
    frame = np.asarray(frame, dtype=np.int64).reshape(-1)
    A = cfg.fixed.act_bits
    if frame.shape != (cfg.coefficients,):
        raise ValueError(f"a frame has {cfg.coefficients} values, got {frame.size}")
    if frame.min(initial=0) < -(1 << (A - 1)) or frame.max(initial=0) >= 1 << (A - 1):
        raise ValueError(f"frame values exceed signed {A}-bit")
    return _E + frame.astype("<i2").tobytes()


def encode_request_len(cfg: CodecConfig) -> int:
    return 1 + 2 * cfg.coefficients


def encode_reply_len(cfg: CodecConfig) -> int:
    return 1 + _code_bytes(cfg, cfg.network.stages)


def parse_encode_reply(cfg: CodecConfig, data: bytes) -> list[np.ndarray]:
    """The answer to ``E`` -> per-stage code bits ``[(B_n,)]`` in {0, 1} (as ``golden.encode``
    gives for one frame)."""
    _expect(data, _E, encode_reply_len(cfg))
    bits = np.unpackbits(np.frombuffer(data[1:], np.uint8), count=cfg.code_bits_total, bitorder="little")
    edges = np.cumsum((0,) + cfg.network.code_bits)
    return [bits[a:b].astype(np.int64) for a, b in zip(edges[:-1], edges[1:])]


def decode_request(cfg: CodecConfig, codes, k: int | None = None) -> bytes:
    """``D``, K and the code bits of stages 0..K-1 of one frame (``codes``: per-stage bit arrays)."""
    n = cfg.network.stages
    k = len(codes) if k is None else k
    if not 1 <= k <= min(n, len(codes)):
        raise ValueError(f"K must be 1..{min(n, len(codes))}, not {k}")
    bits = np.concatenate([np.asarray(c, dtype=np.uint8).reshape(-1) for c in codes[:k]])
    if bits.size != sum(cfg.network.code_bits[:k]):
        raise ValueError(f"{k} stages have {sum(cfg.network.code_bits[:k])} code bits, got {bits.size}")
    return _D + bytes([k]) + np.packbits(bits, bitorder="little").tobytes()


def decode_request_len(cfg: CodecConfig, k: int | None = None) -> int:
    """Bytes of a ``D`` request for K stages (default all: the longest)."""
    return 2 + _code_bytes(cfg, cfg.network.stages if k is None else k)


def decode_reply_len(cfg: CodecConfig) -> int:
    return 1 + 2 * cfg.coefficients


def parse_decode_reply(cfg: CodecConfig, data: bytes) -> np.ndarray:
    """The answer to ``D`` -> one decoded integer frame (D,)."""
    _expect(data, _D, decode_reply_len(cfg))
    return np.frombuffer(data[1:], "<i2").astype(np.int64)


def info_request() -> bytes:
    return _I


def parse_info_reply(data: bytes) -> dict:
    """``{"config_hash": 16 hex digits, "encoder": bool, "decoder": bool, "needs_load": bool,
    "loaded": bool, "lanes": P, "in_flight": 1 or 2}`` (``needs_load``: the weights live in RAM
    and come from ``W``; ``in_flight``: requests the board takes before answering the first)."""
    _expect(data, _I, INFO_REPLY_LEN)
    f = data[9]
    return {"config_hash": data[1:9].hex(), "encoder": bool(f & 1), "decoder": bool(f & 2),
            "needs_load": bool(f & 4), "loaded": bool(f & 8), "lanes": data[10],
            "in_flight": 2 if f & 16 else 1}


def load_request(model, lanes: int, cores) -> bytes:
    """``W`` and the load images (``hw.schedule.Schedule.load_words``) of ``cores`` (names, in
    the board's order: encoder first), each word little-endian in ceil(load_word_bits / 8) bytes."""
    from hw.schedule import Schedule
    out = [_W]
    for side in ("encoder", "decoder"):
        if side in cores:
            sc = Schedule(model, lanes, side)
            nbytes = (sc.load_word_bits + 7) // 8
            out.append(b"".join(int(w).to_bytes(nbytes, "little") for w in sc.load_words()))
    return b"".join(out)


def selftest_request() -> bytes:
    return _T


def parse_selftest_reply(data: bytes) -> dict:
    """``{"encoder_ok": bool, "decoder_ok": bool}`` (a core the board lacks reads as ok)."""
    _expect(data, _T, 2)
    return {"encoder_ok": not data[1] & 1, "decoder_ok": not data[1] & 2}


def _expect(data: bytes, head: bytes, length: int) -> None:
    if data[:1] == _NAK:
        raise ProtocolError(f"board refused command {head.decode()!r} (core missing or K out of range)")
    if len(data) != length or data[:1] != head:
        raise ProtocolError(f"expected {length} bytes starting {head!r} from the board, got "
                            f"{len(data)} bytes starting {bytes(data[:1])!r}")


class Board:
    """A codec board on a byte link (``write``/``read``).  ``encode`` and ``decode`` keep as
    many requests in flight as the board said it takes in its ``info`` reply (one until then),
    so with two the next frame travels while the board computes."""

    def __init__(self, link, cfg: CodecConfig):
        self.link, self.cfg = link, cfg
        self.in_flight = 1

    @classmethod
    def open(cls, port: str, cfg: CodecConfig, baud: int = 1_000_000, timeout: float = 2.0) -> "Board":
        try:
            import serial  # pyserial
        except ImportError:
            raise ImportError("talking to a board needs pyserial: pip install pyserial") from None
        return cls(serial.Serial(port, baud, timeout=timeout), cfg)

    def _transact(self, request: bytes, length: int) -> bytes:
        self.link.write(request)
        return self._reply(length)

    def _reply(self, length: int) -> bytes:
        head = self.link.read(1)
        if head == _NAK:
            return head
        return head + self.link.read(length - 1)

    def _stream(self, requests, length: int) -> list[bytes]:
        """Replies to ``requests`` in order, with up to ``in_flight`` of them sent ahead."""
        replies, pending = [], 0
        for req in requests:
            self.link.write(req)
            pending += 1
            if pending == self.in_flight:
                replies.append(self._reply(length))
                pending -= 1
        replies += [self._reply(length) for _ in range(pending)]
        return replies

    def info(self, check: bool = True) -> dict:
        """The board's config hash and cores; with ``check``, raise unless the hash is ours."""
        info = parse_info_reply(self._transact(info_request(), INFO_REPLY_LEN))
        self.in_flight = info["in_flight"]
        if check and info["config_hash"] != self.cfg.config_hash:
            raise ProtocolError(f"board runs codec {info['config_hash']}, host config is {self.cfg.config_hash}")
        return info

    def load(self, model, info: dict | None = None) -> None:
        """Send the weights of ``model`` (an IntModel of this board's codec) to a board whose cores
        keep them in RAM (``info["needs_load"]``); nothing to do for a ROM board."""
        info = self.info() if info is None else info
        if not info["needs_load"]:
            return
        cores = [c for c in ("encoder", "decoder") if info[c]]
        request = load_request(model, info["lanes"], cores)
        old = getattr(self.link, "timeout", None)
        baud = getattr(self.link, "baudrate", None)
        if old is not None and baud:   # the answer comes after the last of ~100 kB: wait for it
            self.link.timeout = old + 10 * len(request) / baud
        try:
            reply = self._transact(request, 1)
        finally:
            if old is not None and baud:
                self.link.timeout = old
        if reply != _W:
            raise ProtocolError(f"board did not confirm the weight load (got {reply!r})")

    def selftest(self) -> dict:
        return parse_selftest_reply(self._transact(selftest_request(), 2))

    def encode(self, frames) -> list[np.ndarray]:
        """Integer frames (T, D) -> per-stage code bits [(T, B_n)], like ``golden.encode``."""
        replies = self._stream((encode_request(self.cfg, f) for f in np.atleast_2d(frames)),
                               encode_reply_len(self.cfg))
        rows = [parse_encode_reply(self.cfg, r) for r in replies]
        return [np.stack([r[s] for r in rows]) for s in range(self.cfg.network.stages)]

    def decode(self, codes, k: int | None = None) -> np.ndarray:
        """Per-stage code bits [(T, B_n)] -> integer frames (T, D), like ``golden.decode``."""
        k = len(codes) if k is None else k
        frames = len(codes[0])
        replies = self._stream((decode_request(self.cfg, [c[t] for c in codes[:k]], k)
                                for t in range(frames)), decode_reply_len(self.cfg))
        return np.stack([parse_decode_reply(self.cfg, r) for r in replies])
