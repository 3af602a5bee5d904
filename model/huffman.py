"""Canonical, length-limited Huffman codes for the stage codes (patent FIG. 3).

Symbols
-------
A stage's code of ``B = cfg.network.code_bits[n]`` bits per frame is cut into ``B / k`` symbols
of ``k = cfg.entropy.symbol_bits`` consecutive bits.  Symbol ``i`` of a frame is built from code
bits ``k*i .. k*i + k - 1`` with **the first bit in the LSB**::

    symbol_i = sum_j bits[k*i + j] << j        (j = 0 .. k-1)

(the same little bit order as the weight export's ``np.packbits(..., bitorder="little")``).
Symbols of one section are taken frame by frame, symbol 0 first.

Codes
-----
One :class:`Codebook` per stage, trained on that stage's code statistics with add-one smoothing
(every one of the ``2**k`` symbols gets a code).  Code lengths are optimal under the limit
``cfg.entropy.max_code_len`` (package-merge, Larmore & Hirschberg 1990), and the codes are
canonical (DEFLATE/JPEG convention): symbols sorted by (length, symbol value) get consecutive
code values, so the lengths alone define the codebook.  A code is written **MSB first**, and a
section's bits are packed into bytes **MSB first** (first bit in bit 7 of byte 0), zero-padded to
a whole byte.  The decoder knows how many symbols a section holds (frames x B/k), so padding is
never decoded.

The hardware coder (``hw/huffman.py``) implements :meth:`Codebook.encode_bits` /
:meth:`Codebook.decode_bits` bit for bit.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import CascadeError

__all__ = [
    "HuffmanError", "Codebook", "train_codebooks", "train_codebook", "limited_lengths",
    "canonical_codes", "bits_to_symbols", "symbols_to_bits", "codebooks_id", "window_values",
]


class HuffmanError(CascadeError, ValueError):
    """A codebook or a coded section that cannot be right (one line message)."""


# ---- symbols <-> bits ---------------------------------------------------------------------------
def bits_to_symbols(bits: np.ndarray, k: int) -> np.ndarray:
    """(T, B) {0,1} -> (T * B/k,) int64 symbols, first bit of each group in the LSB."""
    bits = np.asarray(bits)
    t, b = bits.shape
    if b % k:
        raise HuffmanError(f"{b} code bits per frame is not a multiple of symbol_bits={k}")
    groups = bits.reshape(t * (b // k), k).astype(np.int64)
    return groups @ (np.int64(1) << np.arange(k, dtype=np.int64))


def symbols_to_bits(symbols: np.ndarray, k: int, code_bits: int) -> np.ndarray:
    """Inverse of :func:`bits_to_symbols`: (T * B/k,) -> (T, B) uint8."""
    symbols = np.asarray(symbols, dtype=np.int64)
    bits = ((symbols[:, None] >> np.arange(k, dtype=np.int64)) & 1).astype(np.uint8)
    return bits.reshape(-1, code_bits)


# ---- code construction --------------------------------------------------------------------------
def limited_lengths(counts: np.ndarray, max_len: int) -> np.ndarray:
    """Optimal code lengths no longer than ``max_len`` for positive ``counts`` (package-merge).

    Vectorized over the levels: list 1 is the symbols sorted by weight; list j+1 merges the
    symbols with the pairwise packages of list j.  The first ``2n - 2`` items of the last list
    are selected; every selected symbol gets one bit more, and the selected packages select the
    first items of the list below.  Needs ``n <= 2**max_len``.
    """
    w = np.asarray(counts, dtype=np.int64)
    n = w.size
    if n < 2:
        raise HuffmanError("a code needs at least two symbols")
    if np.any(w <= 0):
        raise HuffmanError("package-merge needs positive counts (use add-one smoothing)")
    if n > (1 << max_len):
        raise HuffmanError(f"{n} symbols cannot have codes of at most {max_len} bits")
    order = np.argsort(w, kind="stable")
    leaf_w = w[order]
    # each level: (weights, is_leaf, leaf rank) in merged, sorted order
    levels = []
    cur_w, cur_leaf, cur_rank = leaf_w, np.ones(n, bool), np.arange(n)
    levels.append((cur_leaf, cur_rank))
    for _ in range(max_len - 1):
        npk = cur_w.size // 2
        pk_w = cur_w[0:2 * npk:2] + cur_w[1:2 * npk:2]
        all_w = np.concatenate([leaf_w, pk_w])
        is_leaf = np.concatenate([np.ones(n, bool), np.zeros(npk, bool)])
        rank = np.concatenate([np.arange(n), np.arange(npk)])
        srt = np.argsort(all_w, kind="stable")          # leaves before packages on ties
        cur_w, cur_leaf, cur_rank = all_w[srt], is_leaf[srt], rank[srt]
        levels.append((cur_leaf, cur_rank))
    lengths_sorted = np.zeros(n, np.int64)
    take = 2 * n - 2
    for is_leaf, rank in reversed(levels):
        sel_leaf, sel_rank = is_leaf[:take], rank[:take]
        lengths_sorted[sel_rank[sel_leaf]] += 1
        take = 2 * int(np.count_nonzero(~sel_leaf))
    lengths = np.empty(n, np.int64)
    lengths[order] = lengths_sorted
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for ``lengths`` (symbols sorted by (length, value) count up)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    codes = np.zeros(lengths.size, np.int64)
    code, prev = 0, int(lengths[order[0]])
    for i, s in enumerate(order):
        ln = int(lengths[s])
        if i:
            code = (code + 1) << (ln - prev)
        else:
            code = 0
        prev = ln
        codes[s] = code
    return codes


def window_values(bits: np.ndarray, width: int) -> np.ndarray:
    """(n,) bits -> (n,) int64: entry i is the ``width`` bits from bit i read MSB first (bits past
    the end read 0); what a table decoder looks up at every bit position."""
    bits = np.asarray(bits, np.uint8).reshape(-1)
    padded = np.concatenate([bits, np.zeros(width, np.uint8)]).astype(np.int64)
    return np.lib.stride_tricks.sliding_window_view(padded, width)[:bits.size] @ (
        np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))


class Codebook:
    """A canonical Huffman code over ``k``-bit symbols.

    Parameters
    ----------
    lengths : array of int, shape (2**k,)
        Code length of every symbol, 1..max_code_len; must satisfy Kraft (sum 2**-l <= 1).
    symbol_bits : int
        ``k``.

    Attributes
    ----------
    lengths, codes : np.ndarray (int64)
        Canonical code of symbol ``s`` is the ``lengths[s]`` low bits of ``codes[s]``, sent MSB first.
    """

    def __init__(self, lengths, symbol_bits: int):
        k = int(symbol_bits)
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if not 1 <= k <= 16:
            raise HuffmanError(f"symbol_bits must be 1..16, not {k}")
        if lengths.size != 1 << k:
            raise HuffmanError(f"codebook has {lengths.size} lengths, expected 2**{k}")
        if lengths.min() < 1 or lengths.max() > 20:
            raise HuffmanError("code lengths must be 1..20")
        kraft = np.sum(np.ldexp(1.0, -lengths))
        if kraft > 1.0 + 1e-12:
            raise HuffmanError(f"code lengths violate Kraft (sum {kraft:.4f} > 1)")
        self.symbol_bits = k
        self.lengths = lengths
        self.codes = canonical_codes(lengths)
        self.max_len = int(lengths.max())
        L = self.max_len
        # decode table indexed by the next L bits: (symbol, length); length 0 = no code
        self._dec_sym = np.zeros(1 << L, np.int64)
        self._dec_len = np.zeros(1 << L, np.int64)
        for s in range(lengths.size):
            ln, c = int(lengths[s]), int(self.codes[s])
            lo = c << (L - ln)
            self._dec_sym[lo:lo + (1 << (L - ln))] = s
            self._dec_len[lo:lo + (1 << (L - ln))] = ln

    # ---- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able: ``{"symbol_bits": k, "lengths": [...]}`` (canonical codes follow from them)."""
        return {"symbol_bits": self.symbol_bits, "lengths": [int(x) for x in self.lengths]}

    @classmethod
    def from_dict(cls, d: dict) -> "Codebook":
        try:
            return cls(d["lengths"], d["symbol_bits"])
        except (KeyError, TypeError) as exc:
            raise HuffmanError(f"codebook entry is malformed: {exc}") from None

    def __eq__(self, other):
        return (isinstance(other, Codebook) and self.symbol_bits == other.symbol_bits
                and np.array_equal(self.lengths, other.lengths))

    def __repr__(self):
        return f"Codebook(symbol_bits={self.symbol_bits}, max_len={self.max_len})"

    # ---- derived tables (for the hardware) ----------------------------------------------------
    def canonical_tables(self, max_len: int | None = None):
        """Per-length tables of the bit-serial canonical decoder.

        Returns ``(limit, offset, symbols)``: for length l (1..max_len, index l-1), a code
        prefix ``c`` of l bits is a whole code iff ``c < limit[l-1]``, and then its symbol is
        ``symbols[c + offset[l-1]]``; ``symbols`` lists symbols in canonical order.
        """
        L = self.max_len if max_len is None else max_len
        order = np.lexsort((np.arange(self.lengths.size), self.lengths))
        limit, offset = [], []
        first, index = 0, 0
        for ln in range(1, L + 1):
            count = int(np.count_nonzero(self.lengths == ln))
            limit.append(first + count)
            offset.append(index - first)
            index += count
            first = (first + count) << 1
        return np.array(limit), np.array(offset), order

    # ---- coding -------------------------------------------------------------------------------
    def cost(self, bits: np.ndarray) -> int:
        """Coded size in bits of (T, B) code bits (without byte padding)."""
        return int(self.lengths[bits_to_symbols(bits, self.symbol_bits)].sum())

    def code_bits(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols -> their codes as one bit array (uint8 0/1), each code MSB first, no padding."""
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if symbols.size == 0:
            return np.zeros(0, np.uint8)
        L = self.max_len
        ln = self.lengths[symbols]
        cd = self.codes[symbols]
        shifts = ln[:, None] - 1 - np.arange(L)[None, :]
        bits = ((cd[:, None] >> np.maximum(shifts, 0)) & 1).astype(np.uint8)
        return bits[shifts >= 0]

    def encode_symbols(self, symbols: np.ndarray) -> bytes:
        """Symbols -> bytes: codes MSB first, packed MSB first, zero-padded to a byte."""
        return np.packbits(self.code_bits(symbols)).tobytes()

    def encode_bits(self, bits: np.ndarray) -> bytes:
        """(T, B) code bits of one stage -> one byte-aligned section."""
        return self.encode_symbols(bits_to_symbols(bits, self.symbol_bits))

    def decode_symbols(self, data: bytes, count: int) -> np.ndarray:
        """Decode ``count`` symbols from ``data``; raises :class:`HuffmanError` if it runs short
        or meets a bit pattern that is no code.  Bits after the last symbol are ignored."""
        if count == 0:
            return np.zeros(0, np.int64)
        bits = np.unpackbits(np.frombuffer(data, np.uint8))
        if bits.size < count:       # every code has at least one bit
            raise HuffmanError("Huffman section is shorter than its symbol count")
        return self.decode_window(window_values(bits, self.max_len), self.max_len, count)[0]

    def decode_window(self, win: np.ndarray, win_bits: int, count: int, start: int = 0):
        """Decode ``count`` symbols from bit ``start`` of a bit string given as ``win``
        (``window_values(bits, win_bits)``, ``win_bits >= max_len``: entry i is the ``win_bits``
        bits from bit i, zero past the end) -> ``(symbols, end bit)``.  Raises
        :class:`HuffmanError` if the string ends inside a symbol or holds no code."""
        if count == 0:
            return np.zeros(0, np.int64), start
        L = self.max_len
        if win_bits < L:
            raise ValueError(f"a window of {win_bits} bits is shorter than the codes ({L})")
        nbits = win.size
        idx = win >> (win_bits - L) if win_bits > L else win
        lens = self._dec_len[idx].tolist()
        pos = []
        p = start
        for _ in range(count):
            if p >= nbits:
                raise HuffmanError("Huffman section ends inside a symbol")
            ln = lens[p]
            if ln == 0:
                raise HuffmanError("Huffman section holds a bit pattern that is no code")
            pos.append(p)
            p += ln
        if p > nbits:
            raise HuffmanError("Huffman section ends inside a symbol")
        return self._dec_sym[idx[np.array(pos, np.int64)]], p

    def decode_bits(self, data: bytes, frames: int, code_bits: int) -> np.ndarray:
        """One section -> (frames, code_bits) uint8; inverse of :meth:`encode_bits`."""
        k = self.symbol_bits
        syms = self.decode_symbols(data, frames * (code_bits // k))
        return symbols_to_bits(syms, k, code_bits)


# ---- training ------------------------------------------------------------------------------------
def train_codebook(bits: np.ndarray, symbol_bits: int, max_code_len: int) -> Codebook:
    """A length-limited canonical Huffman codebook for one stage's (T, B) code bits."""
    k = int(symbol_bits)
    syms = bits_to_symbols(np.asarray(bits, np.uint8).reshape(-1, np.asarray(bits).shape[-1]), k)
    counts = np.bincount(syms, minlength=1 << k).astype(np.int64) + 1   # add-one smoothing
    return Codebook(limited_lengths(counts, max_code_len), k)


def train_codebooks(codes: list[np.ndarray], cfg) -> list[Codebook]:
    """One codebook per stage: ``codes[n]`` is (T, cfg.network.code_bits[n]) uint8 {0,1}."""
    e = cfg.entropy
    if len(codes) > cfg.network.stages:
        raise HuffmanError(f"{len(codes)} stages of codes, the codec has {cfg.network.stages}")
    out = []
    for n, c in enumerate(codes):
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[1] != cfg.network.code_bits[n]:
            raise HuffmanError(f"stage {n}: codes of shape {c.shape}, expected (T, {cfg.network.code_bits[n]})")
        out.append(train_codebook(c, e.symbol_bits, e.max_code_len))
    return out


def codebooks_id(codebooks: list[Codebook] | None) -> int:
    """32-bit identifier (CRC-32 of k and all lengths) that a bitstream carries; 0 for none."""
    if not codebooks:
        return 0
    blob = bytearray()
    for cb in codebooks:
        blob += bytes([cb.symbol_bits]) + np.asarray(cb.lengths, np.uint8).tobytes()
    return zlib.crc32(bytes(blob)) or 1
