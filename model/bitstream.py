"""The scalable bitstream: header, packets, one byte-aligned section per stage.

The layout is documented byte by byte in ``docs/bitstream.md``; in short (all integers
little-endian)::

    header (40 bytes): b"CASC" | version u8 (2) | flags u8 | K u8 | N u8 | config hash 8 bytes |
                       sample_rate u32 | frames T u32 | samples u32 | packet_frames u16 |
                       symbol_bits u8 | 0 u8 | codebooks id u32 | CRC-32 of the 36 bytes before u32
    packet (repeated ceil(T / packet_frames) times):
                       sync b"\\xA5\\x5A" | index u32 | frames u16 | K x section length u16 |
                       side length u16 | side information | K stage sections | CRC-32 u32

Side information: per frame ``lpc.order`` LSF indices of ``lpc.lsf_bits`` bits, the gain index
of ``gain.bits`` bits, then (when ``cfg.pitch`` is on) the pitch lag index and gain index
(``PitchConfig.side_widths``), each MSB first, all frames of the packet concatenated and packed MSB first
into ``ceil(frames * bits / 8)`` bytes; or, with flag bit 1, delta + Huffman coded per field
(:class:`SideCoder`).  A stage section holds the packet's frames of that stage:
Huffman coded (``model/huffman.py``: k-bit symbols with the first code bit in the LSB, codes MSB
first, packed MSB first, zero-padded) when the stream is Huffman coded, else the raw code bits,
frame after frame, packed MSB first.

Robustness (``read_stream``):

* empty, short or non-CASC data, an unknown version, a header CRC mismatch, another codec's config
  hash, other codebooks (``codebooks id``) or no codebooks for a Huffman stream: BitstreamError;
* data shorter than the smallest stream its header allows: BitstreamError ("truncated");
* a frame count that cannot carry the header's sample count (``frames_fit_samples``):
  BitstreamError, so the frames a header claims are bounded by the file's size;
* bytes outside every good packet (garbage, trailing data): counted in ``Frames.stray_bytes``
  (``cascade decode`` says so); with ``conceal=False`` a BitstreamError;
* a packet whose sync, index, length fields, CRC or Huffman data are wrong, or that is missing:
  with ``conceal=True`` its frames are marked in ``Frames.lost`` and hold zeros (LSF indices, gain
  index and code bits); the reader re-synchronizes on the next sync word whose packet has a good
  CRC.  With ``conceal=False`` it is a BitstreamError.

No other exception leaves ``read_stream``, ``truncate_stream`` or ``stream_info``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CascadeError
from .huffman import Codebook, HuffmanError, codebooks_id

__all__ = ["Frames", "BitstreamError", "SideCoder", "write_stream", "read_stream", "truncate_stream",
           "stream_info", "side_columns", "MAGIC", "VERSION", "HEADER_SIZE", "SYNC"]

MAGIC = b"CASC"
VERSION = 2
SYNC = b"\xA5\x5A"
FLAG_HUFFMAN = 0x01
FLAG_SIDE_HUFFMAN = 0x02

_HEADER = struct.Struct("<4sBBBB8sIIIHBBI")      # 36 bytes, then CRC u32
HEADER_SIZE = _HEADER.size + 4                    # 40
_PKT_HEAD = struct.Struct("<2sIH")                # sync, index, frames: 8 bytes
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class BitstreamError(CascadeError, ValueError):
    """A stream that cannot be read (the message is one line)."""


@dataclass
class Frames:
    """The coded content of a stream.

    ``lsf_idx`` (T, cfg.lpc.order) int (shape (T, 0) when LPC is off), ``gain_idx`` (T,) int,
    ``codes`` K arrays (T, cfg.network.code_bits[n]) uint8 {0,1}, ``lost`` (T,) bool set by
    :func:`read_stream` (frames whose packet was damaged or missing; their values are zeros),
    ``pitch`` (T, 2) int lag and gain indices of the pitch pre-filter (``PitchConfig``; None when
    the codec has none).
    """
    num_samples: int
    lsf_idx: np.ndarray
    gain_idx: np.ndarray
    codes: list[np.ndarray]
    lost: np.ndarray | None = None
    pitch: np.ndarray | None = None    # (T, 2) int (lag index, gain index) when cfg.pitch is on
    stray_bytes: int = 0               # read_stream: bytes after the header outside every good packet


# ---- small helpers -------------------------------------------------------------------------------
def frames_fit_samples(frames: int, samples: int, hop: int) -> bool:
    """The rule tying a header's frame count T to its sample count: ``(T - 2) * hop <= samples
    <= T * hop`` (the encoder makes ``ceil(samples / hop) + 1`` frames, ``dsp.num_frames``).
    With the smallest stream a header allows (``_min_stream_size``), it bounds what a decode of
    n bytes allocates and computes by a fixed multiple of n."""
    return (frames - 2) * hop <= samples <= frames * hop


def _side_widths(cfg) -> np.ndarray:
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    return np.array([cfg.lpc.lsf_bits] * order + [cfg.gain.bits] + list(cfg.pitch.side_widths), np.int64)


def side_columns(lsf_idx, gain_idx, pitch, cfg) -> np.ndarray:
    """The per-frame side fields in stream order, (T, F) int: LSF indices, the gain index, then
    the pitch pre-filter's lag and gain indices when ``cfg.pitch`` is on (zeros when ``pitch`` is
    None).  The one place that orders them: the writer, the reader and ``SideCoder.train`` use it."""
    gain = np.asarray(gain_idx, np.int64).reshape(-1, 1)
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    cols = [np.asarray(lsf_idx, np.int64).reshape(len(gain), order), gain]
    if cfg.pitch.enabled:
        cols.append(np.zeros((len(gain), 2), np.int64) if pitch is None else np.asarray(pitch, np.int64))
    return np.concatenate(cols, axis=1)


def split_side_columns(vals: np.ndarray, cfg):
    """The inverse of :func:`side_columns`: (T, F) -> (lsf_idx, gain_idx, pitch or None)."""
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    pitch = vals[:, order + 1:order + 3] if cfg.pitch.enabled else None
    return vals[:, :order], vals[:, order], pitch


def _side_bytes(cfg, frames: int) -> int:
    return (frames * int(_side_widths(cfg).sum()) + 7) // 8


def _pack_fields(values: np.ndarray, widths: np.ndarray) -> bytes:
    """(T, F) values, each column MSB first at its width, row after row, packed MSB first."""
    if values.size == 0:
        return b""
    wmax = int(widths.max())
    shifts = widths[None, :, None] - 1 - np.arange(wmax)[None, None, :]
    bits = ((values[:, :, None] >> np.maximum(shifts, 0)) & 1).astype(np.uint8)
    mask = np.broadcast_to(shifts >= 0, bits.shape)
    return np.packbits(bits[mask]).tobytes()


def _unpack_fields(data: bytes, frames: int, widths: np.ndarray) -> np.ndarray:
    per = int(widths.sum())
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[:frames * per].astype(np.int64)
    bits = bits.reshape(frames, per)
    out = np.zeros((frames, widths.size), np.int64)
    pos = 0
    for j, w in enumerate(widths.tolist()):
        out[:, j] = bits[:, pos:pos + w] @ (np.int64(1) << np.arange(w - 1, -1, -1, dtype=np.int64))
        pos += w
    return out


def _packet_frames(cfg_pf: int, total: int, index: int) -> int:
    return min(cfg_pf, total - index * cfg_pf)


class SideCoder:
    """Huffman coding of the per-frame side information.

    Each side field (``lpc.order`` LSF indices, then the gain index) is coded as the difference to
    the same field of the previous frame of the packet, modulo its alphabet (the first frame of a
    packet against 0, so packets stay independent), with one canonical codebook per field whose
    symbols are the field's width.  A packet's side section is one byte-aligned chunk per field
    (all frames of the packet).  The LSFs of 20 ms frames move slowly: on the training data this
    takes the side information from 54 to about 34 bits per frame.
    """

    def __init__(self, books: list[Codebook]):
        self.books = list(books)

    @staticmethod
    def _deltas(vals: np.ndarray, widths: np.ndarray) -> np.ndarray:
        prev = np.concatenate([np.zeros((1, vals.shape[1]), np.int64), vals[:-1]])
        return (vals - prev) % (np.int64(1) << widths)

    @classmethod
    def train(cls, side_values: list[np.ndarray], cfg) -> "SideCoder":
        """``side_values``: per signal (T, order+1) = [lsf_idx | gain_idx]."""
        from .huffman import limited_lengths
        widths = _side_widths(cfg)
        d = np.concatenate([cls._deltas(np.asarray(v, np.int64), widths) for v in side_values])
        books = []
        for j, w in enumerate(widths.tolist()):
            counts = np.bincount(d[:, j], minlength=1 << w).astype(np.int64) + 1
            books.append(Codebook(limited_lengths(counts, max(cfg.entropy.max_code_len, w)), w))
        return cls(books)

    def check(self, cfg) -> None:
        if [b.symbol_bits for b in self.books] != _side_widths(cfg).tolist():
            raise BitstreamError("side-information codebooks do not fit the codec config")

    def encode(self, vals: np.ndarray, widths: np.ndarray) -> bytes:
        d = self._deltas(vals, widths)
        return b"".join(b.encode_symbols(d[:, j]) for j, b in enumerate(self.books))

    def decode(self, data: bytes, nfr: int, widths: np.ndarray) -> np.ndarray:
        """Raises HuffmanError unless ``data`` is exactly the chunks of ``nfr`` frames."""
        pos, cols = 0, []
        for b in self.books:
            sym = b.decode_symbols(data[pos:], nfr)
            pos += (int(b.lengths[sym].sum()) + 7) // 8
            cols.append(sym)
        if pos != len(data):
            raise HuffmanError("side-information section has the wrong length")
        d = np.stack(cols, 1).astype(np.int64) if cols else np.zeros((nfr, 0), np.int64)
        return np.cumsum(d, axis=0) % (np.int64(1) << widths)

    @property
    def id(self) -> int:
        return codebooks_id(self.books)

    def to_dict(self) -> dict:
        return {"books": [b.to_dict() for b in self.books]}

    @classmethod
    def from_dict(cls, d: dict) -> "SideCoder":
        return cls([Codebook.from_dict(b) for b in d["books"]])


def _books_id(codebooks, side) -> int:
    if side is None:
        return codebooks_id(codebooks) if codebooks is not None else 0
    return zlib.crc32(struct.pack("<II", codebooks_id(codebooks) if codebooks is not None else 0, side.id)) or 1


# ---- header -------------------------------------------------------------------------------------
def _parse_header(data: bytes) -> dict:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise BitstreamError("empty stream")
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a cascade stream (magic is not CASC)")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"stream truncated inside its header ({len(data)} of {HEADER_SIZE} bytes)")
    (magic, version, flags, k, n, chash, rate, frames, samples, pf, sym_bits, _res,
     cb_id) = _HEADER.unpack_from(data, 0)
    (crc,) = _U32.unpack_from(data, _HEADER.size)
    if version != VERSION:
        raise BitstreamError(f"stream format version {version}, this reader knows version {VERSION}")
    if zlib.crc32(data[:_HEADER.size]) != crc:
        raise BitstreamError("stream header is damaged (header CRC mismatch)")
    if pf == 0 or k == 0 or k > n or flags & ~(FLAG_HUFFMAN | FLAG_SIDE_HUFFMAN):
        raise BitstreamError("stream header holds impossible values")
    return {"version": version, "huffman": bool(flags & FLAG_HUFFMAN),
            "side_huffman": bool(flags & FLAG_SIDE_HUFFMAN), "stages": k,
            "codec_stages": n, "config_hash": chash.hex(), "sample_rate": rate, "frames": frames,
            "samples": samples, "packet_frames": pf, "symbol_bits": sym_bits,
            "codebooks_id": cb_id}


def _make_header(h: dict) -> bytes:
    flags = (FLAG_HUFFMAN if h["huffman"] else 0) | (FLAG_SIDE_HUFFMAN if h.get("side_huffman") else 0)
    head = _HEADER.pack(MAGIC, VERSION, flags, h["stages"],
                        h["codec_stages"], bytes.fromhex(h["config_hash"]), h["sample_rate"],
                        h["frames"], h["samples"], h["packet_frames"], h["symbol_bits"], 0,
                        h["codebooks_id"])
    return head + _U32.pack(zlib.crc32(head))


def stream_info(data: bytes) -> dict:
    """Header fields of a stream (no config needed), plus ``bytes``, ``packets``,
    ``duration_s`` and ``kbps`` (whole file over its duration).  Raises BitstreamError."""
    h = _parse_header(data)
    pf = h["packet_frames"]
    h["packets"] = -(-h["frames"] // pf)
    h["bytes"] = len(data)
    h["duration_s"] = h["samples"] / h["sample_rate"] if h["sample_rate"] else 0.0
    h["kbps"] = 8 * len(data) / h["duration_s"] / 1000 if h["duration_s"] else 0.0
    return h


# ---- writing ------------------------------------------------------------------------------------
def _check_codebooks(codebooks, k_stages, cfg):
    if len(codebooks) < k_stages:
        raise BitstreamError(f"{len(codebooks)} codebooks for {k_stages} stages")
    for n, cb in enumerate(codebooks):
        if not isinstance(cb, Codebook) or cb.symbol_bits != cfg.entropy.symbol_bits:
            raise BitstreamError(f"codebook {n} is not a Codebook of symbol_bits={cfg.entropy.symbol_bits}")


def write_stream(frames: Frames, cfg, codebooks: list[Codebook] | None, side: SideCoder | None = None) -> bytes:
    """Frames -> stream bytes; Huffman coded when ``codebooks`` are given, else raw bits.

    Raises BitstreamError (one line) on frames that do not fit ``cfg``.
    """
    codes = list(frames.codes)
    k_stages = len(codes)
    N = cfg.network.stages
    if not 1 <= k_stages <= N:
        raise BitstreamError(f"frames hold {k_stages} stages, the codec has 1..{N}")
    lsf = np.asarray(frames.lsf_idx, dtype=np.int64)
    gain = np.asarray(frames.gain_idx, dtype=np.int64).reshape(-1)
    T = gain.shape[0]
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    if lsf.size == 0:
        lsf = lsf.reshape(T, order) if order == 0 else lsf
    if lsf.shape != (T, order):
        raise BitstreamError(f"lsf_idx has shape {lsf.shape}, expected ({T}, {order})")
    if order and (lsf.min(initial=0) < 0 or lsf.max(initial=0) >= 1 << cfg.lpc.lsf_bits):
        raise BitstreamError(f"an LSF index is outside 0..{(1 << cfg.lpc.lsf_bits) - 1}")
    if gain.min(initial=0) < 0 or gain.max(initial=0) >= 1 << cfg.gain.bits:
        raise BitstreamError(f"a gain index is outside 0..{(1 << cfg.gain.bits) - 1}")
    for n, c in enumerate(codes):
        c = np.asarray(c)
        if c.shape != (T, cfg.network.code_bits[n]):
            raise BitstreamError(f"codes[{n}] has shape {c.shape}, expected ({T}, {cfg.network.code_bits[n]})")
        if c.size and (c.min() < 0 or c.max() > 1):
            raise BitstreamError(f"codes[{n}] holds values other than 0 and 1")
        codes[n] = c.astype(np.uint8)
    if not 0 <= int(frames.num_samples) < 1 << 32 or T >= 1 << 32:
        raise BitstreamError("num_samples and frame count must fit 32 bits")
    if not frames_fit_samples(T, int(frames.num_samples), cfg.signal.hop):
        raise BitstreamError(f"{T} frames cannot carry {int(frames.num_samples)} samples "
                             f"(frames_fit_samples)")
    huff = codebooks is not None
    if huff:
        _check_codebooks(codebooks, k_stages, cfg)
    if side is not None:
        side.check(cfg)
    pf = cfg.entropy.packet_frames
    if pf >= 1 << 16:
        raise BitstreamError("packet_frames must be below 65536")
    out = bytearray(_make_header({
        "huffman": huff, "stages": k_stages, "codec_stages": N, "config_hash": cfg.config_hash,
        "sample_rate": cfg.signal.sample_rate, "frames": T, "samples": int(frames.num_samples),
        "packet_frames": pf, "symbol_bits": cfg.entropy.symbol_bits, "side_huffman": side is not None,
        "codebooks_id": _books_id(codebooks, side)}))
    widths = _side_widths(cfg)
    side_all = side_columns(lsf, gain, frames.pitch, cfg)
    if side_all.shape != (T, len(widths)):
        raise BitstreamError(f"pitch indices have shape {np.shape(frames.pitch)}, expected ({T}, 2)")
    if ((side_all < 0) | (side_all >= (np.int64(1) << widths))).any():
        raise BitstreamError("a pitch index is outside its field (PitchConfig.side_widths)")
    for p in range(-(-T // pf)):
        a, b = p * pf, min(T, (p + 1) * pf)
        sections = []
        for n in range(k_stages):
            c = codes[n][a:b]
            sec = codebooks[n].encode_bits(c) if huff else np.packbits(c.reshape(-1)).tobytes()
            if len(sec) >= 1 << 16:
                raise BitstreamError(f"stage {n} section of packet {p} exceeds 65535 bytes; use smaller packets")
            sections.append(sec)
        pkt = bytearray(_PKT_HEAD.pack(SYNC, p, b - a))
        for sec in sections:
            pkt += _U16.pack(len(sec))
        side_sec = side.encode(side_all[a:b], widths) if side is not None else _pack_fields(side_all[a:b], widths)
        if len(side_sec) >= 1 << 16:
            raise BitstreamError(f"side information of packet {p} exceeds 65535 bytes; use smaller packets")
        pkt += _U16.pack(len(side_sec)) + side_sec
        for sec in sections:
            pkt += sec
        pkt += _U32.pack(zlib.crc32(pkt))
        out += pkt
    return bytes(out)


# ---- reading ------------------------------------------------------------------------------------
def _min_section(cfg, n: int, frames: int, huff: bool) -> int:
    b = cfg.network.code_bits[n]
    return -(-frames * b // (8 * cfg.entropy.symbol_bits)) if huff else -(-frames * b // 8)


def _scan_packet(data: bytes, pos: int, k_stages: int, side_len_of):
    """Check one packet's framing and CRC at ``pos``.

    Returns (index, frames, side bytes, [section bytes], end) or None when it is no good packet.
    """
    if len(data) - pos < _PKT_HEAD.size + 2 * k_stages + 2 + 4:
        return None
    sync, index, nfr = _PKT_HEAD.unpack_from(data, pos)
    if sync != SYNC:
        return None
    q = pos + _PKT_HEAD.size
    lens = [_U16.unpack_from(data, q + 2 * i)[0] for i in range(k_stages)]
    q += 2 * k_stages
    (side_len,) = _U16.unpack_from(data, q)
    q += 2
    if not side_len_of(index, nfr, side_len):
        return None
    end = q + side_len + sum(lens)
    if end + 4 > len(data):
        return None
    if zlib.crc32(data[pos:end]) != _U32.unpack_from(data, end)[0]:
        return None
    side = data[q:q + side_len]
    q += side_len
    secs = []
    for ln in lens:
        secs.append(data[q:q + ln])
        q += ln
    return index, nfr, side, secs, end + 4


def _open(data, cfg, codebooks, side=None, check_books=True):
    h = _parse_header(data)
    if h["config_hash"] != cfg.config_hash:
        raise BitstreamError(f"stream was made for codec {h['config_hash']}, this codec is {cfg.config_hash}")
    if h["codec_stages"] != cfg.network.stages or h["packet_frames"] != cfg.entropy.packet_frames:
        raise BitstreamError("stream header disagrees with the codec config")
    if h["sample_rate"] != cfg.signal.sample_rate or h["symbol_bits"] != cfg.entropy.symbol_bits:
        raise BitstreamError("stream header's sample rate or symbol size disagrees with the codec config")
    if not frames_fit_samples(h["frames"], h["samples"], cfg.signal.hop):
        raise BitstreamError(f"stream header is inconsistent: {h['frames']} frames for {h['samples']} samples")

    if check_books:
        if h["huffman"] and codebooks is None:
            raise BitstreamError("stream is Huffman coded: codebooks needed")
        if h["side_huffman"] and side is None:
            raise BitstreamError("stream's side information is Huffman coded: side codebooks needed")
        if h["huffman"]:
            _check_codebooks(codebooks, h["stages"], cfg)
        if side is not None and h["side_huffman"]:
            side.check(cfg)
        if (h["huffman"] or h["side_huffman"]) and _books_id(
                codebooks if h["huffman"] else None, side if h["side_huffman"] else None) != h["codebooks_id"]:
            raise BitstreamError("stream was Huffman coded with other codebooks")
    return h


def _min_side(cfg, nfr: int, side_huff: bool) -> int:
    return len(_side_widths(cfg)) * -(-nfr // 8) if side_huff else _side_bytes(cfg, nfr)


def _min_stream_size(h, cfg, huff) -> int:
    T, pf, K = h["frames"], h["packet_frames"], h["stages"]
    total = HEADER_SIZE
    full, rest = divmod(T, pf)
    for nfr, count in ((pf, full), (rest, 1 if rest else 0)):
        if count:
            per = (_PKT_HEAD.size + 2 * K + 2 + _min_side(cfg, nfr, h["side_huffman"]) + 4
                   + sum(_min_section(cfg, n, nfr, huff) for n in range(K)))
            total += per * count
    return total


def read_stream(data: bytes, cfg, codebooks: list[Codebook] | None, conceal: bool = True,
                side: SideCoder | None = None) -> Frames:
    """Stream bytes -> :class:`Frames` (with ``lost`` set).  See the module docstring for errors
    and concealment.  ``codebooks`` must be the list the writer was given (checked through the
    header's codebooks id); they are not needed for a raw stream."""
    h = _open(data, cfg, codebooks, side)
    data = bytes(data)
    huff = h["huffman"]
    side_huff = h["side_huffman"]
    T, pf, K = h["frames"], h["packet_frames"], h["stages"]
    if len(data) < _min_stream_size(h, cfg, huff):
        raise BitstreamError(f"stream truncated: {len(data)} bytes, its header needs at least "
                             f"{_min_stream_size(h, cfg, huff)}")
    npk = -(-T // pf)
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    widths = _side_widths(cfg)
    lsf = np.zeros((T, order), np.int64)
    gain = np.zeros(T, np.int64)
    pitch = np.zeros((T, 2), np.int64) if cfg.pitch.enabled else None
    codes = [np.zeros((T, cfg.network.code_bits[n]), np.uint8) for n in range(K)]
    lost = np.ones(T, bool)

    def side_len_of(index, nfr, side_len):
        if index >= npk or nfr != _packet_frames(pf, T, index):
            return False
        return side_len >= _min_side(cfg, nfr, True) if side_huff else side_len == _side_bytes(cfg, nfr)

    pos, nxt, used = HEADER_SIZE, 0, HEADER_SIZE
    while pos < len(data):
        pkt = _scan_packet(data, pos, K, side_len_of)
        ok = pkt is not None and pkt[0] >= nxt
        if ok:
            index, nfr, side_sec, secs, end = pkt
            a = index * pf
            try:
                vals = side.decode(side_sec, nfr, widths) if side_huff else _unpack_fields(side_sec, nfr, widths)
                dec = []
                for n in range(K):
                    if huff:
                        dec.append(codebooks[n].decode_bits(secs[n], nfr, cfg.network.code_bits[n]))
                    else:
                        if len(secs[n]) != _min_section(cfg, n, nfr, False):
                            raise HuffmanError("raw section of the wrong length")
                        bits = np.unpackbits(np.frombuffer(secs[n], np.uint8))
                        dec.append(bits[:nfr * cfg.network.code_bits[n]].reshape(nfr, -1))
            except HuffmanError:
                ok = False
        if ok:
            if index > nxt and not conceal:
                raise BitstreamError(f"packet {nxt} is damaged or missing")
            lsf[a:a + nfr], gain[a:a + nfr], p_vals = split_side_columns(vals, cfg)
            if pitch is not None:
                pitch[a:a + nfr] = p_vals
            for n in range(K):
                codes[n][a:a + nfr] = dec[n]
            lost[a:a + nfr] = False
            nxt = index + 1
            used += end - pos
            pos = end
            continue
        if not conceal:
            if nxt == npk:
                raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
            raise BitstreamError(f"packet {nxt} is damaged (at byte {pos})")
        found = data.find(SYNC, pos + 1)
        if found < 0:
            break
        pos = found
    if not conceal and nxt != npk:
        raise BitstreamError(f"stream truncated: packet {nxt} of {npk} is missing")
    if not conceal and used != len(data):
        raise BitstreamError(f"{len(data) - used} stray bytes outside the packets")
    return Frames(num_samples=h["samples"], lsf_idx=lsf, gain_idx=gain, codes=codes, lost=lost,
                  pitch=pitch, stray_bytes=len(data) - used)


def truncate_stream(data: bytes, stages: int, cfg) -> bytes:
    """Keep the first ``stages`` stage sections of every packet (no re-encoding).

    The header's K becomes ``stages``; every packet is rewritten with its first sections and a
    new CRC.  A damaged packet cannot be cut: BitstreamError.
    """
    h = _open(data, cfg, None, check_books=False)
    data = bytes(data)
    K, T, pf = h["stages"], h["frames"], h["packet_frames"]
    stages = int(stages)
    if not 1 <= stages <= K:
        raise BitstreamError(f"cannot cut a stream of {K} stages to {stages}")
    npk = -(-T // pf)
    out = bytearray(_make_header({**h, "stages": stages}))

    def side_len_of(index, nfr, side_len):
        if index >= npk or nfr != _packet_frames(pf, T, index):
            return False
        return side_len >= _min_side(cfg, nfr, True) if h["side_huffman"] else side_len == _side_bytes(cfg, nfr)

    pos = HEADER_SIZE
    for p in range(npk):
        pkt = _scan_packet(data, pos, K, side_len_of)
        if pkt is None or pkt[0] != p:
            raise BitstreamError(f"packet {p} is damaged or missing (at byte {pos}); cannot cut the stream")
        index, nfr, side, secs, end = pkt
        new = bytearray(_PKT_HEAD.pack(SYNC, index, nfr))
        for sec in secs[:stages]:
            new += _U16.pack(len(sec))
        new += _U16.pack(len(side)) + side
        for sec in secs[:stages]:
            new += sec
        new += _U32.pack(zlib.crc32(new))
        out += new
        pos = end
    if pos != len(data):
        raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
    return bytes(out)
