"""Fuzzing the stream reader and the decoder (issue 19 item 6) with real streams.

The streams are the shipped default model's encodings of held-out real speech (full, and cut to
fewer stages with ``truncate_stream``).  Hypothesis mutates them: bit flips, byte overwrites,
insertions and deletions, truncation, header fields rewritten with a valid header CRC (a hostile
writer, not noise), splices of two streams and repeated or dropped packets.  Every mutated stream
must be read, described (``stream_info``), cut (``truncate_stream``) and decoded (``Codec.decode``)
or refused with a ``CascadeError`` (``BitstreamError``): no other exception, and what is allocated
is bounded by the input (at most :data:`FRAMES_PER_BYTE` frames per byte, ``hop`` samples per
frame), which bounds memory and time.

The default run is CI-sized (a few hundred streams, under 30 s).  The long run is marked
``fuzz`` and deselected by default::

    CASCADE_FUZZ_EXAMPLES=100000 python -m pytest -m fuzz tests/test_fuzz.py -s

(it prints the number of streams tried and the largest frames-per-byte seen, and appends its
progress every 10,000 streams to the file ``CASCADE_FUZZ_LOG`` names, if set; docs/RESULTS.md,
Robustness, records a run).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import model.bitstream as bs
from model.bitstream import HEADER_SIZE, BitstreamError, read_stream, stream_info, truncate_stream
from model.errors import CascadeError
from tests.helpers import run

#: No accepted stream holds more frames than this many per byte of input (a frame costs at
#: least one bit per stage section and per side field, and a packet its head and CRC).
FRAMES_PER_BYTE = 8

#: held-out real speech (the test split's recording, as tests/conftest.py)
TEST_WAV = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav")
SR = 16000

STATS = {"streams": 0, "read": 0, "refused": 0, "decoded": 0, "max_frames_per_byte": 0.0}


@functools.lru_cache(maxsize=1)
def _codec():
    from model.codec import Codec
    return Codec.load(None)                                  # the shipped default model


@functools.lru_cache(maxsize=1)
def streams() -> tuple[bytes, ...]:
    """Real streams of the default model: 0.6 s and 0.3 s of held-out speech, all stages, and
    the first cut to 3 and 1 stages, with compact side information (the default); then the
    0.6 s with robust side units (``robust=True``), all stages and cut to 1."""
    from model.data import load_wav
    if not TEST_WAV.is_file():
        pytest.skip(f"{TEST_WAV} missing (apt-get install pocketsphinx-testdata)")
    codec = _codec()
    x = load_wav(TEST_WAV, SR)
    a = codec.encode_bytes(x[int(0.5 * SR): int(1.1 * SR)], "fixed")
    b = codec.encode_bytes(x[int(1.5 * SR): int(1.8 * SR)], "fixed")
    r = codec.encode_bytes(x[int(0.5 * SR): int(1.1 * SR)], "fixed", robust=True)
    return (a, b, truncate_stream(a, 3, codec.cfg), truncate_stream(a, 1, codec.cfg), r,
            truncate_stream(r, 1, codec.cfg))


#: the indexes of ``streams()``
NSTREAMS = 6


# ---------------------------------------------------------------- mutations

def _spans(data: bytes):
    try:
        return bs.packet_spans(data, _codec().cfg)
    except (BitstreamError, AttributeError):
        return []


def _hostile_header(data: bytes, field: str, value: int) -> bytes:
    """``data`` with one header field set to ``value`` and the header CRC made valid again."""
    parse, make = getattr(bs, "_parse_header", None), getattr(bs, "_make_header", None)
    try:
        h = parse(data)
        h[field] = type(h[field])(value) if not isinstance(h[field], str) else h[field]
        return make(h) + data[HEADER_SIZE:]
    except Exception:            # a field the layout no longer has, a value struct cannot pack
        return data


_FIELDS = ["stages", "codec_stages", "sample_rate", "frames", "samples", "packet_frames",
           "symbol_bits", "codebooks_id", "huffman", "side_huffman"]
_VALUES = st.one_of(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 10, 15, 16, 31, 50, 63, 64, 65, 255, 256,
                                     16000, 65535, 65536, 2**31 - 1, 2**32 - 1]),
                    st.integers(0, 2**32 - 1))

_OPS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("head"), st.integers(0, HEADER_SIZE - 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("field"), st.sampled_from(_FIELDS), _VALUES),
    st.tuples(st.just("splice"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("packet"), st.integers(0, 10**3), st.sampled_from(["drop", "repeat", "swap"])),
)


def mutate(base: bytes, other: bytes, ops) -> bytes:
    d = bytearray(base)
    for op, a, b in ops:
        n = len(d)
        if op == "flip" and n:
            d[a % n] ^= 1 << b
        elif op in ("set", "head") and n:
            d[a % n] = b
        elif op == "insert":
            i = a % (n + 1)
            d[i:i] = b
        elif op == "delete" and n:
            i = a % n
            del d[i:i + b]
        elif op == "cut":
            d = d[:a % (n + 1)]
        elif op == "field":
            d = bytearray(_hostile_header(bytes(d), a, b))
        elif op == "splice":            # a prefix of this stream, the rest of the other one
            d = d[:a % (n + 1)] + other[b % (len(other) + 1):]
        elif op == "packet":
            sp = _spans(bytes(d))
            if sp:
                s, e = sp[a % len(sp)]
                if b == "drop":
                    del d[s:e]
                elif b == "repeat":
                    d[e:e] = d[s:e]
                elif len(sp) > 1:       # swap with the next packet
                    s2, e2 = sp[(a + 1) % len(sp)]
                    if s2 > s:
                        d = d[:s] + d[s2:e2] + d[e:s2] + d[s:e] + d[e2:]
    return bytes(d)


# ---------------------------------------------------------------- the target

def check_stream(data: bytes, decode: bool) -> None:
    """Only CascadeError may escape the reader, the tools and the decoder; sizes follow len(data)."""
    codec = _codec()
    cfg = codec.cfg
    STATS["streams"] += 1
    if STATS["streams"] % 10000 == 0 and os.environ.get("CASCADE_FUZZ_LOG"):
        with open(os.environ["CASCADE_FUZZ_LOG"], "a") as f:      # progress of a long run
            f.write(f"{time.strftime('%H:%M:%S')} {STATS}\n")
    for fn in (lambda: stream_info(data), lambda: truncate_stream(data, 1, cfg),
               lambda: read_stream(data, cfg, codec.codebooks, conceal=False, side=codec.side)):
        try:
            fn()
        except CascadeError as e:
            assert "\n" not in str(e)
    try:
        fr = read_stream(data, cfg, codec.codebooks, side=codec.side)
    except CascadeError as e:
        assert "\n" not in str(e) and str(e)
        STATS["refused"] += 1
        return
    STATS["read"] += 1
    T = fr.gain_idx.shape[0]
    assert T <= FRAMES_PER_BYTE * len(data), (T, len(data))
    assert fr.num_samples <= cfg.signal.hop * T + cfg.signal.hop
    assert fr.lost.shape == (T,) and all(c.shape[0] == T for c in fr.codes)
    assert 1 <= len(fr.codes) <= cfg.network.stages
    STATS["max_frames_per_byte"] = max(STATS["max_frames_per_byte"], T / len(data))
    if decode:
        try:
            y = codec.decode(fr)
        except CascadeError:
            return
        STATS["decoded"] += 1
        assert y.shape == (fr.num_samples,) and np.all(np.isfinite(y))


_LIGHT = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@settings(max_examples=1000, **_LIGHT)
@given(st.integers(0, NSTREAMS - 1), st.integers(0, NSTREAMS - 1), st.lists(_OPS, min_size=1, max_size=5))
def test_fuzz_reader_with_real_streams(i, j, ops):
    s = streams()
    check_stream(mutate(s[i], s[j], ops), decode=False)


@settings(max_examples=100, **_LIGHT)
@given(st.integers(0, NSTREAMS - 1), st.integers(0, NSTREAMS - 1), st.lists(_OPS, min_size=1, max_size=3))
def test_fuzz_decoder_with_real_streams(i, j, ops):
    s = streams()
    check_stream(mutate(s[i], s[j], ops), decode=True)


def test_fuzz_random_bytes_after_a_real_header():
    rng = np.random.default_rng(0)
    head = streams()[0][:HEADER_SIZE]
    for n in (0, 1, 7, 64, 500, 3000):
        check_stream(head + rng.integers(0, 256, n, dtype=np.uint8).tobytes(), decode=True)


def test_the_streams_are_real_and_intact():
    codec = _codec()
    assert len(streams()) == NSTREAMS
    for d in streams():
        fr = read_stream(d, codec.cfg, codec.codebooks, side=codec.side)
        assert not fr.lost.any() and fr.gain_idx.shape[0] >= 10
    assert [stream_info(d)["side_mode"] for d in streams()] == ["compact"] * 4 + ["robust"] * 2


def test_mutated_streams_through_the_cli(capsys, tmp_path):
    """A few mutated streams through ``cascade info`` and ``cascade decode``: exit 0 or 1, and a
    refusal is exactly one line."""
    rng = np.random.default_rng(1)
    s = streams()
    cases = [mutate(s[0], s[1], [("flip", int(rng.integers(10**6)), int(rng.integers(8)))]),
             mutate(s[0], s[1], [("cut", len(s[0]) // 2, 0)]),
             mutate(s[0], s[1], [("field", "frames", 2**32 - 1)]),
             mutate(s[0], s[1], [("field", "stages", 0)]),
             mutate(s[0], s[1], [("insert", HEADER_SIZE + 5, b"\x00\xff")]),
             mutate(s[0], s[1], [("splice", len(s[0]) // 2, len(s[1]) // 3)]),
             mutate(s[0], s[1], [("packet", 0, "repeat")]),
             mutate(s[4], s[1], [("flip", int(rng.integers(10**6)), int(rng.integers(8)))]),   # robust
             s[0] + b"\x00"]
    for k, data in enumerate(cases):
        src = tmp_path / f"m{k}.cas"
        src.write_bytes(data)
        for argv in (("info", src), ("decode", src, tmp_path / f"m{k}.wav")):
            rc, _, err = run(capsys, *argv)
            assert rc in (0, 1), (k, argv[0], rc, err)
            if rc == 1:
                assert len(err.strip().splitlines()) == 1 and err.startswith("cascade: error: "), err
            else:
                assert "Traceback" not in err


# ---------------------------------------------------------------- the long run

_LONG = int(os.environ.get("CASCADE_FUZZ_EXAMPLES", "100000"))


@pytest.mark.fuzz
@settings(max_examples=_LONG, **_LIGHT)
@given(st.integers(0, NSTREAMS - 1), st.integers(0, NSTREAMS - 1), st.lists(_OPS, min_size=1, max_size=8),
       st.integers(0, 19))
def test_fuzz_long_run(i, j, ops, k):
    """``-m fuzz``: CASCADE_FUZZ_EXAMPLES streams (default 100,000), one in 20 also decoded."""
    s = streams()
    check_stream(mutate(s[i], s[j], ops), decode=k == 0)


@pytest.mark.fuzz
def test_fuzz_long_run_report():
    """Runs after the long run (file order): prints what it tried."""
    if STATS["streams"]:
        print(f"\nfuzz: {STATS['streams']} streams, {STATS['read']} read, {STATS['refused']} refused, "
              f"{STATS['decoded']} decoded, at most {STATS['max_frames_per_byte']:.3f} frames per byte "
              f"({time.strftime('%Y-%m-%d %H:%M:%S')})")
