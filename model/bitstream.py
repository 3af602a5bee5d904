"""The scalable bitstream: header, packets, checked side units and one checked section per stage.

The layout is documented byte by byte in ``docs/bitstream.md`` (format version 3); in short (all
integers little-endian)::

    header (40 bytes): b"CASC" | version u8 (3) | flags u8 | K u8 | N u8 | config hash 8 bytes |
                       sample_rate u32 | frames T u32 | samples u32 | packet_frames u16 |
                       symbol_bits u8 | 0 u8 | codebooks id u32 | CRC-32 of the 36 bytes before u32
    packet (repeated ceil(T / packet_frames) times):
                       sync b"\\xA5\\x5A" | index u32 | frames F u16 |
                       (Huffman streams only) K x section length u16 |
                       (compact side only) side section length u16 | CRC-16 of the packet head u16 |
                       side information: robust (flag bit 1 clear): per frame S side bits + CRC-8
                       of them, all F frames packed MSB first; compact (flag bit 1 set): one
                       delta+Huffman side section (``SideCoder``) | its CRC-16 u16 |
                       K x (stage section | CRC-8 of the section)

Side information: per frame ``lpc.order`` LSF indices of ``lpc.lsf_bits`` bits, the gain index
of ``gain.bits`` bits, then (when ``cfg.pitch`` is on) the pitch lag index and gain index
(``PitchConfig.side_widths``), each MSB first (``side_columns``: S bits), followed by the CRC-8 of
those S bits (packed MSB first into ceil(S/8) bytes); the F units of a packet are concatenated and
packed MSB first into ``ceil(F * (S + 8) / 8)`` bytes (robust mode).  In compact mode (header flag
bit 1, ``FLAG_SIDE_HUFFMAN``; the default of ``Codec.encode_bytes``, ``robust=True`` for the units)
the packet's side values are one section coded by the model file's ``SideCoder`` (per field the
difference to the frame before, Huffman coded; about 17 bits per frame fewer on the shipped
model), its length in the packet head and a CRC-16 after it.  A stage section holds the packet's frames
of that stage: the raw code bits, frame after frame, packed MSB first (flag bit 0 clear), or
Huffman coded (``model/huffman.py``; flag bit 0 set), each followed by its CRC-8.  Raw sections
and the side units have sizes fixed by F, so only a Huffman stream's packets carry section
lengths.  ``model.codec`` writes raw sections unless Huffman saves at least
``codec.HUFFMAN_MIN_SAVING`` of them (it saves nothing on the shipped models).

What a damaged bit costs (``read_stream``, ``conceal=True``):

* in a frame's side unit (robust): that frame (``Frames.lost``; the decoder takes LSFs, pitch lag
  and a decaying gain from the frame before and keeps the frame's own stage codes);
* in a packet's compact side section or its CRC-16: the side information of the packet's frames
  (all ``lost``, concealed as above, frame after frame); their stage codes are kept;
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
from .huffman import Codebook, HuffmanError, codebooks_id

__all__ = ["Frames", "BitstreamError", "SideCoder", "write_stream", "read_stream", "truncate_stream",
           "stream_info", "side_columns", "packet_spans", "packet_layout", "crc8", "crc16",
           "MAGIC", "VERSION", "HEADER_SIZE", "SYNC", "LIMITS", "SIDE_MODES",
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
          "frames": (1 << 32) - 1, "samples": (1 << 32) - 1, "section_bytes": 65535,
          "missing_share": 0.5}

MAGIC = b"CASC"
VERSION = 3
SYNC = b"\xA5\x5A"
FLAG_HUFFMAN = 0x01
FLAG_SIDE_HUFFMAN = 0x02                          # compact side information (see SIDE_MODES)
#: The two ways a version-3 stream carries the side information (header flag bit 1):
#: ``"compact"`` (bit set): per packet one delta+Huffman-coded section (``SideCoder``) and its
#: CRC-16, its length in the packet head; ``"robust"`` (bit clear): one fixed-width unit with a
#: CRC-8 per frame.  ``Codec.encode_bytes`` writes compact unless ``robust=True`` (or the model has
#: no side codebooks).
SIDE_MODES = ("compact", "robust")
SIDE_CRC_BYTES = 2                                # the CRC-16 after a compact side section

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


def crc16(data: bytes) -> int:
    """The CRC-16 of a packet head: CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


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


def _unpack_side(data: bytes, frames: int, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`_pack_side`: (values (F, fields), ok (F,) bool: the unit's CRC-8 holds)."""
    per = int(widths.sum())
    units = np.unpackbits(np.frombuffer(data, np.uint8))[:frames * (per + 8)].reshape(frames, per + 8)
    bits, crc = units[:, :per], np.packbits(units[:, per:], axis=1)[:, 0]
    ok = _unit_crcs(bits) == crc
    out = np.zeros((frames, widths.size), np.int64)
    pos = 0
    for j, w in enumerate(widths.tolist()):
        out[:, j] = bits[:, pos:pos + w].astype(np.int64) @ (np.int64(1) << np.arange(w - 1, -1, -1, dtype=np.int64))
        pos += w
    return out, ok


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
        if any(b.max_len > ln for b, ln in zip(self.books, _side_code_lens(cfg))):
            raise BitstreamError("side-information codebooks have codes longer than the config allows "
                                 "(entropy.max_code_len)")

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
    if len(data) > 4 and data[4] == 2:
        raise BitstreamError("stream format version 2 (one CRC per packet), this reader reads version 3: "
                             "re-encode the audio with this cascade")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"stream truncated inside its header ({len(data)} of {HEADER_SIZE} bytes)")
    (magic, version, flags, k, n, chash, rate, frames, samples, pf, sym_bits, _res,
     cb_id) = _HEADER.unpack_from(data, 0)
    (crc,) = _U32.unpack_from(data, _HEADER.size)
    if version != VERSION:
        raise BitstreamError(f"stream format version {version}, this reader knows version {VERSION}")
    if zlib.crc32(data[:_HEADER.size]) != crc:
        raise BitstreamError("stream header is damaged (header CRC mismatch)")
    if flags & ~(FLAG_HUFFMAN | FLAG_SIDE_HUFFMAN) or _res:
        raise BitstreamError("stream header holds impossible values (unknown flags or reserved bits)")
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
    side_huff = bool(flags & FLAG_SIDE_HUFFMAN)
    least = HEADER_SIZE + packets * _framing_size(k, bool(flags & FLAG_HUFFMAN), side_huff)
    if len(data) < least:
        raise BitstreamError(f"stream truncated: its header claims {packets} packets, at least {least} "
                             f"bytes, the stream has {len(data)}")
    return {"version": version, "huffman": bool(flags & FLAG_HUFFMAN), "side_huffman": side_huff,
            "side_mode": "compact" if side_huff else "robust",
            "stages": k, "codec_stages": n, "config_hash": chash.hex(), "sample_rate": rate,
            "frames": frames, "samples": samples, "packet_frames": pf, "symbol_bits": sym_bits,
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


# ---- the packet layout (one definition: writer, reader, truncate_stream, packet_layout) ----------
def _head_size(k_stages: int, huff: bool, side_huff: bool = False) -> int:
    """Bytes of a packet head: sync, index, F, the K section lengths (Huffman only), the side
    section's length (compact side information only), CRC-16."""
    return _PKT_HEAD.size + (2 * k_stages if huff else 0) + (2 if side_huff else 0) + 2


def _side_crc_size(side_huff: bool) -> int:
    """Bytes after the side information: the CRC-16 of a compact section (robust units carry
    their CRC-8 inside)."""
    return SIDE_CRC_BYTES if side_huff else 0


def _framing_size(k_stages: int, huff: bool, side_huff: bool) -> int:
    """The bytes of a packet that are not its data: head, the side section's CRC and one check
    per stage section (the least a packet can be, whatever its frames)."""
    return _head_size(k_stages, huff, side_huff) + _side_crc_size(side_huff) + CRC_BYTES * k_stages


def _make_head(index: int, nfr: int, lens: list[int] | None, side_len: int | None = None) -> bytes:
    head = (_PKT_HEAD.pack(SYNC, index, nfr) + b"".join(_U16.pack(ln) for ln in lens or ())
            + (b"" if side_len is None else _U16.pack(side_len)))
    return head + _U16.pack(crc16(head))


def _make_packet(index: int, side: bytes, sections: list[bytes], huff: bool, nfr: int,
                 side_huff: bool = False) -> bytes:
    """``side``: the side units (robust) or the Huffman side section without its CRC-16 (compact)."""
    out = bytearray(_make_head(index, nfr, [len(x) for x in sections] if huff else None,
                               len(side) if side_huff else None))
    out += side
    if side_huff:
        out += _U16.pack(crc16(side))
    for sec in sections:
        out += sec + bytes([crc8(sec)])
    return bytes(out)


def packet_layout(cfg, stages: int, frames: int, huff: bool, side_huff: bool = False) -> dict:
    """Byte sizes of a packet of ``frames`` frames: ``head``, ``side`` (the robust side units'
    exact bytes; None for compact side information, whose length is in the head),
    ``side_bounds`` ((lo, hi) of the side information without a compact section's CRC-16),
    ``side_crc`` (bytes after the side information: 0 robust, 2 compact), ``sections`` ([(lo, hi)]
    of each stage section without its CRC-8 byte; raw ones exact) and ``unit_bits`` (bits per
    robust side unit).  What docs/bitstream.md tabulates."""
    side, secs = packet_bounds(cfg, stages, frames, huff, side_huff)
    return {"head": _head_size(stages, huff, side_huff), "side": None if side_huff else side[0],
            "side_bounds": side,
            "side_crc": _side_crc_size(side_huff),
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


def write_stream(frames: Frames, cfg, codebooks: list[Codebook] | None, side: SideCoder | None = None) -> bytes:
    """Frames -> stream bytes; stage sections Huffman coded when ``codebooks`` are given, else raw.

    ``side`` given: compact side information (header flag bit 1; per packet one section coded
    with these side codebooks, and its CRC-16); None: robust side units (a fixed-width unit with
    a CRC-8 per frame).  Raises BitstreamError (one line) on frames that do not fit ``cfg``.
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
    pf = cfg.entropy.packet_frames
    if not 1 <= pf <= LIMITS["packet_frames"]:
        raise BitstreamError(f"packet_frames must be 1..{LIMITS['packet_frames']}")
    out = bytearray(_make_header({
        "huffman": huff, "stages": k_stages, "codec_stages": N, "config_hash": cfg.config_hash,
        "sample_rate": cfg.signal.sample_rate, "frames": T, "samples": int(frames.num_samples),
        "packet_frames": pf, "symbol_bits": cfg.entropy.symbol_bits, "side_huffman": side_huff,
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
            side_sec = side.encode(side_all[a:b], widths)
            if len(side_sec) > LIMITS["section_bytes"]:
                raise BitstreamError(f"side information of packet {p} exceeds 65535 bytes; use smaller packets")
        else:
            side_sec = _pack_side(side_all[a:b], widths)
        out += _make_packet(p, side_sec, sections, huff, b - a, side_huff)
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


def _min_side(cfg, nfr: int, side_huff: bool) -> int:
    """The smallest side information of ``nfr`` frames: robust units exactly; a compact section
    one byte-aligned chunk per field of codes at least 1 bit long."""
    return len(_side_widths(cfg)) * -(-nfr // 8) if side_huff else _side_bytes(cfg, nfr)


def _max_side(cfg, nfr: int, side_huff: bool) -> int:
    """The largest: each field's codes at most ``_side_code_lens`` bits (``SideCoder.check``)."""
    if not side_huff:
        return _side_bytes(cfg, nfr)
    return min(LIMITS["section_bytes"], sum(-(-nfr * ln // 8) for ln in _side_code_lens(cfg)))


def packet_bounds(cfg, stages: int, frames: int, huff: bool, side_huff: bool = False) -> tuple:
    """``((lo, hi) of the side information, [(lo, hi) of each of the K stage sections])``: the byte
    lengths of a packet of ``frames`` frames (robust side units and raw sections exactly; a
    compact side section's or a Huffman section's declared length must lie within).  A packet head outside them is no packet; with
    them a packet is at most a fixed size for a config, so scanning a stream for packets costs a
    fixed multiple of its size."""
    return ((_min_side(cfg, frames, side_huff), _max_side(cfg, frames, side_huff)), [(_min_section(cfg, n, frames, huff), _max_section(cfg, n, frames, huff))
                           for n in range(stages)])


def _scan_packet(data: bytes, pos: int, k_stages: int, cfg, pf: int, huff: bool, infer=None,
                 side_huff: bool = False):
    """Look for a packet at ``pos``.

    Returns None when there is no packet head here (no sync word, a frame count outside
    1..packet_frames, a head CRC-16 mismatch or lengths outside ``packet_bounds``);
    ``("short", index, frames, None, None, end)`` for a good head whose packet runs past the data;
    else ``("whole", index, frames, side, [(section, CRC-8 holds)], end)`` with ``side`` the side
    units (robust) or ``(section, CRC-16 holds)`` (compact).  ``infer = (index, frames)``: a raw
    stream's head (robust side units: nothing in it but its place) is not read but taken as that
    (its place and the header's frame count give it); the caller checks that the next packet
    starts at ``end``.
    """
    head = _head_size(k_stages, huff, side_huff)
    if infer is not None:
        if huff or side_huff:
            return None
        index, nfr = infer
        lens = [lo for lo, _ in packet_bounds(cfg, k_stages, nfr, False)[1]]
        side_len = _side_bytes(cfg, nfr)
    else:
        if len(data) - pos < head:
            return None
        sync, index, nfr = _PKT_HEAD.unpack_from(data, pos)
        if sync != SYNC or not 1 <= nfr <= pf or crc16(data[pos:pos + head - 2]) != _U16.unpack_from(data, pos + head - 2)[0]:
            return None
        (slo, shi), sec_bounds = packet_bounds(cfg, k_stages, nfr, huff, side_huff)
        if huff:
            lens = list(struct.unpack_from(f"<{k_stages}H", data, pos + _PKT_HEAD.size))
            if not all(lo <= ln <= hi for ln, (lo, hi) in zip(lens, sec_bounds)):
                return None
        else:
            lens = [lo for lo, _ in sec_bounds]
        if side_huff:
            (side_len,) = _U16.unpack_from(data, pos + head - 4)
            if not slo <= side_len <= shi:
                return None
        else:
            side_len = slo
    side_crc = _side_crc_size(side_huff)
    q = pos + head
    end = q + side_len + side_crc + sum(lens) + CRC_BYTES * k_stages
    if end > len(data):
        return "short", index, nfr, None, None, end
    side = data[q:q + side_len]
    if side_huff:
        side = (side, crc16(side) == _U16.unpack_from(data, q + side_len)[0])
    q += side_len + side_crc
    secs = []
    for ln in lens:
        sec = data[q:q + ln]
        secs.append((sec, crc8(sec) == data[q + ln]))
        q += ln + CRC_BYTES
    return "whole", index, nfr, side, secs, end


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


def _min_packet(cfg, K: int, nfr: int, huff: bool, side_huff: bool = False) -> int:
    return (_framing_size(K, huff, side_huff) + _min_side(cfg, nfr, side_huff)
            + sum(_min_section(cfg, n, nfr, huff) for n in range(K)))


def _min_stream_size(h, cfg, huff) -> int:
    T, pf, K = h["frames"], h["packet_frames"], h["stages"]
    total = HEADER_SIZE
    full, rest = divmod(T, pf)
    for nfr, count in ((pf, full), (rest, 1 if rest else 0)):
        if count:
            total += _min_packet(cfg, K, nfr, huff, h["side_huffman"]) * count
    return total


RAW_DAMAGE = ("use", "drop")


def _decode_side(side_sec, nfr: int, widths, side):
    """A packet's side information -> (values (F, fields), ok (F,), failed checks).  Compact
    (``side`` a SideCoder, ``side_sec = (section, CRC-16 holds)``): all frames or none."""
    if side is None:
        vals, ok = _unpack_side(side_sec, nfr, widths)
        return vals, ok, int((~ok).sum())
    sec, good = side_sec
    if good:
        try:
            return side.decode(sec, nfr, widths), np.ones(nfr, bool), 0
        except HuffmanError:
            pass
    return np.zeros((nfr, widths.size), np.int64), np.zeros(nfr, bool), 1


def _decode_packet(pkt, cfg, codebooks, K: int, huff: bool, raw_damage: str, widths, side=None):
    """A whole packet -> (side values, side ok (F,), [codes of the usable stages], usable stages,
    failed checks).  ``side``: the SideCoder of a compact stream (None: robust units)."""
    _, index, nfr, side_sec, secs, _ = pkt
    vals, ok, bad = _decode_side(side_sec, nfr, widths, side)
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
    huff, sh = h["huffman"], h["side_huffman"]
    coder = side if sh else None
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
        nxt_pkt = _scan_packet(data, end, K, cfg, pf, huff, side_huff=sh)
        return nxt_pkt is not None and nxt_pkt[1] == index + 1

    good = []            # (index, frames, side values, side ok, [codes], usable stages) of whole packets
    short = set()        # indexes of packets whose head is good but whose data runs past the stream
    bad_checks = 0
    pos, nxt, used, claimed, last_end = HEADER_SIZE, 0, HEADER_SIZE, HEADER_SIZE, HEADER_SIZE
    last_start, last_bad, looked_back = HEADER_SIZE, False, -1
    while pos < len(data):
        pkt = _scan_packet(data, pos, K, cfg, pf, huff, side_huff=sh)
        if pkt is None and not huff and not sh and pos == last_end and nxt < npk:
            # a damaged head of a raw stream, where packet nxt must start: recovered from its place
            # when the packet after it is where the header's frame count puts it
            guess = _scan_packet(data, pos, K, cfg, pf, huff, infer=(nxt, _packet_frames(pf, T, nxt)))
            if guess is not None and guess[0] == "whole" and next_is_packet(guess[5], nxt):
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
                vals, ok, dec, usable, bad = _decode_packet(pkt, cfg, codebooks, K, huff, raw_damage, widths, coder)
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
            claimed = pos + _min_packet(cfg, K, pkt[2], huff, sh)
        if not conceal:
            if nxt == npk:
                raise BitstreamError(f"{len(data) - pos} stray bytes after the last packet")
            raise BitstreamError(f"packet {nxt} is damaged (at byte {pos})")
        # after a damaged packet its true end is unknown (a byte lost inside it moves the next
        # packet's start before its parsed end): look for the next sync word once from inside it
        start = pos + 1
        if pos == last_end and last_bad and looked_back != last_end:
            looked_back, start = last_end, last_start + _head_size(K, huff, sh)
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
    K, T, pf, huff, sh = h["stages"], h["frames"], h["packet_frames"], h["huffman"], h["side_huffman"]
    widths = _side_widths(cfg)
    out, pos = [], HEADER_SIZE
    for p in range(-(-T // pf)):
        pkt = _scan_packet(data, pos, K, cfg, pf, huff, side_huff=sh)
        if (pkt is None or pkt[0] != "whole" or pkt[1] != p or pkt[2] != _packet_frames(pf, T, p)
                or not all(g for _, g in pkt[4])
                or not (pkt[3][1] if sh else _unpack_side(pkt[3], pkt[2], widths)[1].all())):
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
        sh = h["side_huffman"]
        out += _make_packet(index, side[0] if sh else side, [sec for sec, _ in secs[:stages]], h["huffman"], nfr, sh)
    return bytes(out)
