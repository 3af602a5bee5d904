"""The CASC bitstream (model/bitstream.py): round trips, truncation, robustness, what damage
costs (format version 4: a check per side unit or compact side block, per stage section and per
packet head), fuzzing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from model.bitstream import (HEADER_SIZE, BitstreamError, Frames, SideCoder, packet_spans, read_stream, side_columns,
                             stream_info, truncate_stream, write_stream)
from model.config import preset
from model.huffman import train_codebooks

CFG = preset("tiny")
FUZZ_COUNT = {"n": 0}


def make_frames(cfg=CFG, T=60, seed=0, stages=None):
    rng = np.random.default_rng(seed)
    K = cfg.network.stages if stages is None else stages
    codes = [(rng.random((T, cfg.network.code_bits[n])) < 0.2).astype(np.uint8) for n in range(K)]
    order = cfg.lpc.order if cfg.lpc.enabled else 0
    pw = cfg.pitch.side_widths
    pitch = np.stack([rng.integers(0, 1 << w, T) for w in pw], 1) if pw else None
    return Frames(num_samples=T * cfg.signal.hop,
                  lsf_idx=rng.integers(0, 1 << cfg.lpc.lsf_bits, (T, order)),
                  gain_idx=rng.integers(0, 1 << cfg.gain.bits, T), codes=codes, pitch=pitch)


CODEBOOKS = train_codebooks(make_frames(T=500, seed=9).codes, CFG)


def side_values(fr: Frames, cfg=CFG) -> np.ndarray:
    return side_columns(fr.lsf_idx, fr.gain_idx, fr.pitch, cfg)


def slow_frames(T, seed):
    """Frames whose side information moves slowly, like real LSFs and gains."""
    fr = make_frames(T=T, seed=seed)
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.integers(-1, 2, side_values(fr).shape) * (rng.random(side_values(fr).shape) < 0.3), 0)
    order = CFG.lpc.order
    fr.lsf_idx = np.clip(3 + walk[:, :order], 0, (1 << CFG.lpc.lsf_bits) - 1)
    fr.gain_idx = np.clip(30 + walk[:, order], 0, (1 << CFG.gain.bits) - 1)
    fr.pitch = np.stack([np.clip(60 + walk[:, order + 1], 0, 255), np.clip(3 + walk[:, order + 2], 0, 7)], 1)
    return fr


SIDE = SideCoder.train([side_values(slow_frames(500, 9))], CFG)


def same(a: Frames, b: Frames, stages=None):
    K = len(a.codes) if stages is None else stages
    return (a.num_samples == b.num_samples and np.array_equal(a.lsf_idx, b.lsf_idx)
            and np.array_equal(a.gain_idx, b.gain_idx) and len(b.codes) == K
            and (a.pitch is None) == (b.pitch is None)
            and (a.pitch is None or np.array_equal(a.pitch, b.pitch))
            and all(np.array_equal(x, y) for x, y in zip(a.codes[:K], b.codes)))


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
@pytest.mark.parametrize("T", [0, 1, 25, 60])
def test_roundtrip(cbs, T):
    fr = make_frames(T=T)
    data = write_stream(fr, CFG, cbs)
    out = read_stream(data, CFG, cbs)
    assert same(fr, out) and not out.lost.any() and (out.stages == CFG.network.stages).all()
    assert out.bad_checks == 0
    info = stream_info(data)
    assert info["frames"] == T and info["huffman"] == (cbs is not None)
    assert info["config_hash"] == CFG.config_hash and info["stages"] == CFG.network.stages


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
@pytest.mark.parametrize("T", [0, 1, 25, 60])
def test_compact_side_roundtrip(cbs, T):
    """Compact side information (a side coder given to the writer: header flag bit 1, one
    delta+Huffman section with a CRC-16 per packet) reads back exactly, is smaller than the
    robust units on slowly moving side values, and cuts like a robust stream."""
    from model.bitstream import FLAG_SIDE_HUFFMAN
    fr = slow_frames(max(T, 1), 4) if T else make_frames(T=0)
    compact = write_stream(fr, CFG, cbs, SIDE)
    robust = write_stream(fr, CFG, cbs)
    info = stream_info(compact)
    assert info["side_huffman"] and info["side_mode"] == "compact" and compact[5] & FLAG_SIDE_HUFFMAN
    assert stream_info(robust)["side_mode"] == "robust" and not robust[5] & FLAG_SIDE_HUFFMAN
    out = read_stream(compact, CFG, cbs, side=SIDE)
    assert same(fr, out) and not out.lost.any() and out.bad_checks == 0
    assert same(fr, read_stream(robust, CFG, cbs, side=SIDE))        # a robust stream needs no side coder
    if T >= 25:
        assert len(compact) < len(robust)
    cut = truncate_stream(compact, 1, CFG)
    fr1 = Frames(fr.num_samples, fr.lsf_idx, fr.gain_idx, fr.codes[:1], pitch=fr.pitch)
    assert cut == write_stream(fr1, CFG, cbs, SIDE)
    assert same(fr, read_stream(cut, CFG, cbs, side=SIDE), stages=1)
    if T:
        with pytest.raises(BitstreamError, match="side codebooks needed"):
            read_stream(compact, CFG, cbs)
        other = SideCoder.train([side_values(slow_frames(300, 5))], CFG)
        with pytest.raises(BitstreamError, match="other codebooks"):
            read_stream(compact, CFG, cbs, side=other)


def _compact_side_blocks(data: bytes, packet: int):
    """[(start, length)] of the compact side blocks of ``packet`` (read from its head)."""
    from model.bitstream import packet_layout, packet_spans
    info = stream_info(data)
    a, _ = packet_spans(data, CFG)[packet]
    lay = packet_layout(CFG, info["stages"], 25, info["huffman"], info["side_block"])
    ls = lay["block_len_bytes"]
    n = len(lay["side_blocks"])
    lens = [int.from_bytes(data[a + lay["head"] - 2 - (n - i) * ls:a + lay["head"] - 2 - (n - i - 1) * ls], "little")
            for i in range(n)]
    assert lay["side"] is None and lay["side_crc"] == n and ls == 1
    assert all(lo <= ln <= hi for ln, (lo, hi) in zip(lens, lay["side_blocks"]))
    assert lay["side_bounds"][0] <= sum(lens) <= lay["side_bounds"][1]
    out, q = [], a + lay["head"]
    for ln in lens:
        out.append((q, ln))
        q += ln + 1
    return out


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
@pytest.mark.parametrize("where", ["first", "middle", "crc", "last"])
def test_damaged_compact_side_block_costs_its_frames_side_only(cbs, where):
    """A bit error in a compact side block of packet 1 (or its CRC-8): that block's frames lose
    their side information (``lost``: the decoder borrows the last good frame's LSFs and pitch
    lag, gain lowered) and keep every stage code; the packet's other blocks and the other
    packets are whole."""
    from model.bitstream import SIDE_BLOCK_FRAMES as B
    fr = slow_frames(75, 6)
    data = write_stream(fr, CFG, cbs, SIDE)
    assert stream_info(data)["side_block"] == B and 25 % B == 0
    blocks = _compact_side_blocks(data, 1)
    j = {"first": 0, "middle": 2, "crc": 1, "last": len(blocks) - 1}[where]
    start, ln = blocks[j]
    at = {"first": start, "middle": start + ln // 2, "crc": start + ln, "last": start + ln - 1}[where]
    d = bytearray(data)
    d[at] ^= 0x08
    out = read_stream(bytes(d), CFG, cbs, side=SIDE)
    assert np.flatnonzero(out.lost).tolist() == list(range(25 + j * B, 25 + (j + 1) * B)) and out.bad_checks == 1
    assert (out.stages == CFG.network.stages).all()
    assert all(np.array_equal(a, b) for a, b in zip(out.codes, fr.codes))        # the stage codes are kept
    keep = ~out.lost
    assert np.array_equal(out.lsf_idx[keep], fr.lsf_idx[keep]) and np.array_equal(out.gain_idx[keep], fr.gain_idx[keep])


@pytest.mark.parametrize("block", [1, 7, 25, 40])
def test_compact_side_blocks_of_any_size_read_back(block):
    """Every side block size (a header field) codes and reads back, a block of one frame being
    the first frame's raw fields; longer blocks code smaller on slowly moving side values."""
    fr = slow_frames(60, 3)
    data = write_stream(fr, CFG, None, SIDE, side_block=block)
    assert stream_info(data)["side_block"] == block
    assert same(fr, read_stream(data, CFG, None, side=SIDE))
    assert same(fr, read_stream(truncate_stream(data, 1, CFG), CFG, None, side=SIDE), stages=1)
    if block > 1:
        assert len(data) < len(write_stream(fr, CFG, None, SIDE, side_block=1))
    for bad in (0, 256, True, 2.0):
        with pytest.raises(BitstreamError, match="side_block"):
            write_stream(fr, CFG, None, SIDE, side_block=bad)


def test_header_side_block_must_match_the_side_mode():
    """A compact stream's header with side_block 0, or a robust one with a block size, is refused
    (with a recomputed header CRC, as a hostile writer makes it)."""
    import struct
    import zlib
    at = struct.calcsize("<4sBBBB8sIIIHB")          # the header's side_block byte (docs/bitstream.md)
    fr = slow_frames(30, 2)
    for side, value in ((SIDE, 0), (None, 5)):
        d = bytearray(write_stream(fr, CFG, None, side))
        d[at] = value
        d[36:40] = zlib.crc32(bytes(d[:36])).to_bytes(4, "little")
        with pytest.raises(BitstreamError, match="side_block"):
            read_stream(bytes(d), CFG, None, side=SIDE)


def test_damaged_compact_head_costs_its_packet_only_when_its_end_is_unknown():
    """A compact stream's packet head holds the side blocks' lengths: a damaged one is corrected
    from where the next packet starts; with the next packet gone too (cut out of the stream),
    the packet's end is unknown and its frames are lost, the others are whole."""
    fr = slow_frames(100, 7)
    data = bytearray(write_stream(fr, CFG, None, SIDE))
    spans = packet_spans(bytes(data), CFG)
    data[spans[1][0] + 8] ^= 0x01                                        # packet 1's first side block length
    assert same(fr, read_stream(bytes(data), CFG, None, side=SIDE))
    cut = bytes(data[:spans[2][0]] + data[spans[3][0]:])
    out = read_stream(cut, CFG, None, side=SIDE)
    assert out.lost[25:75].all() and not out.lost[:25].any() and not out.lost[75:].any()
    assert (out.stages[25:75] == 0).all() and np.array_equal(out.codes[0][75:], fr.codes[0][75:])

def test_slipped_byte_in_a_compact_stream_costs_its_packet():
    fr = slow_frames(100, 8)
    data = write_stream(fr, CFG, None, SIDE)
    from model.bitstream import packet_spans
    a, b = packet_spans(data, CFG)[1]
    for d in (data[:a + 40] + data[a + 41:], data[:a + 40] + b"\x00" + data[a + 40:]):
        out = read_stream(d, CFG, None, side=SIDE)
        ok = np.r_[0:25, 50:100]
        assert not out.lost[ok].any() and np.array_equal(out.lsf_idx[ok], fr.lsf_idx[ok])
        assert all(np.array_equal(x[ok], y[ok]) for x, y in zip(out.codes, fr.codes))


def test_codec_and_cli_side_modes(tiny_codec, tiny_model_path, speech, speech_wav, tmp_path, capsys):
    """``Codec.encode_bytes`` writes compact side information by default and robust units with
    ``robust=True``; ``cascade encode`` likewise (``--robust``), and ``cascade info`` names the mode."""
    import json
    from tests.helpers import run
    assert tiny_codec.side is not None
    x = speech[:8000]
    compact = tiny_codec.encode_bytes(x, "fixed")
    robust = tiny_codec.encode_bytes(x, "fixed", robust=True)
    assert stream_info(compact)["side_mode"] == "compact" and stream_info(robust)["side_mode"] == "robust"
    fc, fr_ = tiny_codec.decode_bytes(compact, "fixed")[1], tiny_codec.decode_bytes(robust, "fixed")[1]
    assert same(fc, fr_)
    for flag, mode in (((), "compact"), (("--robust",), "robust")):
        out = tmp_path / f"{mode}.cas"
        rc, o, _ = run(capsys, "encode", speech_wav, out, "--model", tiny_model_path, *flag)
        assert rc == 0 and f"{mode} side information" in o
        rc, o, _ = run(capsys, "info", out)
        assert rc == 0 and json.loads(o)["side_mode"] == mode


def test_lpc_disabled_and_fewer_stages():
    cfg = CFG.replace(lpc={"enabled": False})
    fr = make_frames(cfg, stages=1)
    assert fr.lsf_idx.shape == (60, 0)
    out = read_stream(write_stream(fr, cfg, None), cfg, None)
    assert same(fr, out) and out.lsf_idx.shape == (60, 0)


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
def test_truncate_equals_first_stages(cbs):
    fr = make_frames()
    data = write_stream(fr, CFG, cbs)
    cut = truncate_stream(data, 1, CFG)
    assert len(cut) < len(data) and stream_info(cut)["stages"] == 1
    assert same(fr, read_stream(cut, CFG, cbs), stages=1)
    fr1 = Frames(fr.num_samples, fr.lsf_idx, fr.gain_idx, fr.codes[:1], pitch=fr.pitch)
    assert cut == write_stream(fr1, CFG, cbs)                               # as if written with K=1
    with pytest.raises(BitstreamError):
        truncate_stream(data, 3, CFG)


def test_header_errors():
    data = write_stream(make_frames(), CFG, CODEBOOKS)
    bad = [b"", b"CAS", b"RIFF" + data[4:], data[:4] + b"\x09" + data[5:], data[:HEADER_SIZE - 1],
           data[:20] + bytes([data[20] ^ 1]) + data[21:]]
    for d in bad:
        with pytest.raises(BitstreamError) as e:
            read_stream(d, CFG, CODEBOOKS)
        assert "\n" not in str(e.value)
    with pytest.raises(BitstreamError, match="made for codec"):
        read_stream(data, CFG.replace(gain={"bits": 7}), CODEBOOKS)
    with pytest.raises(BitstreamError, match="codebooks needed"):
        read_stream(data, CFG, None)
    other = train_codebooks(make_frames(T=300, seed=4).codes, CFG)
    with pytest.raises(BitstreamError, match="other codebooks"):
        read_stream(data, CFG, other)


def _layout(data: bytes):
    """(packet spans, head bytes, side bytes, [stage section bytes + CRC-8]) of a good stream's
    first packet (tiny config, 25 frames)."""
    from model.bitstream import packet_layout, packet_spans
    info = stream_info(data)
    lay = packet_layout(CFG, info["stages"], 25, info["huffman"])
    assert lay["sections"][0][0] == lay["sections"][0][1] or info["huffman"]
    return packet_spans(data, CFG), lay


def _section_start(data: bytes, packet: int, stage: int) -> int:
    """Where stage ``stage``'s section of ``packet`` starts (from the packet head's lengths)."""
    import struct
    from model.bitstream import packet_spans
    info = stream_info(data)
    a, _ = packet_spans(data, CFG)[packet]
    K, huff = info["stages"], info["huffman"]
    nfr = min(25, info["frames"] - 25 * packet)
    from model.bitstream import packet_layout
    lay = packet_layout(CFG, K, nfr, huff)
    lens = struct.unpack_from(f"<{K}H", data, a + 8) if huff else [lo for lo, _ in lay["sections"]]
    return a + lay["head"] + lay["side"] + sum(ln + 1 for ln in lens[:stage])


def test_crc_definitions():
    """The checks are the standard CRC-8/SMBUS and CRC-16/CCITT-FALSE (check values of "123456789")."""
    from model.bitstream import crc8, crc16
    assert crc8(b"123456789") == 0xF4 and crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
def test_damaged_side_unit_costs_only_its_frame(cbs):
    """A bit error in frame j's side unit loses frame j's side information only: every other frame
    and every stage code (frame j's too) reads back exactly."""
    fr = make_frames(T=75)
    data = write_stream(fr, CFG, cbs)
    spans, lay = _layout(data)
    for packet, j in ((0, 0), (0, 7), (1, 24), (2, 3)):
        bit = j * lay["unit_bits"] + 5                            # a bit of frame j's unit
        d = bytearray(data)
        d[spans[packet][0] + lay["head"] + bit // 8] ^= 0x80 >> (bit % 8)
        out = read_stream(bytes(d), CFG, cbs)
        t = 25 * packet + j
        assert np.flatnonzero(out.lost).tolist() == [t] and out.bad_checks == 1
        assert (out.stages == CFG.network.stages).all()
        keep = np.arange(75) != t
        assert np.array_equal(out.gain_idx[keep], fr.gain_idx[keep]) and np.array_equal(out.lsf_idx[keep], fr.lsf_idx[keep])
        assert all(np.array_equal(a, b) for a, b in zip(out.codes, fr.codes))
        with pytest.raises(BitstreamError, match="damaged"):
            read_stream(bytes(d), CFG, cbs, conceal=False)


@pytest.mark.parametrize("stage", [0, 1])
def test_damaged_huffman_section_keeps_the_stages_before_it(stage):
    """A bit error in stage section k of a Huffman packet: the packet's frames keep stages
    1..k-1 (bit for bit) and lose k..K; no frame is lost and the other packets are whole."""
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, CODEBOOKS))
    data[_section_start(bytes(data), 1, stage) + 1] ^= 0x04
    out = read_stream(bytes(data), CFG, CODEBOOKS)
    assert not out.lost.any() and out.bad_checks >= 1
    assert (out.stages[25:50] == stage).all() and (out.stages[:25] == 2).all() and (out.stages[50:] == 2).all()
    for n in range(2):
        rows = np.r_[0:25, 50:75] if n >= stage else np.arange(75)
        assert np.array_equal(out.codes[n][rows], fr.codes[n][rows])
        if n >= stage:
            assert not out.codes[n][25:50].any()
    assert np.array_equal(out.gain_idx, fr.gain_idx) and np.array_equal(out.pitch, fr.pitch)


def test_damaged_section_decodes_as_a_clean_decode_with_fewer_stages():
    """The decoder core runs stages 1..stages[t] per frame: the frames of a packet whose stage-k
    section is damaged are bit-identical to a clean decode with k-1 stages (the golden model,
    i.e. the hardware's arithmetic), the others to the clean decode with all stages."""
    from model import golden
    im = golden.random_model(CFG, seed=3)
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, CODEBOOKS))
    data[_section_start(bytes(data), 2, 1) + 2] ^= 0x40          # packet 2 (frames 50..74), stage 2 of 2
    out = read_stream(bytes(data), CFG, CODEBOOKS)
    y = golden.decode(im, out.codes, frame_stages=out.stages)
    clean_k1 = golden.decode(im, fr.codes[:1])
    clean = golden.decode(im, fr.codes)
    assert np.array_equal(y[50:], clean_k1[50:]) and np.array_equal(y[:50], clean[:50])
    assert not np.array_equal(clean[50:], clean_k1[50:])


def test_damaged_raw_section_keeps_its_bits_or_drops_them():
    """A raw section's bit error moves no other bit: by default (``raw_damage="use"``) the
    section is kept and only the flipped code bit differs; ``"drop"`` drops the stage and the
    ones after it for the packet's frames, as for Huffman."""
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, None))
    at = _section_start(bytes(data), 0, 0) + 3
    data[at] ^= 0x01
    out = read_stream(bytes(data), CFG, None)
    assert not out.lost.any() and (out.stages == 2).all() and out.bad_checks == 1
    diff = out.codes[0] != fr.codes[0]
    assert diff.sum() == 1 and np.array_equal(out.codes[1], fr.codes[1])
    drop = read_stream(bytes(data), CFG, None, raw_damage="drop")
    assert (drop.stages[:25] == 0).all() and (drop.stages[25:] == 2).all() and not drop.lost.any()
    with pytest.raises(BitstreamError, match="damaged"):
        read_stream(bytes(data), CFG, None, conceal=False)


_HEAD_CASES = [(c, sd, w) for c in ("raw", "huffman") for sd in ("robust", "compact")
               for w in ("index", "length", "crc") if not (w == "length" and c == "raw" and sd == "robust")]


@pytest.mark.parametrize("cbs,side,where", [({"raw": None, "huffman": CODEBOOKS}[c], {"robust": None, "compact": SIDE}[sd], w)
                                            for c, sd, w in _HEAD_CASES], ids=["-".join(x) for x in _HEAD_CASES])
def test_damaged_packet_head_is_recovered_from_its_place(cbs, side, where):
    """A bit error in a packet head: the head is recovered from its place (the packet starts where
    the one before ended, the header's frame count gives its frames, the next packet's good head
    where it ends), nothing is lost.  A raw stream with robust side units has no lengths in its
    heads; the lengths of a Huffman or compact head are read from it, and a damaged length is
    corrected by the bytes the packet spans (the unit it sizes then passes its check)."""
    fr = slow_frames(75, 11)
    data = bytearray(write_stream(fr, CFG, cbs, side))
    a, b = packet_spans(bytes(data), CFG)[1]
    at = {"index": a + 5, "length": a + 8, "crc": None}[where]
    if at is None:
        from model.bitstream import packet_layout
        at = a + packet_layout(CFG, len(fr.codes), 25, cbs is not None, stream_info(bytes(data))["side_block"])["head"] - 1
    data[at] ^= 0x04
    out = read_stream(bytes(data), CFG, cbs, side=side)
    assert same(fr, out) and not out.lost.any() and out.bad_checks == 1 and (out.stages == len(fr.codes)).all()
    with pytest.raises(BitstreamError, match="damaged"):
        read_stream(bytes(data), CFG, cbs, side=side, conceal=False)


@pytest.mark.parametrize("side", [None, SIDE], ids=["robust", "compact"])
def test_damaged_head_and_the_packet_after_it_cost_their_packets(side):
    """A damaged head is recovered only where the packet after it is found (a good head of the
    next index): with the heads of packets 1 and 2 of a Huffman stream damaged, packet 1's end is
    unknown and both are lost; the others are whole."""
    fr = slow_frames(125, 12)
    data = bytearray(write_stream(fr, CFG, CODEBOOKS, side))
    spans = packet_spans(bytes(data), CFG)
    data[spans[1][0] + 5] ^= 0x01
    data[spans[2][0] + 5] ^= 0x01
    out = read_stream(bytes(data), CFG, CODEBOOKS, side=side)
    assert out.lost[25:75].all() and not out.lost[:25].any() and not out.lost[75:].any()
    assert np.array_equal(out.codes[0][75:], fr.codes[0][75:])


def test_version_2_streams_are_refused_in_one_line():
    """Format version 2 (one CRC-32 per packet, Huffman side information) is refused clearly."""
    import struct
    import zlib
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    head = bytearray(good[:36])
    head[4] = 2
    old = bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + good[HEADER_SIZE:]
    for fn in (lambda: read_stream(old, CFG, CODEBOOKS), lambda: stream_info(old), lambda: truncate_stream(old, 1, CFG)):
        with pytest.raises(BitstreamError, match="version 2.*re-encode") as e:
            fn()
        assert "\n" not in str(e.value)


def test_truncated_stream():
    data = write_stream(make_frames(T=75), CFG, CODEBOOKS)
    out = read_stream(data[:-3], CFG, CODEBOOKS)                              # last packet cut
    assert out.lost[50:].all() and not out.lost[:50].any()
    with pytest.raises(BitstreamError):
        read_stream(data[:-3], CFG, CODEBOOKS, conceal=False)
    with pytest.raises(BitstreamError, match="truncated"):
        read_stream(data[:HEADER_SIZE + 10], CFG, CODEBOOKS)


def _check(data, cbs, side=None):
    FUZZ_COUNT["n"] += 1
    for conceal in (True, False):
        try:
            out = read_stream(data, CFG, cbs, conceal=conceal, side=side)
        except BitstreamError as e:
            assert "\n" not in str(e)
            continue
        T = out.gain_idx.shape[0]
        assert out.lost.shape == (T,) and out.stages.shape == (T,) and all(c.shape[0] == T for c in out.codes)
        assert ((out.stages >= 0) & (out.stages <= len(out.codes))).all()
    for fn in (lambda: stream_info(data), lambda: truncate_stream(data, 1, CFG)):
        try:
            fn()
        except BitstreamError:
            pass


GOOD = {None: write_stream(make_frames(T=60), CFG, None),
        "h": write_stream(make_frames(T=60), CFG, CODEBOOKS),
        "hs": write_stream(make_frames(T=60), CFG, CODEBOOKS, SIDE)}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    """Random bytes, with and without a valid-looking start: only BitstreamError escapes."""
    _check(data, CODEBOOKS)
    _check(GOOD["h"][:HEADER_SIZE] + data, CODEBOOKS)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([None, "h", "hs"]),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=6),
       st.integers(0, 10**6), st.booleans())
def test_fuzz_mutated_streams(which, flips, cut, do_cut):
    """Bit flips and truncations of good streams (raw and Huffman): only BitstreamError escapes,
    and the side information of every frame not marked lost reads back unchanged, except where
    two or more flips hit one frame's check: a compact side block's CRC-8 covers about 340 bits,
    more than an 8-bit check can guard against every 2-bit error (it catches every 1-bit error and
    all but about 1 in 256 heavier ones; docs/bitstream.md), so a frame that two of the flips
    each make lost on their own is not judged.  Inputs tried per run: see FUZZ_COUNT (about 1,000
    with 300 + 2 x 400 examples, plus the two _check calls per random-bytes example)."""
    good = GOOD[which]
    cbs = CODEBOOKS if which else None
    side = SIDE if which == "hs" else None
    d = bytearray(good)
    for pos, bit in flips:
        d[pos % len(d)] ^= 1 << bit
    if do_cut:
        d = d[:cut % (len(d) + 1)]
    _check(bytes(d), cbs, side)
    try:
        out = read_stream(bytes(d), CFG, cbs, side=side)
    except BitstreamError:
        return
    ref = make_frames(T=60)
    hits = np.zeros(len(ref.gain_idx), int)     # per frame: how many single flips make it lost
    for pos, bit in flips:
        one = bytearray(good)
        one[pos % len(one)] ^= 1 << bit
        try:
            hits += read_stream(bytes(one), CFG, cbs, side=side).lost
        except BitstreamError:
            hits += 1
    ok = ~out.lost & (hits < 2)
    assert np.array_equal(out.gain_idx[ok], ref.gain_idx[ok]) and np.array_equal(out.lsf_idx[ok], ref.lsf_idx[ok])


def test_fuzz_count_reported():
    # runs after the fuzz tests in file order; 2*300 + 400 = 1000 inputs when run together
    if FUZZ_COUNT["n"]:
        print(f"fuzzed read_stream with {FUZZ_COUNT['n']} inputs")
        assert FUZZ_COUNT["n"] >= 100


def _with_header(data: bytes, **fields) -> bytes:
    """``data`` with some header fields changed and the header CRC recomputed (a header a
    hostile writer made, not a damaged one)."""
    from model.bitstream import _make_header, _parse_header
    h = dict(_parse_header(data), **fields)
    return _make_header(h) + data[HEADER_SIZE:]


def test_header_frames_must_fit_samples():
    """A header that claims many frames for few samples (or the reverse) is refused before any
    frame is allocated: the frames a stream can make are bounded by its size."""
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    hop = CFG.signal.hop
    for frames, samples in ((60, 60 * hop + 1), (60, 57 * hop), (10 ** 6, 60 * hop), (60, 10 ** 9)):
        with pytest.raises(BitstreamError):
            read_stream(_with_header(good, frames=frames, samples=samples), CFG, CODEBOOKS)
    out = read_stream(_with_header(good, samples=59 * hop), CFG, CODEBOOKS)     # within the rule
    assert out.num_samples == 59 * hop and not out.lost.any()


def test_stray_bytes_are_counted_and_refused_when_strict():
    """Garbage between packets is skipped and counted (refused with conceal=False); bytes after an
    intact last packet are refused in both modes, as truncate_stream refuses them."""
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    assert read_stream(good, CFG, CODEBOOKS).stray_bytes == 0
    first = _packet_ends(good)[0]
    between = good[:first] + b"garbage between!" + good[first:]
    out = read_stream(between, CFG, CODEBOOKS)
    assert out.stray_bytes == 16 and not out.lost.any()
    with pytest.raises(BitstreamError, match="damaged|stray"):
        read_stream(between, CFG, CODEBOOKS, conceal=False)
    for conceal in (True, False):
        with pytest.raises(BitstreamError, match="stray"):
            read_stream(good + b"trailing garbage", CFG, CODEBOOKS, conceal=conceal)
    with pytest.raises(BitstreamError, match="stray"):
        truncate_stream(good + b"trailing garbage", 1, CFG)


def _packet_ends(data: bytes) -> list[int]:
    """Byte offsets where each packet of a good stream ends."""
    from model.bitstream import packet_spans
    return [b for _, b in packet_spans(data, CFG)]


# ---- hostile headers (issue 19): every field bounded before anything is allocated -----------------
def _raw_header(data: bytes, **fields) -> bytes:
    """``data`` with header fields set by byte layout (also impossible ones) and the CRC recomputed."""
    import struct
    import zlib
    offsets = {"flags": (5, "B"), "K": (6, "B"), "N": (7, "B"), "rate": (16, "I"), "frames": (20, "I"),
               "samples": (24, "I"), "packet_frames": (28, "H"), "symbol_bits": (30, "B"), "reserved": (31, "B")}
    head = bytearray(data[:36])
    for name, v in fields.items():
        off, fmt = offsets[name]
        struct.pack_into("<" + fmt, head, off, v)
    return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + data[HEADER_SIZE:]


HOSTILE_HEADERS = {
    "K=0": dict(K=0), "K>N": dict(K=3), "N=0": dict(N=0, K=0), "N above the limit": dict(N=65, K=65),
    "packet_frames=0": dict(packet_frames=0), "other packet_frames": dict(packet_frames=24),
    "symbol_bits=0": dict(symbol_bits=0), "symbol_bits=17": dict(symbol_bits=17),
    "other symbol_bits": dict(symbol_bits=4), "rate=0": dict(rate=0), "rate 8000": dict(rate=8000),
    "rate above the limit": dict(rate=10 ** 9), "unknown flag": dict(flags=0x83), "reserved": dict(reserved=1),
    "version 2 side Huffman flag": dict(flags=0x03),
    "samples without frames": dict(frames=0), "frames without samples": dict(samples=0),
    "frames beyond the file": dict(frames=10 ** 7, samples=10 ** 7 * 64),
    "max frames": dict(frames=(1 << 32) - 1, samples=(1 << 32) - 1),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_hostile_header_is_one_clear_error(name):
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    bad = _raw_header(good, **HOSTILE_HEADERS[name])
    for fn in (lambda: read_stream(bad, CFG, CODEBOOKS), lambda: read_stream(bad, CFG, CODEBOOKS, conceal=False),
               lambda: truncate_stream(bad, 1, CFG)):
        with pytest.raises(BitstreamError) as e:
            fn()
        assert "\n" not in str(e.value)


def test_header_with_k_zero_is_refused_by_info_too():
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    with pytest.raises(BitstreamError, match="K = 0"):
        stream_info(_raw_header(good, K=0))


def _most_frames_the_size_allows(data: bytes) -> int:
    """The largest frame count whose smallest stream (``_min_stream_size``) fits ``data``."""
    from model.bitstream import _min_stream_size, _parse_header
    h = _parse_header(data)
    lo, hi = h["frames"], 1 << 31
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _min_stream_size(dict(h, frames=mid), CFG, h["huffman"]) <= len(data):
            lo = mid
        else:
            hi = mid - 1
    return lo


def test_header_claiming_the_most_frames_the_file_allows_is_refused():
    """The packets must hold the frames (issue 19: 1 MB decoded to 4.5 GB of concealed silence):
    a header whose frame count the file's size allows but its packets do not hold is refused
    before arrays of that size exist."""
    import tracemalloc
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    big = good + bytes(100_000)                      # room for many frames by size alone
    T = _most_frames_the_size_allows(big)
    assert T > 100 * 60
    hostile = _with_header(big, frames=T, samples=T * CFG.signal.hop)
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match="claims"):
            read_stream(hostile, CFG, CODEBOOKS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(hostile), peak
    # the same with every packet after the first replaced by zeros
    first = _packet_ends(good)[0]
    zeros = _with_header(good[:first] + bytes(len(good) - first), frames=60, samples=60 * CFG.signal.hop)
    with pytest.raises(BitstreamError, match="claims"):
        read_stream(zeros, CFG, CODEBOOKS)


def test_header_with_fewer_frames_than_the_packets_hold_is_refused():
    """A frame count cut to whole packets (50 of 60) or inside one (55): not a silent drop."""
    good = write_stream(make_frames(T=60), CFG, CODEBOOKS)
    hop = CFG.signal.hop
    for T in (50, 55, 25):
        bad = _with_header(good, frames=T, samples=T * hop)
        with pytest.raises(BitstreamError, match="claims|stray"):
            read_stream(bad, CFG, CODEBOOKS)
        with pytest.raises(BitstreamError):
            truncate_stream(bad, 1, CFG)
    bad = _with_header(good, frames=70, samples=70 * hop)             # more than the packets hold
    with pytest.raises(BitstreamError, match="claims"):
        read_stream(bad, CFG, CODEBOOKS)


def test_damaged_packets_still_count_as_held():
    """A stream whose packets are all damaged in their data (heads readable) is concealed, not
    refused: each packet's last stage section is dropped, its frames keep the stages before it."""
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, CODEBOOKS))
    ends = _packet_ends(bytes(data))
    for b in ends:
        data[b - 3] ^= 0x01                                          # inside each packet's last section
    out = read_stream(bytes(data), CFG, CODEBOOKS)
    assert (out.stages == 1).all() and not out.lost.any() and out.gain_idx.shape == (75,)
    short = read_stream(bytes(data[:-3]), CFG, CODEBOOKS)              # the last packet cut short
    assert short.lost[50:].all() and (short.stages[50:] == 0).all()


def test_packet_lengths_are_bounded():
    """A packet that declares a section longer than its frames can code to is no packet (even with
    a good head CRC, as a hostile writer makes it): the reader never checksums more than a fixed
    size per candidate sync word."""
    import struct
    from model.bitstream import crc16, packet_bounds
    (slo, shi), secs = packet_bounds(CFG, 2, 25, True)
    assert 0 < slo == shi < 65536 and all(0 < lo <= hi < 65536 for lo, hi in secs)
    (slo, shi), secs = packet_bounds(CFG, 2, 25, False)
    assert slo == shi and all(lo == hi for lo, hi in secs)
    good = bytearray(write_stream(make_frames(T=60), CFG, CODEBOOKS))
    at = HEADER_SIZE
    good[at + 8:at + 10] = (65535).to_bytes(2, "little")              # packet 0, stage 0 length
    good[at + 12:at + 14] = struct.pack("<H", crc16(bytes(good[at:at + 12])))
    from model.bitstream import _scan_packet
    assert _scan_packet(bytes(good), at, 2, CFG, 25, True) is None     # a length out of bounds: no packet here
    out = read_stream(bytes(good), CFG, CODEBOOKS)                    # recovered from its place
    assert not out.lost.any() and out.bad_checks == 1


def test_limits_table_in_the_docs_is_the_code_table():
    """docs/bitstream.md quotes bitstream.LIMITS row by row (the one table of the format limits)."""
    import re
    from pathlib import Path
    from model.bitstream import LIMITS
    text = (Path(__file__).resolve().parent.parent / "docs" / "bitstream.md").read_text()
    section = text[text.index("## Limits"):text.index("## Errors and concealment")]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([0-9.]+) \|", section, re.M))
    assert rows == {k: str(v) for k, v in LIMITS.items()}


@pytest.mark.parametrize("arith", ["float", "fixed"])
def test_codec_decodes_each_frame_with_its_usable_stages(tiny_codec, speech, arith):
    """``Codec.decode`` of a Huffman stream whose packet-0 stage-2 section is damaged: those
    frames' decoded frames are bit-identical to a clean decode with 1 stage, the rest to the clean
    decode with 2; the speech decodes (finite, full length)."""
    c = tiny_codec
    fr = c.encode(speech[:16000], arith)
    data = bytearray(write_stream(fr, c.cfg, c.codebooks))
    data[_section_start(bytes(data), 0, 1) + 1] ^= 0x20
    out = read_stream(bytes(data), c.cfg, c.codebooks)
    assert (out.stages[:25] == 1).all() and (out.stages[25:] == 2).all() and not out.lost.any()
    y = c.decode_frames(out.codes, arith, out.stages)
    assert np.array_equal(y[:25], c.decode_frames(fr.codes[:1], arith)[:25])
    assert np.array_equal(y[25:], c.decode_frames(fr.codes, arith)[25:])
    pcm = c.decode(out, arith)
    assert pcm.shape == c.decode(fr, arith).shape and np.isfinite(pcm).all()


def test_damage_channels():
    """model.damage: a damaged packet has exactly one flipped bit inside it; random bit errors
    never touch the header and come at about their rate."""
    from model.damage import damage_bits, damage_packets
    rng = np.random.default_rng(0)
    streams = [bytes(1000), bytes(600)]
    spans = [[(40, 500), (500, 1000)], [(40, 600)]]
    out = damage_packets(streams, spans, 1.0, rng)
    for s, sp in zip(out, spans):
        bits = np.unpackbits(np.frombuffer(s, np.uint8))
        assert all(bits[8 * a:8 * b].sum() == 1 for a, b in sp) and not bits[:8 * 40].any()
    assert sum(np.unpackbits(np.frombuffer(s, np.uint8)).sum() for s in damage_packets(streams, spans, 0.5, rng)) in (1, 2)
    hit = damage_bits(bytes(10_040), 0.01, 40, rng)
    bits = np.unpackbits(np.frombuffer(hit, np.uint8))
    assert not bits[:320].any() and 650 < bits.sum() < 950


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
def test_slipped_bytes_cost_the_packet_they_are_in(cbs):
    """A byte lost or added inside a packet (a slip, not a bit error) damages that packet's
    sections; the packet after it is still found (the reader looks for its sync word from inside
    the damaged packet), and bytes added to a damaged last packet are not refused as trailing."""
    fr = make_frames(T=75)
    data = write_stream(fr, CFG, cbs)
    spans = [a for a, _ in _layout(data)[0]]
    at = _section_start(data, 0, 1) + 2
    lost_one = data[:at] + data[at + 1:]
    out = read_stream(lost_one, CFG, cbs)
    assert (out.stages[25:] == 2).all() and not out.lost[25:].any()
    assert np.array_equal(out.codes[1][25:], fr.codes[1][25:]) and np.array_equal(out.gain_idx[25:], fr.gain_idx[25:])
    at = _section_start(data, 2, 1) + 2
    added = data[:at] + b"\x55" + data[at:]
    out = read_stream(added, CFG, cbs)
    assert (out.stages[:50] == 2).all() and out.bad_checks >= 1 and spans[2] < len(added)
    with pytest.raises(BitstreamError):
        read_stream(added, CFG, cbs, conceal=False)
