"""Canonical, length-limited Huffman codebooks (model/huffman.py)."""

import heapq
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from model.config import preset
from model.huffman import (Codebook, HuffmanError, bits_to_symbols, limited_lengths,
                           symbols_to_bits, train_codebook, train_codebooks)


def skewed_codes(cfg, T=400, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((T, b)) < 0.15 + 0.1 * n).astype(np.uint8)
            for n, b in enumerate(cfg.network.code_bits)]


def huffman_cost(w):
    h = [int(x) for x in w]
    heapq.heapify(h)
    cost = 0
    while len(h) > 1:
        a, b = heapq.heappop(h), heapq.heappop(h)
        cost += a + b
        heapq.heappush(h, a + b)
    return cost


def assert_canonical(cb):
    lengths, codes = cb.lengths, cb.codes
    assert np.sum(np.ldexp(1.0, -lengths)) <= 1.0 + 1e-12               # Kraft
    words = [format(int(c), f"0{int(l)}b") for c, l in zip(codes, lengths)]
    assert all(int(c) < (1 << int(l)) for c, l in zip(codes, lengths))
    srt = sorted(words)
    for a, b in zip(srt, srt[1:]):                                          # prefix-free
        assert not b.startswith(a)
    order = np.lexsort((np.arange(lengths.size), lengths))                  # canonical order
    assert list(codes[order] << (cb.max_len - lengths[order])) == sorted(
        codes[order] << (cb.max_len - lengths[order]))


def test_symbol_bit_order_first_bit_lsb():
    bits = np.array([[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]], np.uint8)
    assert list(bits_to_symbols(bits, 8)) == [1, 2]
    assert np.array_equal(symbols_to_bits(np.array([1, 2]), 8, 16), bits)


def test_train_canonical_limit_and_roundtrip():
    cfg = preset("tiny")
    codes = skewed_codes(cfg)
    cbs = train_codebooks(codes, cfg)
    assert len(cbs) == cfg.network.stages
    for cb, c in zip(cbs, codes):
        assert cb.lengths.size == 1 << cfg.entropy.symbol_bits and cb.lengths.min() >= 1
        assert cb.max_len <= cfg.entropy.max_code_len
        assert_canonical(cb)
        sec = cb.encode_bits(c)
        assert len(sec) == -(-cb.cost(c) // 8)
        assert np.array_equal(cb.decode_bits(sec, c.shape[0], c.shape[1]), c)
        assert cb.cost(c) < c.size                                           # it compresses
        assert Codebook.from_dict(json.loads(json.dumps(cb.to_dict()))) == cb


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=64), st.integers(1, 12))
def test_package_merge_optimal_and_limited(w, L):
    w = np.array(w)
    if w.size > 1 << L:
        with pytest.raises(HuffmanError):
            limited_lengths(w, L)
        return
    lengths = limited_lengths(w, L)
    assert lengths.max() <= L and lengths.min() >= 1
    assert np.sum(np.ldexp(1.0, -lengths)) == 1.0                              # complete
    if L >= w.size:                                                           # limit inactive
        assert int((lengths * w).sum()) == huffman_cost(w)


def test_limit_forces_fixed_length():
    lengths = limited_lengths(np.arange(1, 257) ** 4, 8)
    assert np.all(lengths == 8)


def test_decode_errors_are_huffman_errors():
    cfg = preset("tiny")
    cb = train_codebooks(skewed_codes(cfg), cfg)[0]
    with pytest.raises(HuffmanError):
        cb.decode_symbols(b"", 3)
    sec = cb.encode_symbols(np.arange(20))
    with pytest.raises(HuffmanError):
        cb.decode_symbols(sec[:2], 20)
    with pytest.raises(HuffmanError):
        Codebook([1] * 256, 8)                                               # Kraft violated


def test_large_round_trip_3000_frames_8_stages():
    # size of a minute of speech at 9 stages; speed belongs in benchmarks, not in a timed test
    rng = np.random.default_rng(1)
    codes = (rng.random((3000 * 8, 64)) < 0.2).astype(np.uint8)
    cb = train_codebook(codes, 8, 12)
    sec = cb.encode_bits(codes)
    assert len(sec) * 8 < codes.size        # skewed bits compress
    out = cb.decode_bits(sec, codes.shape[0], 64)
    assert np.array_equal(out, codes)
