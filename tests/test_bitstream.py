"""The CASC bitstream (model/bitstream.py): round trips, truncation, robustness, fuzzing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from model.bitstream import (HEADER_SIZE, BitstreamError, Frames, SideCoder, read_stream, side_columns,
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
    assert same(fr, out) and not out.lost.any()
    info = stream_info(data)
    assert info["frames"] == T and info["huffman"] == (cbs is not None)
    assert info["config_hash"] == CFG.config_hash and info["stages"] == CFG.network.stages


@pytest.mark.parametrize("T", [1, 25, 60])
def test_side_information_huffman(T):
    """Delta + Huffman coded side information: exact round trip, cut to fewer stages, smaller than
    raw on slowly moving values, and refused without its codebooks."""
    fr = slow_frames(T, 4)
    raw = write_stream(fr, CFG, CODEBOOKS)
    coded = write_stream(fr, CFG, CODEBOOKS, SIDE)
    assert same(fr, read_stream(coded, CFG, CODEBOOKS, side=SIDE))
    assert stream_info(coded)["side_huffman"] and not stream_info(raw)["side_huffman"]
    cut = truncate_stream(coded, 1, CFG)
    assert same(fr, read_stream(cut, CFG, CODEBOOKS, side=SIDE), stages=1)
    if T >= 25:
        assert len(coded) < len(raw)
    with pytest.raises(BitstreamError):
        read_stream(coded, CFG, CODEBOOKS)
    other = SideCoder.train([side_values(make_frames(T=200, seed=1))], CFG)
    with pytest.raises(BitstreamError):
        read_stream(coded, CFG, CODEBOOKS, side=other)


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


@pytest.mark.parametrize("cbs", [None, CODEBOOKS], ids=["raw", "huffman"])
def test_damaged_packet_is_concealed(cbs):
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, cbs))
    data[HEADER_SIZE + 30] ^= 0x10                                           # inside packet 0
    out = read_stream(bytes(data), CFG, cbs)
    assert out.lost[:25].all() and not out.lost[25:].any()
    assert not out.codes[0][:25].any() and np.array_equal(out.codes[0][25:], fr.codes[0][25:])
    with pytest.raises(BitstreamError, match="damaged"):
        read_stream(bytes(data), CFG, cbs, conceal=False)


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
        assert out.lost.shape == (T,) and all(c.shape[0] == T for c in out.codes)
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
    and frames outside damaged packets decode unchanged.  Inputs tried per run: see FUZZ_COUNT
    (about 1,000 with 300 + 2 x 400 examples, plus the two _check calls per random-bytes example)."""
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
    ok = ~out.lost
    assert np.array_equal(out.codes[0][ok], ref.codes[0][ok])
    assert np.array_equal(out.gain_idx[ok], ref.gain_idx[ok])


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
    from model.bitstream import _scan_packet
    h = stream_info(data)
    pos, ends = HEADER_SIZE, []
    for _ in range(h["packets"]):
        pkt = _scan_packet(data, pos, h["stages"], CFG, h["packet_frames"], h["huffman"], h["side_huffman"])
        assert pkt[0] == "intact"
        pos = pkt[-1]
        ends.append(pos)
    return ends


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
    """A stream whose packets are all damaged in their data (headers readable) is concealed, not
    refused: only frames in no packet at all count against the header."""
    fr = make_frames(T=75)
    data = bytearray(write_stream(fr, CFG, CODEBOOKS))
    ends = [HEADER_SIZE] + _packet_ends(bytes(data))
    for a, b in zip(ends, ends[1:]):
        data[b - 6] ^= 0x01                                          # inside each packet's last section
    out = read_stream(bytes(data), CFG, CODEBOOKS)
    assert out.lost.all() and out.gain_idx.shape == (75,)


def test_packet_lengths_are_bounded():
    """A packet that declares a section longer than its frames can code to is no packet: the reader
    never checksums more than a fixed size per candidate sync word."""
    from model.bitstream import packet_bounds
    (slo, shi), secs = packet_bounds(CFG, 2, 25, True, True)
    assert 0 < slo <= shi < 65536 and all(0 < lo <= hi < 65536 for lo, hi in secs)
    (slo, shi), secs = packet_bounds(CFG, 2, 25, False, False)
    assert slo == shi and all(lo == hi for lo, hi in secs)
    good = bytearray(write_stream(make_frames(T=60), CFG, CODEBOOKS))
    good[HEADER_SIZE + 8:HEADER_SIZE + 10] = (65535).to_bytes(2, "little")   # packet 0, stage 0 length
    out = read_stream(bytes(good), CFG, CODEBOOKS)
    assert out.lost[:25].all() and not out.lost[25:].any()


def test_limits_table_in_the_docs_is_the_code_table():
    """docs/bitstream.md quotes bitstream.LIMITS row by row (the one table of the format limits)."""
    import re
    from pathlib import Path
    from model.bitstream import LIMITS
    text = (Path(__file__).resolve().parent.parent / "docs" / "bitstream.md").read_text()
    section = text[text.index("## Limits"):text.index("## Errors and concealment")]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([0-9.]+) \|", section, re.M))
    assert rows == {k: str(v) for k, v in LIMITS.items()}
