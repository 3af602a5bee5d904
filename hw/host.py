"""Host side of the board protocol (``docs/board.md``; frames, commands, status codes and lengths
in ``hw/protocol.py``, shared with the gateware ``hw/board.py``).

The ``*_request`` / ``parse_*`` functions turn frames and codes into the bytes on the wire and back;
they are pure and tested against the simulated board.  :class:`Board` sends them over any object
with ``write(bytes)`` and ``read(n) -> bytes`` (a ``serial.Serial`` from pyserial, opened by
:meth:`Board.open`), with a deadline per reply, retries after a damaged, refused-as-damaged or
missing answer (after waiting for the line to go quiet), and one :class:`ProtocolError` when the
board stays silent or keeps failing.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

import numpy as np

from model.config import CodecConfig
from model.errors import CascadeError

from . import protocol
from .protocol import MAX_BOARD_LANES, REPLY_OVERHEAD, REQUEST_OVERHEAD, Command, InfoFlag, Status

__all__ = ["ProtocolError", "Reply", "parse_reply", "encode_payload", "encode_request", "encode_request_len",
           "encode_reply_len", "parse_encode_reply", "decode_payload", "decode_request", "decode_request_len",
           "decode_reply_len", "parse_decode_reply", "info_request", "parse_info_reply", "INFO_REPLY_LEN",
           "SELFTEST_REPLY_LEN", "ERROR_REPLY_LEN", "MAX_BOARD_LANES", "selftest_request", "parse_selftest_reply",
           "load_payload", "load_request", "Board"]

INFO_REPLY_LEN = REPLY_OVERHEAD + protocol.INFO_PAYLOAD
SELFTEST_REPLY_LEN = REPLY_OVERHEAD + 1
#: An error reply (a status other than OK) has no payload.
ERROR_REPLY_LEN = REPLY_OVERHEAD

_WHY = {Status.BAD_COMMAND: "unknown command", Status.BAD_LENGTH: "wrong request length",
        Status.BAD_CRC: "request damaged (CRC)", Status.TIMEOUT: "request cut short (timeout)",
        Status.OVERFLOW: "receive buffer full", Status.BAD_K: "K out of range",
        Status.NO_CORE: "the board has no such core",
        Status.NOT_LOADED: "its weights are not loaded (cascade board load)",
        Status.NOT_WRITABLE: "its weights are in ROM"}


class ProtocolError(CascadeError, RuntimeError):
    """The board answered something the protocol does not allow, refused a request, or did not
    answer at all."""


class Reply(NamedTuple):
    tag: int
    command: int
    status: int
    payload: bytes


def _name(command: int) -> str:
    return repr(chr(command)) if 32 < command < 127 else f"0x{command:02x}"


def _status_text(status: int) -> str:
    try:
        return f"{Status(status).name} ({_WHY[Status(status)]})"
    except (ValueError, KeyError):
        return f"status {status}"


def parse_reply(data: bytes) -> Reply:
    """One reply frame -> :class:`Reply`; ProtocolError unless it is exactly one intact frame."""
    data = bytes(data)
    if len(data) < REPLY_OVERHEAD or data[0] != protocol.REPLY_SOF:
        raise ProtocolError(f"not a reply frame: {len(data)} bytes starting {data[:1]!r}")
    n = int.from_bytes(data[4:6], "little")
    if len(data) != REPLY_OVERHEAD + n:
        raise ProtocolError(f"a reply frame of {n} payload bytes has {REPLY_OVERHEAD + n} bytes, got {len(data)}")
    if protocol.crc16(data[1:-2]) != int.from_bytes(data[-2:], "little"):
        raise ProtocolError("reply damaged (CRC)")
    return Reply(data[1], data[2], data[3], data[6:-2])


def _ok_payload(reply: Reply, command: int, length: int) -> bytes:
    if reply.status != Status.OK:
        raise ProtocolError(f"board refused {_name(command)}: {_status_text(reply.status)}")
    if reply.command != command or len(reply.payload) != length:
        raise ProtocolError(f"expected a {_name(command)} reply of {length} payload bytes, got "
                            f"{_name(reply.command)} with {len(reply.payload)}")
    return reply.payload


def encode_payload(cfg: CodecConfig, frame) -> bytes:
    """One integer frame (D values of the golden model's input format) as ``E``'s payload."""
    frame = np.asarray(frame, dtype=np.int64).reshape(-1)
    A = cfg.fixed.act_bits
    if frame.shape != (cfg.coefficients,):
        raise ValueError(f"a frame has {cfg.coefficients} values, got {frame.size}")
    if frame.min(initial=0) < -(1 << (A - 1)) or frame.max(initial=0) >= 1 << (A - 1):
        raise ValueError(f"frame values exceed signed {A}-bit")
    return frame.astype("<i2").tobytes()


def encode_request(cfg: CodecConfig, frame, tag: int = 0) -> bytes:
    """The ``E`` request of one integer frame."""
    return protocol.request_frame(Command.ENCODE, encode_payload(cfg, frame), tag)


def encode_request_len(cfg: CodecConfig) -> int:
    return REQUEST_OVERHEAD + max(protocol.request_payloads(cfg, Command.ENCODE))


def encode_reply_len(cfg: CodecConfig) -> int:
    return REPLY_OVERHEAD + protocol.reply_payload(cfg, Command.ENCODE)


def _code_fields(cfg: CodecConfig, payload: bytes) -> list[np.ndarray]:
    bits = np.unpackbits(np.frombuffer(payload, np.uint8), count=cfg.code_bits_total, bitorder="little")
    edges = cfg.network.code_offsets
    return [bits[a:b].astype(np.int64) for a, b in zip(edges[:-1], edges[1:])]


def parse_encode_reply(cfg: CodecConfig, data: bytes) -> list[np.ndarray]:
    """The answer to ``E`` -> per-stage code bits ``[(B_n,)]`` in {0, 1} (as ``golden.encode``
    gives for one frame)."""
    payload = _ok_payload(parse_reply(data), Command.ENCODE, protocol.reply_payload(cfg, Command.ENCODE))
    return _code_fields(cfg, payload)


def decode_payload(cfg: CodecConfig, codes, k: int | None = None) -> bytes:
    """K and the code bits of stages 0..K-1 of one frame (``codes``: per-stage bit arrays) as
    ``D``'s payload."""
    n = cfg.network.stages
    k = len(codes) if k is None else k
    if not 1 <= k <= min(n, len(codes)):
        raise ValueError(f"K must be 1..{min(n, len(codes))}, not {k}")
    bits = np.concatenate([np.asarray(c, dtype=np.uint8).reshape(-1) for c in codes[:k]])
    if bits.size != cfg.network.code_offsets[k]:
        raise ValueError(f"{k} stages have {cfg.network.code_offsets[k]} code bits, got {bits.size}")
    return bytes([k]) + np.packbits(bits, bitorder="little").tobytes()


def decode_request(cfg: CodecConfig, codes, k: int | None = None, tag: int = 0) -> bytes:
    """The ``D`` request of one frame's first K stages."""
    return protocol.request_frame(Command.DECODE, decode_payload(cfg, codes, k), tag)


def decode_request_len(cfg: CodecConfig, k: int | None = None) -> int:
    """Bytes of a ``D`` request for K stages (default all: the longest)."""
    k = cfg.network.stages if k is None else k
    return REQUEST_OVERHEAD + protocol.request_payloads(cfg, Command.DECODE)[k - 1]


def decode_reply_len(cfg: CodecConfig) -> int:
    return REPLY_OVERHEAD + protocol.reply_payload(cfg, Command.DECODE)


def parse_decode_reply(cfg: CodecConfig, data: bytes) -> np.ndarray:
    """The answer to ``D`` -> one decoded integer frame (D,)."""
    payload = _ok_payload(parse_reply(data), Command.DECODE, protocol.reply_payload(cfg, Command.DECODE))
    return np.frombuffer(payload, "<i2").astype(np.int64)


def info_request(tag: int = 0) -> bytes:
    return protocol.request_frame(Command.INFO, b"", tag)


def _info_fields(payload: bytes) -> dict:
    h = protocol.INFO_HASH_BYTES
    f = payload[h]
    return {"config_hash": payload[:h].hex(), "encoder": bool(f & InfoFlag.ENCODER),
            "decoder": bool(f & InfoFlag.DECODER), "needs_load": bool(f & InfoFlag.NEEDS_LOAD),
            "loaded": bool(f & InfoFlag.LOADED), "lanes": payload[h + 1],
            "in_flight": 2 if f & InfoFlag.TWO_IN_FLIGHT else 1, "flash_boot": bool(f & InfoFlag.FLASH_BOOT),
            "protocol": payload[h + 2]}


def parse_info_reply(data: bytes) -> dict:
    """``{"config_hash": 16 hex digits, "encoder": bool, "decoder": bool, "needs_load": bool,
    "loaded": bool, "lanes": P, "in_flight": 1 or 2, "flash_boot": bool, "protocol": version}``
    (``needs_load``: the weights live in RAM and come from ``W`` or the flash; ``in_flight``:
    requests the board takes before answering the first; ``flash_boot``: the board loads them
    from its SPI flash at power-up)."""
    return _info_fields(_ok_payload(parse_reply(data), Command.INFO, protocol.INFO_PAYLOAD))


def load_payload(model, lanes: int, cores) -> bytes:
    """The load images (``hw.schedule.Schedule.load_words``) of ``cores`` (names, in the board's
    order: encoder first), each word little-endian in ceil(load_word_bits / 8) bytes."""
    from hw.schedule import Schedule
    out = []
    for side in ("encoder", "decoder"):
        if side in cores:
            sc = Schedule(model, lanes, side)
            nbytes = (sc.load_word_bits + 7) // 8
            out.append(b"".join(int(w).to_bytes(nbytes, "little") for w in sc.load_words()))
    return b"".join(out)


def load_request(model, lanes: int, cores, tag: int = 0) -> bytes:
    """The ``W`` request of ``cores``' load images."""
    return protocol.request_frame(Command.LOAD, load_payload(model, lanes, cores), tag)


def selftest_request(tag: int = 0) -> bytes:
    return protocol.request_frame(Command.SELFTEST, b"", tag)


def _selftest_fields(payload: bytes) -> dict:
    return {"encoder_ok": not payload[0] & 1, "decoder_ok": not payload[0] & 2}


def parse_selftest_reply(data: bytes) -> dict:
    """``{"encoder_ok": bool, "decoder_ok": bool}`` (a core the board lacks reads as ok)."""
    return _selftest_fields(_ok_payload(parse_reply(data), Command.SELFTEST, 1))


class _LinkError(Exception):
    """A reply that did not come, came damaged, or says the request came damaged: retry."""


class Board:
    """A codec board on a byte link (``write``/``read``; ``read`` may return fewer bytes than asked,
    or none, after a short wait).

    ``encode`` and ``decode`` keep as many requests in flight as the board said it takes in its
    ``info`` reply (one until then), so with two the next frame travels while the board computes.
    Each reply has a deadline: its bytes and the request's at ``baud``, plus ``margin`` seconds for
    the board's computation and the operating system.  A missing or damaged reply, or an error
    status that says the request came damaged (``protocol.RETRYABLE``), makes the host wait until
    the line has been quiet for ``gap`` seconds (longer than the board's inter-byte timeout, so the
    board is back to waiting for a request), then send again every request not yet answered; after
    ``retries`` such failures in a row it raises :class:`ProtocolError`, so a dead board fails in
    about ``(retries + 1) * (margin + gap)`` seconds.  Replies carry the request's tag: a late
    answer to an earlier try is recognized and skipped.
    """

    def __init__(self, link, cfg: CodecConfig, *, baud: int | None = None, retries: int = 3,
                 margin: float = 0.25, gap: float = 5 * protocol.BYTE_TIMEOUT):
        self.link, self.cfg = link, cfg
        self.in_flight = 1
        self.baud = baud or getattr(link, "baudrate", None) or 1_000_000
        self.retries, self.margin, self.gap = int(retries), float(margin), float(gap)
        self.resyncs = 0          # times the host waited for a quiet line and sent again
        self._tag = 0
        self._junk = 0            # bytes seen outside reply frames

    @classmethod
    def open(cls, port: str, cfg: CodecConfig, baud: int = 1_000_000, **kwargs) -> "Board":
        try:
            import serial  # pyserial
        except ImportError:
            raise ImportError("talking to a board needs pyserial: pip install pyserial") from None
        return cls(serial.Serial(port, baud, timeout=0.01), cfg, baud=baud, **kwargs)

    # ---- the byte link ---------------------------------------------------------------------------
    def _read(self, n: int, deadline: float) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.link.read(n - len(out))
            if chunk:
                out += chunk
            elif time.monotonic() >= deadline:
                break
            elif getattr(self.link, "timeout", None) is None:
                time.sleep(0.002)   # a link whose read does not wait
        return out

    def _read_reply(self, deadline: float) -> Reply:
        while True:
            b = self._read(1, deadline)
            if not b:
                raise _LinkError("no answer")
            if b[0] == protocol.REPLY_SOF:
                break
            self._junk += 1
        head = self._read(protocol.REPLY_HEADER - 1, deadline)
        rest = b""
        if len(head) == protocol.REPLY_HEADER - 1:
            n = int.from_bytes(head[3:5], "little")
            rest = self._read(n + protocol.CRC_BYTES, deadline)
            if len(rest) == n + protocol.CRC_BYTES:
                try:
                    return parse_reply(b + head + rest)
                except ProtocolError as exc:
                    raise _LinkError(str(exc)) from None
        raise _LinkError(f"reply cut short after {1 + len(head) + len(rest)} bytes")

    def _resync(self) -> None:
        """Wait until nothing has arrived for ``gap`` seconds (discarding what does)."""
        self.resyncs += 1
        end = time.monotonic() + max(10 * self.gap, 2.0)
        quiet = time.monotonic() + self.gap
        while time.monotonic() < end:
            if self._read(4096, quiet):
                quiet = time.monotonic() + self.gap
            elif time.monotonic() >= quiet:
                return
        raise ProtocolError("the board does not stop sending (wrong baud rate?)")

    def _deadline(self, request: int, reply: int) -> float:
        return time.monotonic() + self.margin + 10 * (request + reply) / self.baud

    # ---- requests ----------------------------------------------------------------------------------
    def _exchange(self, command: Command, payloads, reply_len: int, window: int = 1) -> list[bytes]:
        """The ``OK`` payloads of ``reply_len`` bytes answering ``command`` requests with
        ``payloads``, in order, with up to ``window`` requests sent ahead."""
        payloads = list(payloads)
        out: list[bytes] = []
        pending: deque = deque()    # (index, tag, request length) sent, not yet answered
        nxt, failures, started = 0, 0, time.monotonic()
        while len(out) < len(payloads):
            while nxt < len(payloads) and len(pending) < window:
                self._tag = (self._tag + 1) & 0xFF
                req = protocol.request_frame(command, payloads[nxt], self._tag)
                self.link.write(req)
                pending.append((nxt, self._tag, len(req)))
                nxt += 1
            index, tag, req_len = pending[0]
            try:
                deadline = self._deadline(req_len * len(pending), REPLY_OVERHEAD + reply_len)
                while True:
                    r = self._read_reply(deadline)
                    if r.status in protocol.RETRYABLE:
                        raise _LinkError(f"board says {_status_text(r.status)}")
                    if r.tag == tag and r.command == command:
                        break
                    # a late answer to an earlier try (another tag): skip it
                payload = _ok_payload(r, command, reply_len)
            except _LinkError as exc:
                failures += 1
                if failures > self.retries:
                    raise ProtocolError(self._give_up(command, exc, failures, time.monotonic() - started)) from None
                self._resync()
                nxt = index                 # send again everything not answered
                pending.clear()
                continue
            out.append(payload)
            pending.popleft()
            failures = 0
        return out

    def _give_up(self, command, exc, tries, seconds) -> str:
        msg = (f"{_name(command)} failed {tries} times in {seconds:.1f} s (last: {exc}); is the board "
               f"configured with a codec bitstream, at {self.baud} baud?")
        if self._junk:
            msg += (f" It sent {self._junk} bytes outside reply frames (an older, unframed bitstream or "
                    f"another baud rate?)")
        return msg

    def info(self, check: bool = True) -> dict:
        """The board's config hash and cores; with ``check``, raise unless the hash is ours and the
        board speaks this protocol version."""
        info = _info_fields(self._exchange(Command.INFO, [b""], protocol.INFO_PAYLOAD)[0])
        self.in_flight = info["in_flight"]
        if check and info["protocol"] != protocol.VERSION:
            raise ProtocolError(f"board speaks protocol version {info['protocol']}, this host "
                                f"{protocol.VERSION}: rebuild its bitstream")
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
        self._exchange(Command.LOAD, [load_payload(model, info["lanes"], cores)], 0)

    def selftest(self) -> dict:
        return _selftest_fields(self._exchange(Command.SELFTEST, [b""], 1)[0])

    def encode(self, frames) -> list[np.ndarray]:
        """Integer frames (T, D) -> per-stage code bits [(T, B_n)], like ``golden.encode``."""
        payloads = [encode_payload(self.cfg, f) for f in np.atleast_2d(frames)]
        replies = self._exchange(Command.ENCODE, payloads, protocol.reply_payload(self.cfg, Command.ENCODE),
                                 self.in_flight)
        rows = [_code_fields(self.cfg, r) for r in replies]
        return [np.stack([r[s] for r in rows]) for s in range(self.cfg.network.stages)]

    def decode(self, codes, k: int | None = None) -> np.ndarray:
        """Per-stage code bits [(T, B_n)] -> integer frames (T, D), like ``golden.decode``."""
        k = len(codes) if k is None else k
        payloads = [decode_payload(self.cfg, [c[t] for c in codes[:k]], k) for t in range(len(codes[0]))]
        replies = self._exchange(Command.DECODE, payloads, protocol.reply_payload(self.cfg, Command.DECODE),
                                 self.in_flight)
        return np.stack([np.frombuffer(r, "<i2").astype(np.int64) for r in replies])
