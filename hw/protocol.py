"""The board protocol (``docs/board.md``), written once: the gateware (``hw/board.py``) and the host
(``hw/host.py``) both read the command bytes, status codes, INFO flags and layout, frame layout,
payload lengths and the CRC from here.

Every request and every reply is a frame; all multi-byte fields are little-endian:

=========  =====================================================================================
request    ``A5``, tag, command, length (3 bytes), payload (length bytes), CRC-16 (2 bytes)
reply      ``5A``, tag, command, status, length (2 bytes), payload (length bytes), CRC-16 (2 bytes)
=========  =====================================================================================

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
XOR: ``binascii.crc_hqx(data, 0xFFFF)``) over every byte after the start byte and before the CRC.
A reply carries the tag and command of the request it answers (command 0 when the board could
not read it), so a host can tell a late answer from the one it waits for.
"""

from __future__ import annotations

from amaranth.lib import enum

from model.bitstream import crc16     # the one CRC-16/CCITT-FALSE of the project (packet heads, link frames)

__all__ = ["Command", "Status", "InfoFlag", "REQUEST_SOF", "REPLY_SOF", "REQUEST_HEADER", "REPLY_HEADER",
           "CRC_BYTES", "REQUEST_OVERHEAD", "REPLY_OVERHEAD", "MAX_REQUEST_PAYLOAD", "VERSION",
           "MAX_BOARD_LANES", "BYTE_TIMEOUT", "INFO_HASH_BYTES", "INFO_PAYLOAD", "RETRYABLE",
           "crc16", "crc16_step", "code_bytes", "request_payloads", "reply_payload",
           "request_frame", "reply_frame", "load_image_bytes", "FLASH_IMAGE_OFFSET", "flash_image"]

#: Start of a request frame and of a reply frame.
REQUEST_SOF, REPLY_SOF = 0xA5, 0x5A
#: Bytes before a request's payload: start, tag, command, 3 length bytes.
REQUEST_HEADER = 6
#: Bytes before a reply's payload: start, tag, command, status, 2 length bytes.
REPLY_HEADER = 6
CRC_BYTES = 2
REQUEST_OVERHEAD = REQUEST_HEADER + CRC_BYTES
REPLY_OVERHEAD = REPLY_HEADER + CRC_BYTES
#: A request's length field has 3 bytes.
MAX_REQUEST_PAYLOAD = (1 << 24) - 1
#: Protocol version in the INFO reply (1 was the unframed protocol of earlier bitstreams).
VERSION = 2
#: The info reply carries the lane count P in one byte.
MAX_BOARD_LANES = 255
#: Seconds of silence inside a request after which the board drops it (``BoardCore`` derives its
#: inter-byte timeout in clock cycles from this and its clock frequency).
BYTE_TIMEOUT = 0.02


class Command(enum.IntEnum, shape=8):
    """Request commands (an ASCII letter each)."""
    ENCODE = ord("E")     #: payload D words; answer ceil(B/8) bytes of code bits
    DECODE = ord("D")     #: payload K and ceil(B_K/8) bytes of code bits; answer D words
    SELFTEST = ord("T")   #: no payload; answer 1 byte of mismatch flags
    INFO = ord("I")       #: no payload; answer :data:`INFO_PAYLOAD` bytes
    LOAD = ord("W")       #: payload the load image of every RAM-stored core; answer nothing


class Status(enum.IntEnum, shape=8):
    """The status byte of a reply.  An error reply has no payload."""
    OK = 0
    BAD_COMMAND = 1      #: the command byte is none of :class:`Command`
    BAD_LENGTH = 2       #: the length is not one the command allows on this board
    BAD_CRC = 3          #: the CRC does not match: the request was dropped
    TIMEOUT = 4          #: the line went quiet inside a request: it was dropped
    OVERFLOW = 5         #: the receive buffer was full (more requests in flight than INFO allows)
    BAD_K = 6            #: ``D`` with K outside 1..N or a length that does not match K
    NO_CORE = 7          #: ``E`` without an encoder or ``D`` without a decoder on the board
    NOT_LOADED = 8       #: ``E``, ``D`` or ``T`` while RAM-stored cores wait for their weights
    NOT_WRITABLE = 9     #: ``W`` on a board whose weights are in ROM


#: Errors of the link (a damaged, truncated or lost request): sending the request again may help.
RETRYABLE = frozenset({Status.BAD_COMMAND, Status.BAD_LENGTH, Status.BAD_CRC, Status.TIMEOUT,
                       Status.OVERFLOW, Status.BAD_K})


class InfoFlag(enum.IntFlag, shape=8):
    """The flags byte of the INFO reply."""
    ENCODER = 1          #: the board has the encoder core
    DECODER = 2          #: the board has the decoder core
    NEEDS_LOAD = 4       #: the weights live in RAM and come from ``W``
    LOADED = 8           #: they are loaded (always set on a ROM board)
    TWO_IN_FLIGHT = 16   #: the board takes a second ``E``/``D`` request before answering the first
    FLASH_BOOT = 32      #: at power-up the board loads its weights from its SPI flash


#: Where a flash-booting board (``BoardCore(flash_boot=True)``) finds its weight image in the SPI
#: flash: 1 MiB, after the FPGA's bitstream (an iCE40 UP5K's is 104 kB, an ECP5-85F's 2.3 MB would
#: not leave room: ECP5 boards do not flash-boot).
FLASH_IMAGE_OFFSET = 0x100000

#: INFO payload: config hash (8 bytes), flags, lanes P, protocol version.
INFO_HASH_BYTES = 8
INFO_PAYLOAD = INFO_HASH_BYTES + 3


def crc16_step(crc, byte):
    """The CRC after one more byte, as an Amaranth expression of a 16-bit ``crc`` and an 8-bit
    ``byte`` (an XOR of their bits: the CRC without its initial value is linear, so each output bit
    is read off :func:`crc16` of the 24 unit vectors)."""
    from amaranth.hdl import Cat
    inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
    unit = [crc16(bytes([0]), 1 << i) for i in range(16)] + [crc16(bytes([1 << i]), 0) for i in range(8)]
    out = []
    for bit in range(16):
        terms = [v for v, u in zip(inputs, unit) if u >> bit & 1]
        x = terms[0]
        for t in terms[1:]:
            x = x ^ t
        out.append(x)
    return Cat(*out)


def code_bytes(cfg, k: int) -> int:
    """Bytes of the code bits of stages 0..k-1, packed."""
    return (cfg.network.code_offsets[k] + 7) // 8


def load_image_bytes(schedules) -> int:
    """Length of a ``W`` payload: every word of each schedule's load image
    (``hw.schedule.Schedule.load_words``) in ceil(load_word_bits / 8) bytes."""
    return sum((sc.weight_depth + sc.param_depth) * ((sc.load_word_bits + 7) // 8) for sc in schedules)


def flash_image(load_payload: bytes) -> bytes:
    """What a flash-booting board reads at :data:`FLASH_IMAGE_OFFSET`: the ``W`` request frame of
    ``load_payload`` (tag 0), checked on the board like a ``W`` from the host (length, CRC-16)."""
    return request_frame(Command.LOAD, load_payload, 0)


def request_payloads(cfg, command: Command, load_bytes: int = 0) -> tuple[int, ...]:
    """The payload lengths a request of ``command`` may have (``D``: one per K, K = 1..N;
    ``W``: ``load_bytes``, the board's image)."""
    command = Command(command)
    if command == Command.ENCODE:
        return (2 * cfg.coefficients,)
    if command == Command.DECODE:
        return tuple(1 + code_bytes(cfg, k) for k in range(1, cfg.network.stages + 1))
    if command == Command.LOAD:
        return (load_bytes,)
    return (0,)


def reply_payload(cfg, command: Command) -> int:
    """Payload bytes of the ``OK`` reply to ``command``."""
    command = Command(command)
    return {Command.ENCODE: code_bytes(cfg, cfg.network.stages), Command.DECODE: 2 * cfg.coefficients,
            Command.SELFTEST: 1, Command.INFO: INFO_PAYLOAD, Command.LOAD: 0}[command]


def request_frame(command: int, payload: bytes = b"", tag: int = 0) -> bytes:
    """A request on the wire."""
    if len(payload) > MAX_REQUEST_PAYLOAD:
        raise ValueError(f"a request carries at most {MAX_REQUEST_PAYLOAD} bytes, not {len(payload)}")
    body = bytes([tag & 0xFF, int(command)]) + len(payload).to_bytes(3, "little") + bytes(payload)
    return bytes([REQUEST_SOF]) + body + crc16(body).to_bytes(2, "little")


def reply_frame(command: int, status: int = Status.OK, payload: bytes = b"", tag: int = 0) -> bytes:
    """A reply on the wire (what the board sends; for tests and fake boards)."""
    body = bytes([tag & 0xFF, int(command), int(status)]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([REPLY_SOF]) + body + crc16(body).to_bytes(2, "little")
