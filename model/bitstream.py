"""The scalable bitstream: header, packets, checked side units and one checked section per stage.

The layout is documented byte by byte in ``docs/bitstream.md`` (format version 4); in short (all
integers little-endian)::

    header (40 bytes): b"CASC" | version u8 (4) | flags u8 | K u8 | N u8 | config hash 8 bytes |
                       sample_rate u32 | frames T u32 | samples u32 | packet_frames u16 |
                       symbol_bits u8 | side_block u8 (compact; 0 robust) | codebooks id u32 |
                       CRC-32 of the 36 bytes before u32
    packet (repeated ceil(T / packet_frames) times):
                       sync b"\\xA5\\x5A" | index u32 | frames F u16 |
                       (Huffman streams only) K x section length u16 |
                       (compact side only) ceil(F / side_block) x side block length (u8, or u16
                       when a block can exceed 255 bytes) | CRC-16 of the packet head u16 |
                       side information: robust (flag bit 1 clear): per frame S side bits + CRC-8
                       of them, all F frames packed MSB first; compact (flag bit 1 set): per
                       block of side_block frames a delta+Huffman side block (``SideCoder``) | its
                       CRC-8 |
                       K x (stage section | CRC-8 of the section)

Side information: per frame ``lpc.order`` LSF indices of ``lpc.lsf_bits`` bits, the gain index
of ``gain.bits`` bits, then (when ``cfg.pitch`` is on) the pitch lag index and gain index
(``PitchConfig.side_widths``), each MSB first (``side_columns``: S bits), followed by the CRC-8 of
those S bits (packed MSB first into ceil(S/8) bytes); the F units of a packet are concatenated and
packed MSB first into ``ceil(F * (S + 8) / 8)`` bytes (robust mode).  In compact mode (header flag
bit 1, ``FLAG_SIDE_HUFFMAN``; the default of ``Codec.encode_bytes``, ``robust=True`` for the units)
the packet's side values are coded in blocks of the header's ``side_block`` frames by the model
file's ``SideCoder`` (a block's first frame raw, then per field the difference to the frame
before, Huffman coded), each block's length in the packet head and a CRC-8 after it.  A stage section holds the packet's frames
of that stage: the raw code bits, frame after frame, packed MSB first (flag bit 0 clear), or
Huffman coded (``model/huffman.py``; flag bit 0 set), each followed by its CRC-8.  Raw sections
and the side units have sizes fixed by F, so only a Huffman stream's packets carry section
lengths.  ``model.codec`` writes raw sections unless Huffman saves at least
``codec.HUFFMAN_MIN_SAVING`` of them (it saves nothing on the shipped models).

What a damaged bit costs (``read_stream``, ``conceal=True``):

* in a frame's side unit (robust): that frame (``Frames.lost``; the decoder takes LSFs, pitch lag
  and a decaying gain from the frame before and keeps the frame's own stage codes);
* in a compact side block or its CRC-8: the side information of the block's frames (all
  ``lost``, concealed as above, frame after frame); their stage codes are kept, and so are the
  packet's other blocks;
* in stage section k of a packet: a Huffman section (whose later codes a bit error shifts) loses
  stages k..K of the packet's frames, which decode with stages 1..k-1 (``Frames.stages``); a raw
  section keeps its bits (``raw_damage="use"``, a flipped bit moves no other bit: it costs the
  code bits it hits in the frame they belong to), or with ``raw_damage="drop"`` is dropped as
  a Huffman one is;
* in a packet head (sync, index, frames, lengths, CRC-16): for a raw stream with robust side
  units the head is recovered from the packet's place when the packet after it (or the end of the stream) is
  where the head's F says; otherwise the packet's frames are lost and the reader
  re-synchronizes on the next sync word whose head has a good CRC.

Errors (BitstreamError):

* empty, short or non-CASC data, an unknown version (version 2 streams, one CRC per packet, are
  refused with a note to re-encode), a header CRC mismatch, a header field outside ``LIMITS``
  (K = 0 or K > N, N, packet_frames, symbol_bits, sample rate, unknown flags), another codec's
  config hash, N, rate, packet_frames or symbol_bits, other codebooks (``codebooks id``) or no
  codebooks for a Huffman stream;
* data shorter than ``1 - LIMITS["missing_share"]`` of the smallest stream its header allows
  (bytes may be lost, not most of them): "truncated";
* a frame count that cannot carry the header's sample count (``frames_fit_samples``), so the
  frames a header claims are bounded by the file's size;
* a header whose frame count disagrees with a packet (one beyond its last packet, or a packet of
  another frame count), or one that claims more frames than the stream's packets hold (more
  than ``LIMITS["missing_share"]`` of them in no packet): refused before any array of the
  header's size is allocated;
* bytes after the last packet when it passes every check (trailing data), as ``truncate_stream``
  refuses (after a damaged last packet they are counted as stray bytes);
* other bytes outside every located packet (garbage between packets): counted in
  ``Frames.stray_bytes``; with ``conceal=False`` a BitstreamError, as is any failed check.

No other exception leaves ``read_stream``, ``truncate_stream``, ``packet_spans`` or ``stream_info``.
"""

from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CascadeError
from .huffman import Codebook, HuffmanError, codebooks_id, window_values

__all__ = ["Frames", "BitstreamError", "SideCoder", "side_blocks", "write_stream", "read_stream", "truncate_stream",
           "stream_info", "side_columns", "packet_spans", "packet_layout", "crc8", "crc16",
           "MAGIC", "VERSION", "HEADER_SIZE", "SYNC", "LIMITS", "SIDE_MODES", "SIDE_BLOCK_FRAMES",
           "FLAG_HUFFMAN", "FLAG_SIDE_HUFFMAN"]

#: The limits of both file formats, checked before anything is sized from them (the one table:
#: ``model.config`` reads it for a model file's config, the reader and writer here for a stream's
#: header and packets; docs/bitstream.md quotes it).  Each value is the largest a field may hold;
#: the smallest is 1 unless the format says 0 is allowed (``res_layers``, ``search_passes``,
#: ``search_candidates``: 0 = none / all bits).
#:
#: * codec config (model file): ``sample_rate`` Hz, ``hop`` samples per frame, ``stages`` N,
#:   ``code_bits`` per stage, ``hidden`` width, ``res_layers``, ``subbands``, ``lpc_order``,
#:   ``lsf_bits``, ``lpc_window`` samples, ``gain_bits``, ``pitch_lag_max`` samples,
#:   ``pitch_gain_bits``, ``symbol_bits`` k, ``max_code_len`` bits (``model.huffman.Codebook``),
#:   ``packet_frames`` (a u16 of every packet), ``act_bits``, ``scale_bits``, ``bias_bits``,
#:   ``search_passes``, ``search_candidates``, ``parameters`` (weights, biases and scales of the
#:   whole network, ``CodecConfig.parameter_count``: what the loader allocates);
#: * stream header: ``sample_rate`` (and equal to the codec's), N <= ``stages``, 1 <= K <= N,
#:   ``packet_frames`` and ``symbol_bits`` (and equal to the codec's), ``frames`` and ``samples``
#:   (u32, tied by ``frames_fit_samples``); a packet's section lengths are u16
#:   (``section_bytes``) and lie between the smallest and the largest its frames can code to
#:   (``packet_bounds``);
#: * ``missing_share``: at most this share of a stream's frames may lie in packets of which the
#:   file holds nothing (not even a damaged packet header); more is refused as a header that
#:   claims more frames than its packets hold.
LIMITS = {"sample_rate": 192_000, "hop": 4096, "stages": 64, "code_bits": 4096, "hidden": 4096,
          "res_layers": 16, "subbands": 64, "lpc_order": 32, "lsf_bits": 8, "lpc_window": 16384,
          "gain_bits": 8, "pitch_lag_max": 4096, "pitch_gain_bits": 4, "symbol_bits": 16,
          "max_code_len": 20, "packet_frames": 65535, "act_bits": 24, "scale_bits": 32,
          "bias_bits": 32, "search_passes": 8, "search_candidates": 4096, "parameters": 1 << 26,
          "frames": (1 << 32) - 1, "samples": (1 << 32) - 1, "section_bytes": 65535, "side_block": 255,
          "missing_share": 0.5}

MAGIC = b"CASC"
VERSION = 4
#: Earlier layouts the reader names when it refuses them.
OLD_VERSIONS = {2: "one CRC per packet", 3: "one compact side section per packet"}
SYNC = b"\xA5\x5A"
FLAG_HUFFMAN = 0x01
FLAG_SIDE_HUFFMAN = 0x02                          # compact side information (see SIDE_MODES)
#: The two ways a stream carries the side information (header flag bit 1):
#: ``"compact"`` (bit set): per packet blocks of the header's ``side_block`` frames, each
#: delta+Huffman coded (``SideCoder``) with a CRC-8, their lengths in the packet head;
#: ``"robust"`` (bit clear): one fixed-width unit with a CRC-8 per frame.  ``Codec.encode_bytes`` writes compact unless ``robust=True`` (or the model has
#: no side codebooks).
SIDE_MODES = ("compact", "robust")
#: Frames per compact side block, ``write_stream``'s default (the header's ``side_block``):
#: a bit error in compact side information costs the frames of its block.  Chosen on the
#: validation voice (docs/RESULTS.md, "Damage").
SIDE_BLOCK_FRAMES = 5

_HEADER = struct.Struct("<4sBBBB8sIIIHBBI")      # 36 bytes, then CRC u32
HEADER_SIZE = _HEADER.size + 4                    # 40
_PKT_HEAD = struct.Struct("<2sIH")                # sync, index, frames: 8 bytes
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
CRC8_POLY = 0x07                                  # CRC-8 (x^8 + x^2 + x + 1), initial value 0
CRC_BYTES = 1                                     # the check after each stage section


def _crc8_table() -> np.ndarray:
    t = np.zeros(256, np.uint8)
    for b in range(256):
        c = b
        for _ in range(8):
            c = ((c << 1) ^ CRC8_POLY) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t[b] = c
    return t


_CRC8 = _crc8_table()


def _crc8_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-8 (``CRC8_POLY``, initial 0, no reflection) of each row of a (R, L) uint8 array."""
    c = np.zeros(rows.shape[0], np.uint8)
    for j in range(rows.shape[1]):
        c = _CRC8[c ^ rows[:, j]]
    return c


def crc8(data: bytes) -> int:
    """The CRC-8 of the layout: polynomial 0x07, initial value 0, MSB first (CRC-8/SMBUS)."""
    return int(_crc8_rows(np.frombuffer(bytes(data), np.uint8).reshape(1, -1))[0])


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR) of
    ``data``, continuing from ``crc``: the check of a packet head, and of every board link frame
    (``hw.protocol`` takes it from here)."""
    return binascii.crc_hqx(bytes(data), crc)


class BitstreamError(CascadeError, ValueError):
    """A stream that cannot be read (the message is one line)."""


@dataclass
class Frames:
    """The coded content of a stream.

    ``lsf_idx`` (T, cfg.lpc.order) int (shape (T, 0) when LPC is off), ``gain_idx`` (T,) int,
    ``codes`` K arrays (T, cfg.network.code_bits[n]) uint8 {0,1}, ``pitch`` (T, 2) int lag and
    gain indices of the pitch pre-filter (``PitchConfig``; None when the codec has none).

    Set by :func:`read_stream`: ``lost`` (T,) bool, frames whose side information is damaged or
    whose packet is missing (their side values are zeros); ``stages`` (T,) int, how many of the K
    stages of each frame are usable (K unless a damaged section or a missing packet took stages
    k..K; the codes of unusable stages are zeros); ``bad_checks``: how many side units, sections
    and packet heads failed their check (raw sections kept with ``raw_damage="use"`` included).
    A decoder runs stages 1..stages[t] for frame t (``Codec.decode``).
    """
    num_samples: int
    lsf_idx: np.ndarray
    gain_idx: np.ndarray
    codes: list[np.ndarray]
    lost: np.ndarray | None = None
    pitch: np.ndarray | None = None    # (T, 2) int (lag index, gain index) when cfg.pitch is on
    stray_bytes: int = 0               # read_stream: bytes after the header outside every good packet
    stages: np.ndarray | None = None   # read_stream: (T,) usable stages per frame
    bad_checks: int = 0                # read_stream: failed checks (side units, sections, heads)


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


def _side_unit_bits(cfg) -> int:
    """Bits of one frame's side unit: its S side bits and their CRC-8."""
    return int(_side_widths(cfg).sum()) + 8


def _side_bytes(cfg, frames: int) -> int:
    return (frames * _side_unit_bits(cfg) + 7) // 8


def _field_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(F, fields) values -> (F, S) bits, each field MSB first at its width."""
    F = values.shape[0]
    if widths.size == 0:
        return np.zeros((F, 0), np.uint8)
    wmax = int(widths.max())
    shifts = widths[None, :, None] - 1 - np.arange(wmax)[None, None, :]
    bits = ((values[:, :, None] >> np.maximum(shifts, 0)) & 1).astype(np.uint8)
    mask = np.broadcast_to(shifts >= 0, bits.shape)
    return bits[mask].reshape(F, int(widths.sum()))


def _unit_crcs(bits: np.ndarray) -> np.ndarray:
    """(F, S) side bits -> (F,) CRC-8 of each frame's bits packed MSB first (zero-padded)."""
    return _crc8_rows(np.packbits(bits, axis=1)) if bits.shape[1] else np.zeros(bits.shape[0], np.uint8)


def _pack_side(values: np.ndarray, widths: np.ndarray) -> bytes:
    """(F, fields) side values -> the packet's side units (bits then CRC-8 per frame), packed."""
    bits = _field_bits(values, widths)
    crc = np.unpackbits(_unit_crcs(bits)[:, None], axis=1)
    return np.packbits(np.concatenate([bits, crc], axis=1).reshape(-1)).tobytes()


def _field_values(bits: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_field_bits`: (F, S) bits -> (F, fields) values."""
    out = np.zeros((bits.shape[0], widths.size), np.int64)
    pos = 0
    for j, w in enumerate(widths.tolist()):
        out[:, j] = bits[:, pos:pos + w].astype(np.int64) @ (np.int64(1) << np.arange(w - 1, -1, -1, dtype=np.int64))
        pos += w
    return out


def _unpack_side(data: bytes, frames: int, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`_pack_side`: (values (F, fields), ok (F,) bool: the unit's CRC-8 holds)."""
    per = int(widths.sum())
    units = np.unpackbits(np.frombuffer(data, np.uint8))[:frames * (per + 8)].reshape(frames, per + 8)
    bits, crc = units[:, :per], np.packbits(units[:, per:], axis=1)[:, 0]
    return _field_values(bits, widths), _unit_crcs(bits) == crc


def side_blocks(nfr: int, block: int) -> list[tuple[int, int]]:
    """The compact side blocks of a packet of ``nfr`` frames: ``[(first frame, frames)]``, blocks
    of ``block`` frames (the stream header's ``side_block``), the last one shorter."""
    return [(a, min(block, nfr - a)) for a in range(0, nfr, block)]


def _packet_frames(cfg_pf: int, total: int, index: int) -> int:
    return min(cfg_pf, total - index * cfg_pf)


class SideCoder:
    """Huffman coding of the per-frame side information, in blocks of a few frames.

    A packet's side information is coded in blocks of ``side_block`` frames (a field of the
    stream header; ``side_blocks``), each decodable on its own: the block's first frame holds its
    fields raw (``_side_widths``, MSB first, as a robust unit without its CRC-8), and every later
    frame each field's difference to the frame before, modulo its alphabet, Huffman coded with one
    canonical codebook per field whose symbols are the field's width.  A block's bits are the raw
    first frame, then field after field the codes of the later frames, zero-padded to a byte.
    The LSFs of 20 ms frames move slowly: on the training data a difference costs about 30 bits
    per frame against 82 raw.
    """

    def __init__(self, books: list[Codebook]):
        self.books = list(books)

    @staticmethod
    def _deltas(vals: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Each frame's difference to the frame before (the first against 0), modulo 2**width."""
        prev = np.concatenate([np.zeros((1, vals.shape[1]), np.int64), vals[:-1]])
        return (vals - prev) % (np.int64(1) << widths)

    @classmethod
    def train(cls, side_values: list[np.ndarray], cfg) -> "SideCoder":
        """``side_values``: per signal (T, fields) = ``side_columns``; the codebooks of the frame-to-
        frame differences (each signal's first frame counted against 0)."""
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
        if any(b.max_len > ln for b, ln in zip(self.books, _side_code_lens(cfg))):
            raise BitstreamError("side-information codebooks have codes longer than the config allows "
                                 "(entropy.max_code_len)")

    def encode(self, vals: np.ndarray, widths: np.ndarray) -> bytes:
        """One block's side values (F >= 1, fields) -> its bytes."""
        vals = np.asarray(vals, np.int64)
        d = (vals[1:] - vals[:-1]) % (np.int64(1) << widths)
        bits = [_field_bits(vals[:1], widths).reshape(-1)] + [b.code_bits(d[:, j]) for j, b in enumerate(self.books)]
        return np.packbits(np.concatenate(bits)).tobytes()

    def decode(self, data: bytes, nfr: int, widths: np.ndarray) -> np.ndarray:
        """One block's bytes -> its (nfr, fields) side values.  Raises HuffmanError unless ``data``
        is exactly a block of ``nfr`` frames (its padding zero)."""
        bits = np.unpackbits(np.frombuffer(data, np.uint8))
        raw = int(widths.sum())
        if bits.size < raw:
            raise HuffmanError("side block is shorter than its first frame")
        first = _field_values(bits[None, :raw], widths)
        p, cols = raw, []
        if nfr > 1 and self.books:
            L = max(b.max_len for b in self.books)
            win = window_values(bits, L)
            for b in self.books:
                sym, p = b.decode_window(win, L, nfr - 1, p)
                cols.append(sym)
        if -(-p // 8) != len(data) or bits[p:].any():
            raise HuffmanError("side block has the wrong length")
        d = np.stack(cols, 1).astype(np.int64) if cols else np.zeros((nfr - 1, widths.size), np.int64)
        return np.cumsum(np.concatenate([first, d]), axis=0) % (np.int64(1) << widths)

    @property
    def id(self) -> int:
        return codebooks_id(self.books)

    def to_dict(self) -> dict:
        return {"books": [b.to_dict() for b in self.books]}

    @classmethod
    def from_dict(cls, d: dict) -> "SideCoder":
        return cls([Codebook.from_dict(b) for b in d["books"]])


def _books_id(codebooks, side=None) -> int:
    """The header's codebooks id: the stage codebooks' id (0: raw sections), or with compact side
    information a CRC-32 over (that id, the side codebooks' id), never 0."""
    stage = codebooks_id(codebooks) if codebooks is not None else 0
    if side is None:
        return stage
    return zlib.crc32(struct.pack("<II", stage, side.id)) or 1


# ---- header -------------------------------------------------------------------------------------
def _parse_header(data: bytes) -> dict:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise BitstreamError("empty stream")
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a cascade stream (magic is not CASC)")
    if len(data) > 4 and data[4] in OLD_VERSIONS:
        raise BitstreamError(f"stream format version {data[4]} ({OLD_VERSIONS[data[4]]}), this reader reads "
                             f"version {VERSION}: re-encode the audio with this cascade")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"stream truncated inside its header ({len(data)} of {HEADER_SIZE} bytes)")
    (magic, version, flags, k, n, chash, rate, frames, samples, pf, sym_bits, side_block,
     cb_id) = _HEADER.unpack_from(data, 0)
    (crc,) = _U32.unpack_from(data, _HEADER.size)
    if version != VERSION:
        raise BitstreamError(f"stream format version {version}, this reader knows version {VERSION}")
    if zlib.crc32(data[:_HEADER.size]) != crc:
        raise BitstreamError("stream header is damaged (header CRC mismatch)")
    if flags & ~(FLAG_HUFFMAN | FLAG_SIDE_HUFFMAN):
        raise BitstreamError("stream header holds impossible values (unknown flags)")
    side_huff = bool(flags & FLAG_SIDE_HUFFMAN)
    if side_huff != (side_block > 0):
        raise BitstreamError(f"stream header: side_block = {side_block} with "
                             f"{'compact' if side_huff else 'robust'} side information (must be "
                             f"{'1..' + str(LIMITS['side_block']) if side_huff else '0'})")
    L = LIMITS
    if not 1 <= n <= L["stages"]:
        raise BitstreamError(f"stream header: N = {n} stages, the format allows 1..{L['stages']}")
    if not 1 <= k <= n:
        raise BitstreamError(f"stream header: K = {k} stages present, must be 1..N = {n}")
    if not 1 <= pf <= L["packet_frames"]:
        raise BitstreamError(f"stream header: packet_frames = {pf}, must be 1..{L['packet_frames']}")
    if not 1 <= sym_bits <= L["symbol_bits"]:
        raise BitstreamError(f"stream header: symbol_bits = {sym_bits}, must be 1..{L['symbol_bits']}")
    if not 1 <= rate <= L["sample_rate"]:
        raise BitstreamError(f"stream header: sample rate {rate} Hz, must be 1..{L['sample_rate']}")
    # frames_fit_samples for any hop the format allows (the reader checks the codec's own hop)
    if samples > frames * L["hop"] or frames > samples + 2:
        raise BitstreamError(f"stream header is inconsistent: {frames} frames for {samples} samples")
    packets = -(-frames // pf)
    least = HEADER_SIZE + packets * _framing_size(k, bool(flags & FLAG_HUFFMAN), 1, side_block)
    if len(data) < least:
        raise BitstreamError(f"stream truncated: its header claims {packets} packets, at least {least} "
                             f"bytes, the stream has {len(data)}")
    return {"version": version, "huffman": bool(flags & FLAG_HUFFMAN), "side_huffman": side_huff,
            "side_mode": "compact" if side_huff else "robust", "side_block": side_block,
            "stages": k, "codec_stages": n, "config_hash": chash.hex(), "sample_rate": rate,
            "frames": frames, "samples": samples, "packet_frames": pf, "symbol_bits": sym_bits,
            "codebooks_id": cb_id}


def _make_header(h: dict) -> bytes:
    flags = (FLAG_HUFFMAN if h["huffman"] else 0) | (FLAG_SIDE_HUFFMAN if h.get("side_huffman") else 0)
    head = _HEADER.pack(MAGIC, VERSION, flags, h["stages"],
                        h["codec_stages"], bytes.fromhex(h["config_hash"]), h["sample_rate"],
                        h["frames"], h["samples"], h["packet_frames"], h["symbol_bits"], h.get("side_block", 0),
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


# ---- the packet layout (one definition: writer, reader, truncate_stream, packet_layout) ----------
def _block_len_size(cfg, side_block: int) -> int:
    """Bytes of each compact side block's length in the packet head: 1 when the largest block
    ``side_block`` frames can code to fits a byte, else 2 (a u16, as a section length)."""
    return 1 if _max_block(cfg, side_block) <= 0xFF else 2


def _head_size(k_stages: int, huff: bool, nfr: int = 1, side_block: int = 0, len_size: int = 1) -> int:
    """Bytes of a packet head of ``nfr`` frames: sync, index, F, the K section lengths (Huffman
    only), the length of each compact side block (``side_block`` > 0; ``len_size`` bytes each),
    CRC-16.  (``nfr = 1``, ``len_size = 1``: the smallest head of a stream.)"""
    blocks = -(-nfr // side_block) if side_block else 0
    return _PKT_HEAD.size + (2 * k_stages if huff else 0) + blocks * len_size + 2


def _side_crc_size(nfr: int, side_block: int) -> int:
    """Bytes of checks in the side information: a CRC-8 after each compact block (robust units
    carry their CRC-8 inside, counted in their bytes)."""
    return CRC_BYTES * -(-nfr // side_block) if side_block else 0


def _framing_size(k_stages: int, huff: bool, nfr: int = 1, side_block: int = 0, len_size: int = 1) -> int:
    """The bytes of a packet of ``nfr`` frames that are not its data: head, the side blocks'
    checks and one check per stage section (with the defaults: the least any packet has)."""
    return (_head_size(k_stages, huff, nfr, side_block, len_size) + _side_crc_size(nfr, side_block)
            + CRC_BYTES * k_stages)


def _make_head(index: int, nfr: int, lens: list[int] | None, block_lens: list[int] | None = None,
               len_size: int = 1) -> bytes:
    head = (_PKT_HEAD.pack(SYNC, index, nfr) + b"".join(_U16.pack(ln) for ln in lens or ())
            + b"".join(ln.to_bytes(len_size, "little") for ln in block_lens or ()))
    return head + _U16.pack(crc16(head))


def _make_packet(index: int, side, sections: list[bytes], huff: bool, nfr: int,
                 len_size: int = 0) -> bytes:
    """``side``: the side units (robust; ``len_size`` 0) or the list of compact side blocks (each
    gets its CRC-8; their lengths go into the head, ``len_size`` bytes each)."""
    compact = len_size > 0
    out = bytearray(_make_head(index, nfr, [len(x) for x in sections] if huff else None,
                               [len(x) for x in side] if compact else None, len_size))
    for blk in (side if compact else ()):
        out += blk + bytes([crc8(blk)])
    if not compact:
        out += side
    for sec in sections:
        out += sec + bytes([crc8(sec)])
    return bytes(out)


def packet_layout(cfg, stages: int, frames: int, huff: bool, side_block: int = 0) -> dict:
    """Byte sizes of a packet of ``frames`` frames (``side_block`` 0: robust side units, else
    compact blocks of that many frames): ``head``, ``side`` (the robust side units' exact bytes;
    None for compact side information, whose block lengths are in the head), ``side_bounds``
    ((lo, hi) of all the side information without the blocks' checks), ``side_blocks`` ([(lo,
    hi)] of each compact block without its CRC-8; empty for robust), ``block_len_bytes`` (bytes
    of each block length in the head), ``side_crc`` (bytes of side checks outside the units: one
    per compact block), ``sections`` ([(lo, hi)] of each stage section without its CRC-8 byte;
    raw ones exact) and ``unit_bits`` (bits per robust side unit).  What docs/bitstream.md
    tabulates."""
    side, secs = packet_bounds(cfg, stages, frames, huff, side_block)
    ls = _block_len_size(cfg, side_block) if side_block else 0
    return {"head": _head_size(stages, huff, frames, side_block, ls or 1),
            "side": None if side_block else side[0], "side_bounds": side,
            "side_blocks": [_block_bounds(cfg, n) for _, n in side_blocks(frames, side_block)] if side_block else [],
            "block_len_bytes": ls, "side_crc": _side_crc_size(frames, side_block),
            "sections": secs, "unit_bits": _side_unit_bits(cfg)}


# ---- writing ------------------------------------------------------------------------------------
def _check_codebooks(codebooks, k_stages, cfg):
    if len(codebooks) < k_stages:
        raise BitstreamError(f"{len(codebooks)} codebooks for {k_stages} stages")
    for n, cb in enumerate(codebooks):
        if not isinstance(cb, Codebook) or cb.symbol_bits != cfg.entropy.symbol_bits:
            raise BitstreamError(f"codebook {n} is not a Codebook of symbol_bits={cfg.entropy.symbol_bits}")
        if cb.max_len > cfg.entropy.max_code_len:
            raise BitstreamError(f"codebook {n} has codes of {cb.max_len} bits, the config allows "
                                 f"{cfg.entropy.max_code_len} (entropy.max_code_len)")


def write_stream(frames: Frames, cfg, codebooks: list[Codebook] | None, side: SideCoder | None = None,
                 side_block: int = SIDE_BLOCK_FRAMES) -> bytes:
    """Frames -> stream bytes; stage sections Huffman coded when ``codebooks`` are given, else raw.

    ``side`` given: compact side information (header flag bit 1; per packet blocks of
    ``side_block`` frames coded with these side codebooks, each with its CRC-8); None: robust
    side units (a fixed-width unit with a CRC-8 per frame; ``side_block`` is not used).  Raises
    BitstreamError (one line) on frames that do not fit ``cfg``.
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
    if not 0 <= int(frames.num_samples) <= LIMITS["samples"] or T > LIMITS["frames"]:
        raise BitstreamError(f"num_samples and frame count must be at most {LIMITS['samples']} (32 bits)")
    if not frames_fit_samples(T, int(frames.num_samples), cfg.signal.hop):
        raise BitstreamError(f"{T} frames cannot carry {int(frames.num_samples)} samples "
                             f"(frames_fit_samples)")
    huff = codebooks is not None
    if huff:
        _check_codebooks(codebooks, k_stages, cfg)
    side_huff = side is not None
    if side_huff:
        if not isinstance(side, SideCoder):
            raise BitstreamError("side must be a SideCoder (or None for robust side units)")
        side.check(cfg)
        if isinstance(side_block, bool) or not isinstance(side_block, (int, np.integer)) or not (
                1 <= side_block <= LIMITS["side_block"]):
            raise BitstreamError(f"side_block must be 1..{LIMITS['side_block']} frames")
        side_block = int(side_block)
    else:
        side_block = 0
    ls = _block_len_size(cfg, side_block) if side_block else 0
    pf = cfg.entropy.packet_frames
    if not 1 <= pf <= LIMITS["packet_frames"]:
        raise BitstreamError(f"packet_frames must be 1..{LIMITS['packet_frames']}")
    out = bytearray(_make_header({
        "huffman": huff, "stages": k_stages, "codec_stages": N, "config_hash": cfg.config_hash,
        "sample_rate": cfg.signal.sample_rate, "frames": T, "samples": int(frames.num_samples),
        "packet_frames": pf, "symbol_bits": cfg.entropy.symbol_bits, "side_huffman": side_huff,
        "side_block": side_block,
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
            if len(sec) > LIMITS["section_bytes"]:
                raise BitstreamError(f"stage {n} section of packet {p} exceeds 65535 bytes; use smaller packets")
            sections.append(sec)
        if side_huff:
            side_sec = [side.encode(side_all[a + f:a + f + n], widths) for f, n in side_blocks(b - a, side_block)]
            if any(len(blk) > LIMITS["section_bytes"] for blk in side_sec):
                raise BitstreamError(f"a side block of packet {p} exceeds 65535 bytes; use a smaller side_block")
        else:
            side_sec = _pack_side(side_all[a:b], widths)
        out += _make_packet(p, side_sec, sections, huff, b - a, ls)
    return bytes(out)


# ---- reading ------------------------------------------------------------------------------------
def _min_section(cfg, n: int, frames: int, huff: bool) -> int:
    b = cfg.network.code_bits[n]
    return -(-frames * b // (8 * cfg.entropy.symbol_bits)) if huff else -(-frames * b // 8)


def _max_section(cfg, n: int, frames: int, huff: bool) -> int:
    """The largest stage section ``frames`` frames code to: raw, exactly ``ceil(F*B/8)``; Huffman,
    every symbol's code at most ``entropy.max_code_len`` bits (the codebooks are checked for it)."""
    b = cfg.network.code_bits[n]
    if not huff:
        return -(-frames * b // 8)
    return min(LIMITS["section_bytes"], -(-frames * (b // cfg.entropy.symbol_bits) * cfg.entropy.max_code_len // 8))


def _side_code_lens(cfg) -> list[int]:
    """The longest code of each side field's codebook (``SideCoder.train``'s limit)."""
    return [max(cfg.entropy.max_code_len, w) for w in _side_widths(cfg).tolist()]


def _min_block(cfg, nfr: int) -> int:
    """The smallest compact side block of ``nfr`` frames: its raw first frame and codes of at
    least 1 bit."""
    widths = _side_widths(cfg)
    return -(-(int(widths.sum()) + (nfr - 1) * widths.size) // 8)


def _max_block(cfg, nfr: int) -> int:
    """The largest: each later frame's codes at most ``_side_code_lens`` bits (``SideCoder.check``)."""
    return -(-(int(_side_widths(cfg).sum()) + (nfr - 1) * sum(_side_code_lens(cfg))) // 8)


def _block_bounds(cfg, nfr: int) -> tuple[int, int]:
    return _min_block(cfg, nfr), min(LIMITS["section_bytes"], _max_block(cfg, nfr))


def _min_side(cfg, nfr: int, side_block: int) -> int:
    """The smallest side information of ``nfr`` frames (without the blocks' checks): robust units
    exactly; compact the smallest blocks."""
    if not side_block:
        return _side_bytes(cfg, nfr)
    return sum(_block_bounds(cfg, n)[0] for _, n in side_blocks(nfr, side_block))


def _max_side(cfg, nfr: int, side_block: int) -> int:
    if not side_block:
        return _side_bytes(cfg, nfr)
    return sum(_block_bounds(cfg, n)[1] for _, n in side_blocks(nfr, side_block))


def packet_bounds(cfg, stages: int, frames: int, huff: bool, side_block: int = 0) -> tuple:
    """``((lo, hi) of the side information, [(lo, hi) of each of the K stage sections])``: the byte
    lengths of a packet of ``frames`` frames (robust side units and raw sections exactly; a
    compact side block's (``_block_bounds``) or a Huffman section's declared length must lie
    within).  A packet head outside them is no packet; with them a packet is at most a fixed
    size for a config, so scanning a stream for packets costs a fixed multiple of its size."""
    return ((_min_side(cfg, frames, side_block), _max_side(cfg, frames, side_block)),
            [(_min_section(cfg, n, frames, huff), _max_section(cfg, n, frames, huff)) for n in range(stages)])


def _scan_packet(data: bytes, pos: int, k_stages: int, cfg, pf: int, huff: bool, infer=None,
                 side_block: int = 0):
    """Look for a packet at ``pos``.

    Returns None when there is no packet head here (no sync word, a frame count outside
    1..packet_frames, a head CRC-16 mismatch or lengths outside ``packet_bounds``);
    ``("short", index, frames, None, None, end)`` for a good head whose packet runs past the data;
    else ``("whole", index, frames, side, [(section, CRC-8 holds)], end)`` with ``side`` the side
    units (robust) or ``[(block, CRC-8 holds)]`` (compact).  ``infer = (index, frames)``: a raw
    stream's head (robust side units: nothing in it but its place) is not read but taken as that
    (its place and the header's frame count give it); the caller checks that the next packet
    starts at ``end``.
    """
    ls = _block_len_size(cfg, side_block) if side_block else 0
    if infer is not None:
        if huff or side_block:
            return None
        index, nfr = infer
        lens = [lo for lo, _ in packet_bounds(cfg, k_stages, nfr, False)[1]]
        block_lens = [_side_bytes(cfg, nfr)]
        head = _head_size(k_stages, huff)
    else:
        if len(data) - pos < _PKT_HEAD.size:
            return None
        sync, index, nfr = _PKT_HEAD.unpack_from(data, pos)
        if sync != SYNC or not 1 <= nfr <= pf:
            return None
        head = _head_size(k_stages, huff, nfr, side_block, ls or 1)
        if len(data) - pos < head or crc16(data[pos:pos + head - 2]) != _U16.unpack_from(data, pos + head - 2)[0]:
            return None
        (slo, _), sec_bounds = packet_bounds(cfg, k_stages, nfr, huff, side_block)
        q = pos + _PKT_HEAD.size
        if huff:
            lens = list(struct.unpack_from(f"<{k_stages}H", data, q))
            if not all(lo <= ln <= hi for ln, (lo, hi) in zip(lens, sec_bounds)):
                return None
            q += 2 * k_stages
        else:
            lens = [lo for lo, _ in sec_bounds]
        if side_block:
            block_lens = [int.from_bytes(data[q + i * ls:q + (i + 1) * ls], "little")
                          for i in range(-(-nfr // side_block))]
            if not all(lo <= ln <= hi for ln, (lo, hi) in
                       zip(block_lens, (_block_bounds(cfg, n) for _, n in side_blocks(nfr, side_block)))):
                return None
        else:
            block_lens = [slo]
    return _packet_body(data, pos + head, index, nfr, lens, block_lens, side_block)


def _packet_body(data: bytes, q: int, index: int, nfr: int, lens: list[int], block_lens: list[int],
                 side_block: int):
    """The packet whose head ends at ``q``, with these stage section and side lengths (robust:
    ``block_lens`` = [the side units' bytes]): ``_scan_packet``'s "short" or "whole" tuple."""
    end = q + sum(block_lens) + _side_crc_size(nfr, side_block) + sum(lens) + CRC_BYTES * len(lens)
    if end > len(data):
        return "short", index, nfr, None, None, end
    if side_block:
        side = []
        for ln in block_lens:
            blk = data[q:q + ln]
            side.append((blk, crc8(blk) == data[q + ln]))
            q += ln + CRC_BYTES
    else:
        side = data[q:q + block_lens[0]]
        q += block_lens[0]
    secs = []
    for ln in lens:
        sec = data[q:q + ln]
        secs.append((sec, crc8(sec) == data[q + ln]))
        q += ln + CRC_BYTES
    return "whole", index, nfr, side, secs, end


def _recover_head(data: bytes, pos: int, k_stages: int, cfg, huff: bool, side_block: int,
                  index: int, nfr: int, end: int):
    """A damaged packet head whose lengths the packet's place tells: packet ``index`` (of
    ``nfr`` frames, from the stream header) starts at ``pos`` and the next packet (a good head)
    or the end of the stream at ``end``.  The lengths are read from the damaged head as they are
    when they sum to the bytes between; otherwise one length field must be wrong (a bit error
    changes one field), by the difference: each field in turn is corrected, within its bounds, and
    the correction is taken when that unit's check holds and it leaves more checks holding than
    any other (none on a tie).  Returns ``_scan_packet``'s "whole" tuple or None."""
    ls = _block_len_size(cfg, side_block) if side_block else 0
    head = _head_size(k_stages, huff, nfr, side_block, ls or 1)
    (_, _), sec_bounds = packet_bounds(cfg, k_stages, nfr, huff, side_block)
    q = pos + _PKT_HEAD.size
    if pos + head > end:
        return None
    lens = list(struct.unpack_from(f"<{k_stages}H", data, q)) if huff else [lo for lo, _ in sec_bounds]
    q += 2 * k_stages if huff else 0
    nb = -(-nfr // side_block) if side_block else 0
    block_lens = ([int.from_bytes(data[q + i * ls:q + (i + 1) * ls], "little") for i in range(nb)]
                  if side_block else [_side_bytes(cfg, nfr)])
    fields = ([("sec", j) for j in range(k_stages)] if huff else []) + ([("side", j) for j in range(nb)])
    bounds = {("sec", j): b for j, b in enumerate(sec_bounds)}
    bounds.update({("side", j): _block_bounds(cfg, n) for j, (_, n) in enumerate(side_blocks(nfr, side_block) if side_block else [])})
    need = end - (pos + head) - _side_crc_size(nfr, side_block) - CRC_BYTES * k_stages
    delta = sum(lens) + sum(block_lens) - need

    def parse(ln, bl):
        if not all(bounds[("sec", j)][0] <= x <= bounds[("sec", j)][1] for j, x in enumerate(ln)) and huff:
            return None
        if side_block and not all(bounds[("side", j)][0] <= x <= bounds[("side", j)][1] for j, x in enumerate(bl)):
            return None
        pkt = _packet_body(data, pos + head, index, nfr, ln, bl, side_block)
        return pkt if pkt[0] == "whole" and pkt[5] == end else None

    if delta == 0:
        return parse(lens, block_lens)
    best, best_score, tie = None, -1, False
    for kind, j in fields:
        ln, bl = list(lens), list(block_lens)
        (ln if kind == "sec" else bl)[j] -= delta
        pkt = parse(ln, bl)
        if pkt is None or not (pkt[4] if kind == "sec" else pkt[3])[j][1]:
            continue
        score = sum(g for _, g in pkt[4]) + (sum(g for _, g in pkt[3]) if side_block else 0)
        if score > best_score:
            best, best_score, tie = pkt, score, False
        elif score == best_score:
            tie = True
    return None if tie else best


def _next_packet_at(data: bytes, pos: int, k_stages: int, cfg, pf: int, huff: bool, side_block: int,
                    index: int, nfr: int) -> int | None:
    """Where packet ``index + 1`` (a good head) starts after a packet of ``nfr`` frames at
    ``pos`` whose head is damaged: looked for between that packet's smallest and largest size."""
    lo = pos + _min_packet(cfg, k_stages, nfr, huff, side_block)
    ls = _block_len_size(cfg, side_block) if side_block else 1
    (_, shi), secs = packet_bounds(cfg, k_stages, nfr, huff, side_block)
    hi = pos + _framing_size(k_stages, huff, nfr, side_block, ls) + shi + sum(h for _, h in secs)
    at = data.find(SYNC, lo, hi + len(SYNC))
    while 0 <= at <= hi:
        nxt = _scan_packet(data, at, k_stages, cfg, pf, huff, side_block=side_block)
        if nxt is not None and nxt[1] == index + 1:
            return at
        at = data.find(SYNC, at + 1, hi + len(SYNC))
    return None


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
    if check_books and h["huffman"]:
        if codebooks is None:
            raise BitstreamError("stream is Huffman coded: codebooks needed")
        _check_codebooks(codebooks, h["stages"], cfg)
    if check_books and h["side_huffman"]:
        if side is None:
            raise BitstreamError("stream has compact (Huffman-coded) side information: side codebooks needed "
                                 "(a model file with side_codebooks)")
        side.check(cfg)
    if check_books and (h["huffman"] or h["side_huffman"]) and _books_id(
            codebooks if h["huffman"] else None, side if h["side_huffman"] else None) != h["codebooks_id"]:
        raise BitstreamError("stream was Huffman coded with other codebooks")
    return h


def _min_packet(cfg, K: int, nfr: int, huff: bool, side_block: int = 0) -> int:
    ls = _block_len_size(cfg, side_block) if side_block else 1
    return (_framing_size(K, huff, nfr, side_block, ls) + _min_side(cfg, nfr, side_block)
            + sum(_min_section(cfg, n, nfr, huff) for n in range(K)))


def _min_stream_size(h, cfg, huff) -> int:
    T, pf, K = h["frames"], h["packet_frames"], h["stages"]
    total = HEADER_SIZE
    full, rest = divmod(T, pf)
    for nfr, count in ((pf, full), (rest, 1 if rest else 0)):
        if count:
            total += _min_packet(cfg, K, nfr, huff, h["side_block"]) * count
    return total


RAW_DAMAGE = ("use", "drop")


def _decode_side(side_sec, nfr: int, widths, side, side_block: int = 0):
    """A packet's side information -> (values (F, fields), ok (F,), failed checks).  Compact
    (``side`` a SideCoder, ``side_sec = [(block, CRC-8 holds)]``): a block's frames all or none."""
    if side is None:
        vals, ok = _unpack_side(side_sec, nfr, widths)
        return vals, ok, int((~ok).sum())
    vals, ok, bad = np.zeros((nfr, widths.size), np.int64), np.zeros(nfr, bool), 0
    for (a, n), (blk, good) in zip(side_blocks(nfr, side_block), side_sec):
        if good:
            try:
                vals[a:a + n] = side.decode(blk, n, widths)
                ok[a:a + n] = True
                continue
            except HuffmanError:
                pass
        bad += 1
    return vals, ok, bad


def _decode_packet(pkt, cfg, codebooks, K: int, huff: bool, raw_damage: str, widths, side=None,
                   side_block: int = 0):
    """A whole packet -> (side values, side ok (F,), [codes of the usable stages], usable stages,
    failed checks).  ``side``: the SideCoder of a compact stream (None: robust units), whose
    blocks are ``side_block`` frames."""
    _, index, nfr, side_sec, secs, _ = pkt
    vals, ok, bad = _decode_side(side_sec, nfr, widths, side, side_block)
    dec = []
    for n, (sec, good) in enumerate(secs):
        if not good:
            bad += 1
            if huff or raw_damage == "drop":
                bad += sum(not g for _, g in secs[n + 1:])
                break
        if huff:
            try:
                dec.append(codebooks[n].decode_bits(sec, nfr, cfg.network.code_bits[n]))
            except HuffmanError:
                bad += 1
                break
        else:
            dec.append(np.unpackbits(np.frombuffer(sec, np.uint8))[:nfr * cfg.network.code_bits[n]].reshape(nfr, -1))
    return vals, ok, dec, len(dec), bad


def read_stream(data: bytes, cfg, codebooks: list[Codebook] | None, conceal: bool = True,
                side: SideCoder | None = None, raw_damage: str = "use") -> Frames:
    """Stream bytes -> :class:`Frames` (with ``lost``, ``stages`` and ``bad_checks`` set).  See the
    module docstring for errors and what damage costs.  ``codebooks`` must be the list the writer
    was given (checked through the header's codebooks id); they are not needed for a raw stream.
    ``side``: the SideCoder a compact stream's side information was coded with (checked through
    the codebooks id; not needed for robust side units).  ``raw_damage``:
    ``"use"`` keeps a raw stage section that fails its check, ``"drop"`` drops it and the stages
    after it, as a Huffman section is dropped.

    The packets are found and decoded first; arrays of the header's frame count are allocated
    only once the packets in the stream are known to hold (whole or short) all but
    ``LIMITS["missing_share"]`` of those frames."""
    if raw_damage not in RAW_DAMAGE:
        raise ValueError(f"raw_damage must be one of {RAW_DAMAGE}")
    h = _open(data, cfg, codebooks, side)
    data = bytes(data)
    huff, sb = h["huffman"], h["side_block"]
    coder = side if sb else None
    T, pf, K = h["frames"], h["packet_frames"], h["stages"]
    # a stream may lack bytes (lost ones, a cut last packet) but not more than the share of its
    # frames that may lie in no packet: the frames decoded stay a fixed multiple of the bytes
    least = HEADER_SIZE + int((1 - LIMITS["missing_share"]) * (_min_stream_size(h, cfg, huff) - HEADER_SIZE))
    if len(data) < least:
        raise BitstreamError(f"stream truncated: {len(data)} bytes, its header needs at least {least} "
                             f"({1 - LIMITS['missing_share']:.0%} of the smallest stream of its frames)")
    npk = -(-T // pf)
    widths = _side_widths(cfg)

    def next_is_packet(end: int, index: int) -> bool:
        """Whether a packet of ``index + 1`` starts at ``end`` (or the stream ends there after its last)."""
        if index == npk - 1:
            return end == len(data)
        nxt_pkt = _scan_packet(data, end, K, cfg, pf, huff, side_block=sb)
        return nxt_pkt is not None and nxt_pkt[1] == index + 1

    good = []            # (index, frames, side values, side ok, [codes], usable stages) of whole packets
    short = set()        # indexes of packets whose head is good but whose data runs past the stream
    bad_checks = 0
    pos, nxt, used, claimed, last_end = HEADER_SIZE, 0, HEADER_SIZE, HEADER_SIZE, HEADER_SIZE
    last_start, last_bad, looked_back = HEADER_SIZE, False, -1
    while pos < len(data):
        pkt = _scan_packet(data, pos, K, cfg, pf, huff, side_block=sb)
        if pkt is None and pos == last_end and nxt < npk:
            # a damaged head where packet nxt must start: a raw stream's with robust side units
            # recovered from its place when the packet after it is where the header's frame
            # count puts it; one with lengths in it (Huffman sections, compact side blocks) from
            # its lengths and where the next packet starts
            nfr = _packet_frames(pf, T, nxt)
            if not huff and not sb:
                guess = _scan_packet(data, pos, K, cfg, pf, huff, infer=(nxt, nfr))
                if guess is not None and not (guess[0] == "whole" and next_is_packet(guess[5], nxt)):
                    guess = None
            else:
                end = len(data) if nxt == npk - 1 else _next_packet_at(data, pos, K, cfg, pf, huff, sb, nxt, nfr)
                guess = None if end is None else _recover_head(data, pos, K, cfg, huff, sb, nxt, nfr, end)
            if guess is not None:
                pkt = guess
                bad_checks += 1
                if not conceal:
                    raise BitstreamError(f"packet {nxt} is damaged (its head, at byte {pos})")
        if pkt is not None and pkt[0] == "whole":
            _, index, nfr, _, _, end = pkt
            # a packet with a good head that the header has no room for: the header's frame
            # count is wrong (a shorter count would silently drop the packets after it)
            if index >= npk:
                raise BitstreamError(f"stream header claims {T} frames ({npk} packets), the stream holds "
                                     f"packet {index}")
            if nfr != _packet_frames(pf, T, index):
                raise BitstreamError(f"stream header claims {T} frames, packet {index} holds {nfr} "
                                     f"(the header gives it {_packet_frames(pf, T, index)})")
            if index >= nxt:
                if index > nxt and not conceal:
                    raise BitstreamError(f"packet {nxt} is damaged or missing")
                vals, ok, dec, usable, bad = _decode_packet(pkt, cfg, codebooks, K, huff, raw_damage, widths, coder, sb)
                if bad and not conceal:
                    raise BitstreamError(f"packet {index} is damaged ({bad} failed checks)")
                bad_checks += bad
                good.append((index, nfr, vals, ok, dec, usable))
                nxt = index + 1
                used += end - max(pos, last_end)
                last_start, last_bad = pos, bool(bad)
                pos = claimed = last_end = end
                # bytes after an intact last packet are trailing data, refused as truncate_stream
                # refuses them; after a damaged one they may be its own bytes (a slipped byte)
                if index == npk - 1 and pos != len(data) and not bad:
                    raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
                continue
        # a short packet holds its frames if it starts after the smallest packet the one before
        # could be (so each costs at least the smallest packet's bytes, as a whole one does)
        if (pkt is not None and pkt[0] == "short" and nxt <= pkt[1] < npk and pos >= claimed
                and pkt[2] == _packet_frames(pf, T, pkt[1])):
            short.add(pkt[1])
            claimed = pos + _min_packet(cfg, K, pkt[2], huff, sb)
        if not conceal:
            if nxt == npk:
                raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
            raise BitstreamError(f"packet {nxt} is damaged (at byte {pos})")
        # after a damaged packet its true end is unknown (a byte lost inside it moves the next
        # packet's start before its parsed end): look for the next sync word once from inside it
        start = pos + 1
        if pos == last_end and last_bad and looked_back != last_end:
            looked_back, start = last_end, last_start + _head_size(K, huff, 1, sb)
        found = data.find(SYNC, start)
        if found < 0:
            break
        pos = found
    if not conceal and nxt != npk:
        raise BitstreamError(f"stream truncated: packet {nxt} of {npk} is missing")
    if not conceal and used != len(data):
        raise BitstreamError(f"{len(data) - used} stray bytes outside the packets")
    if npk == 0 and len(data) > HEADER_SIZE:
        raise BitstreamError(f"{len(data) - HEADER_SIZE} stray bytes after the header of a stream of 0 frames")
    held = sum(g[1] for g in good) + sum(_packet_frames(pf, T, i) for i in short - {g[0] for g in good})
    if T - held > LIMITS["missing_share"] * T:
        raise BitstreamError(f"stream header claims {T} frames, its packets hold {held} (whole or short); "
                             f"the rest are in no packet of the stream")

    order = cfg.lpc.order if cfg.lpc.enabled else 0
    lsf = np.zeros((T, order), np.int64)
    gain = np.zeros(T, np.int64)
    pitch = np.zeros((T, 2), np.int64) if cfg.pitch.enabled else None
    codes = [np.zeros((T, cfg.network.code_bits[n]), np.uint8) for n in range(K)]
    lost = np.ones(T, bool)
    stages = np.zeros(T, np.int64)
    for index, nfr, vals, ok, dec, usable in good:
        a = index * pf
        vals = np.where(ok[:, None], vals, 0)
        lsf[a:a + nfr], gain[a:a + nfr], p_vals = split_side_columns(vals, cfg)
        if pitch is not None:
            pitch[a:a + nfr] = p_vals
        for n in range(usable):
            codes[n][a:a + nfr] = dec[n]
        lost[a:a + nfr] = ~ok
        stages[a:a + nfr] = usable
    return Frames(num_samples=h["samples"], lsf_idx=lsf, gain_idx=gain, codes=codes, lost=lost,
                  pitch=pitch, stray_bytes=max(0, len(data) - used), stages=stages, bad_checks=bad_checks)


def _whole_packets(data: bytes, h: dict, cfg):
    """The packets of an intact stream, in order, each checked (head, side units, sections):
    ``[(start, end, pkt)]``.  BitstreamError at the first damaged or missing one."""
    K, T, pf, huff, sb = h["stages"], h["frames"], h["packet_frames"], h["huffman"], h["side_block"]
    widths = _side_widths(cfg)
    out, pos = [], HEADER_SIZE
    for p in range(-(-T // pf)):
        pkt = _scan_packet(data, pos, K, cfg, pf, huff, side_block=sb)
        if (pkt is None or pkt[0] != "whole" or pkt[1] != p or pkt[2] != _packet_frames(pf, T, p)
                or not all(g for _, g in pkt[4])
                or not (all(g for _, g in pkt[3]) if sb else _unpack_side(pkt[3], pkt[2], widths)[1].all())):
            raise BitstreamError(f"packet {p} is damaged or missing (at byte {pos})")
        out.append((pos, pkt[5], pkt))
        pos = pkt[5]
    if pos != len(data):
        raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
    return out


def packet_spans(data: bytes, cfg) -> list[tuple[int, int]]:
    """``[(start, end)]`` byte ranges of the packets of an intact stream, in order (what
    ``model.damage`` hits when it damages a share of packets).  Raises BitstreamError for a
    stream that is not intact."""
    h = _open(data, cfg, None, check_books=False)
    return [(a, b) for a, b, _ in _whole_packets(bytes(data), h, cfg)]


def truncate_stream(data: bytes, stages: int, cfg) -> bytes:
    """Keep the first ``stages`` stage sections of every packet (no re-encoding).

    The header's K becomes ``stages``; every packet is rewritten with its first sections (and
    their CRC-8s) and a new head.  A damaged or missing packet, or bytes after the last one,
    cannot be cut: BitstreamError.
    """
    h = _open(data, cfg, None, check_books=False)
    data = bytes(data)
    K = h["stages"]
    stages = int(stages)
    if not 1 <= stages <= K:
        raise BitstreamError(f"cannot cut a stream of {K} stages to {stages}")
    out = bytearray(_make_header({**h, "stages": stages}))
    for _, _, (_, index, nfr, side, secs, _) in _whole_packets(data, h, cfg):
        sb = h["side_block"]
        out += _make_packet(index, [blk for blk, _ in side] if sb else side, [sec for sec, _ in secs[:stages]],
                            h["huffman"], nfr, _block_len_size(cfg, sb) if sb else 0)
    return bytes(out)
