"""Integer golden model: the bit-exact specification of the autoencoder datapath.

Everything between the integer frame that enters the encoder core and the integer frame that
leaves the decoder core is defined here, in numpy integer arithmetic only (int64 holds every
intermediate; widths are checked against ``FixedPointConfig``).  The hardware in ``hw/`` must
match these functions bit for bit; the cocotb testbenches in ``sim/`` compare against them.

Number formats (all from ``cfg.fixed``; A = ``act_bits``, F = ``act_frac``):

* activations, stage inputs x, residuals r, stage outputs y, decoder sum: signed A-bit, F frac bits
* decoder input: code bits as +-1 (integer, 0 frac bits)
* accumulator of a layer with fan-in n: ``acc_bits(n)`` = A + ceil(log2 n) bits, cannot overflow
* per-output scale: signed ``scale_bits`` multiplier ``mult`` and a per-layer right shift
  ``shift``; per-output ``bias``: signed ``bias_bits``, F fractional bits (the output's format)

One layer (``layer_forward``), for each output i::

    acc_i = sum_j (+a_j if w_ij else -a_j)           # binary weights: adds and subtracts only
    p_i   = acc_i * mult_i                           # product_bits(n) wide
    z_i   = ((p_i + 2**(shift-1)) >> shift) + bias_i  # round half up; arithmetic shift
    kind "in":   h_i = clamp(z_i, -2**F, 2**F)           (hardtanh)
    kind "res":  h_i = sat_A(h_i + clamp(z_i, -2**F, 2**F))
    kind "code": c_i = 1 if z_i >= 0 else 0          (sign; bit 1 means +1)
    kind "out":  y_i = sat_A(z_i)

The cascade (``encode``): r_1 = x; stage n codes r_n; for n < N its decoder gives y_n and
r_{n+1} = sat_A(r_n - y_n).  The decoder (``decode``) sums sat_A(... sat_A(y_1 + y_2) ...) over the
first K stages.

Code search (``search_code``; ``cfg.search``): each stage's code but the last is refined by
flipping single bits, least certain first, that make the residual the stage leaves,
sat_A(r_n - y_n), smaller in squared sum.  The decoder is unchanged; the encoder core does the
same search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import CodecConfig

__all__ = [
    "IntLayer", "IntStage", "IntModel", "sat", "layer_preactivation", "layer_forward",
    "encoder_forward", "decoder_forward", "refine_code", "search_code", "encode", "decode",
    "quantize_frames", "dequantize_frames", "random_model",
]

LAYER_KINDS = ("in", "res", "code", "out")


def sat(v: np.ndarray, bits: int) -> np.ndarray:
    """Saturate to a signed ``bits``-bit integer."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(v, lo, hi)


@dataclass
class IntLayer:
    """One binary-weight layer in integer form.

    ``weights``: (fan_out, fan_in) uint8, 1 = +1, 0 = -1.  ``mult``: (fan_out,) signed
    ``scale_bits``.  ``bias``: (fan_out,) signed ``bias_bits``, F fractional bits.  ``shift``: >= 0.
    ``in_frac``: fractional bits of this layer's input (F, or 0 for a decoder's code input).
    """
    kind: str
    weights: np.ndarray
    mult: np.ndarray
    bias: np.ndarray
    shift: int
    in_frac: int

    @property
    def fan_in(self) -> int:
        return self.weights.shape[1]

    @property
    def fan_out(self) -> int:
        return self.weights.shape[0]


@dataclass
class IntStage:
    encoder: list[IntLayer]
    decoder: list[IntLayer]


@dataclass
class IntModel:
    """The integer form of a binary-weight cascade, as exported for the hardware."""
    config: CodecConfig
    stages: list[IntStage] = field(default_factory=list)

    def check(self) -> None:
        """Raise ValueError unless every array has the shape and range the config implies."""
        cfg = self.config
        if len(self.stages) != cfg.network.stages:
            raise ValueError(f"{len(self.stages)} stages, config says {cfg.network.stages}")
        for s, st in enumerate(self.stages):
            shapes = cfg.layer_shapes(s)
            for side in ("encoder", "decoder"):
                layers = getattr(st, side)
                if [(l.kind, l.fan_in, l.fan_out) for l in layers] != shapes[side]:
                    raise ValueError(f"stage {s} {side}: layer shapes differ from the config")
                for l in layers:
                    if l.mult.shape != (l.fan_out,) or l.bias.shape != (l.fan_out,):
                        raise ValueError(f"stage {s} {side} {l.kind}: mult/bias length differs from fan_out")
                    m_lim = 1 << (cfg.fixed.scale_bits - 1)
                    b_lim = 1 << (cfg.fixed.bias_bits - 1)
                    if l.mult.min() < -m_lim or l.mult.max() >= m_lim:
                        raise ValueError(f"stage {s} {side} {l.kind}: mult exceeds scale_bits")
                    if l.bias.min() < -b_lim or l.bias.max() >= b_lim:
                        raise ValueError(f"stage {s} {side} {l.kind}: bias exceeds bias_bits")
                    if not set(np.unique(l.weights)) <= {0, 1}:
                        raise ValueError(f"stage {s} {side} {l.kind}: weights are not bits")


def layer_preactivation(layer: IntLayer, a: np.ndarray) -> np.ndarray:
    """``z`` of one layer (accumulate, scale, round, add bias) on a batch ``a`` (frames, fan_in):
    (frames, fan_out) int64.  For a ``code`` layer, ``|z|`` is how far each bit is from flipping."""
    # The sum of +-a_j runs in floating point (BLAS) and is converted back: every partial sum is
    # an integer of magnitude <= sum_j |a_j|, and float32 (float64) holds every integer up to
    # 2**24 (2**53) exactly, so any summation order gives the exact integer sum.  (numpy's int64
    # matmul has no BLAS and is ~50x slower.)
    a = np.asarray(a, dtype=np.int64)
    bound = int(np.abs(a).max(initial=0)) * a.shape[-1]
    ft = np.float32 if bound < 1 << 24 else np.float64
    signs = layer.weights.astype(ft) * 2 - 1
    acc = np.rint(a.astype(ft) @ signs.T).astype(np.int64)
    p = acc * layer.mult.astype(np.int64)
    z = (p + (1 << (layer.shift - 1))) >> layer.shift if layer.shift > 0 else p
    return z + layer.bias.astype(np.int64)


def layer_forward(layer: IntLayer, a: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """One layer on a batch ``a`` of shape (frames, fan_in).  Returns (frames, fan_out) int64
    (bits in {0, 1} for a ``code`` layer)."""
    A, F = cfg.fixed.act_bits, cfg.fixed.act_frac
    a = np.asarray(a, dtype=np.int64)
    z = layer_preactivation(layer, a)
    if layer.kind == "code":
        return (z >= 0).astype(np.int64)
    if layer.kind == "out":
        return sat(z, A)
    act = np.clip(z, -(1 << F), 1 << F)
    if layer.kind == "in":
        return act
    return sat(a + act, A)


def encoder_forward(stage: IntStage, x: np.ndarray, cfg: CodecConfig, trace: list | None = None) -> np.ndarray:
    """A stage's encoder: integer frames (T, D) -> code bits (T, B) in {0, 1}.  With sub-bands
    (``NetworkConfig.subbands`` S) the layers run on (T*S, D/S) rows and every result (traced
    values too) is joined back to one row per frame, band 0 first."""
    bands = cfg.network
    h = bands.to_bands(x)
    for i, layer in enumerate(stage.encoder):
        h = layer_forward(layer, h, cfg)
        if trace is not None:
            trace.append(("encoder", i, layer.kind, bands.from_bands(h)))
    return bands.from_bands(h)


def decoder_forward(stage: IntStage, bits: np.ndarray, cfg: CodecConfig, trace: list | None = None) -> np.ndarray:
    """A stage's decoder: code bits (T, B) -> integer frames (T, D) (sub-bands as in
    :func:`encoder_forward`)."""
    bands = cfg.network
    h = bands.to_bands(np.asarray(bits, dtype=np.int64) * 2 - 1)
    for i, layer in enumerate(stage.decoder):
        h = layer_forward(layer, h, cfg)
        if trace is not None:
            trace.append(("decoder", i, layer.kind, bands.from_bands(h)))
    return bands.from_bands(h)


def refine_code(error, bits: np.ndarray, margin: np.ndarray, passes: int = 1,
                candidates: int | None = None) -> np.ndarray:
    """The search rule of :func:`search_code`, for any per-frame error measure ``error``: (T, B)
    bits in {0, 1} -> (T,).  Each frame's bits are visited in order of increasing ``margin``
    (how far each bit is from flipping: the least certain bit first, a tie in index order; only
    the first ``candidates`` when given), ``passes`` times over the same order; a flip is kept
    when it makes ``error`` smaller (a tie keeps the bit).  Returns the refined bits (T, B)."""
    bits = np.array(bits, dtype=np.int64)
    T, B = bits.shape
    if T == 0 or passes <= 0:
        return bits
    order = np.argsort(margin, axis=1, kind="stable")[:, :candidates or B]
    rows = np.arange(T)
    err = error(bits)
    for _ in range(passes):
        for j in range(order.shape[1]):
            trial = bits.copy()
            trial[rows, order[:, j]] ^= 1
            e = error(trial)
            better = e < err
            bits[better] = trial[better]
            err = np.where(better, e, err)
    return bits


def search_code(stage: IntStage, r: np.ndarray, cfg: CodecConfig, passes: int = 1,
                candidates: int | None = None) -> np.ndarray:
    """Closed-loop (analysis-by-synthesis) code of one stage, as the encoder core computes it.

    The encoder network gives the code bits and their margins ``m_i = |sat_A(z_i)|`` (z: the
    code layer's pre-sign value); :func:`refine_code` then visits the bits in order of
    increasing margin and keeps a flip when the residual the stage leaves,
    ``sat_A(r - decoder(bits))``, gets a smaller sum of squares (exact integers).  ``passes = 0``
    gives :func:`encoder_forward`'s code.  The decoder is unchanged, so the code stays a valid
    stream for any decoder; only the encoder works harder (``passes * candidates`` more decoder
    runs per stage)."""
    A = cfg.fixed.act_bits
    r = np.asarray(r, dtype=np.int64)
    h = cfg.network.to_bands(r)
    for layer in stage.encoder[:-1]:
        h = layer_forward(layer, h, cfg)
    z = cfg.network.from_bands(layer_preactivation(stage.encoder[-1], h))
    bits = (z >= 0).astype(np.int64)

    def error(b):
        left = sat(r - decoder_forward(stage, b, cfg), A)
        return (left * left).sum(axis=1)
    return refine_code(error, bits, np.abs(sat(z, A)), passes, candidates)


def encode(model: IntModel, x: np.ndarray, trace: list | None = None, search: int | None = None,
           candidates: int | None = None, stages: int | None = None) -> list[np.ndarray]:
    """The encoder core: integer frames (T, D) -> per-stage code bits [(T, B_n)].

    ``search`` passes of :func:`search_code` over ``candidates`` bits (a number or a per-stage
    schedule as in ``SearchConfig``; 0 or None: all) refine the code of each stage but the last
    (the stages whose decoder the encoder runs anyway; the search gains nothing measurable on
    the last one) before its decoder makes the next residual; both default to the model's
    ``cfg.search``, which is what the encoder core generated from that config computes.  Other
    values are software encoder modes (the streams decode on any decoder).  ``stages`` stops
    after the first K stages (their codes are the first K of all N).

    ``trace``, if a list, receives ``(stage, side, layer_index, kind, values)`` for every layer
    in the order the hardware computes them, and ``(stage, "residual", -1, "sub", r)``; only
    without search.
    """
    cfg = model.config
    if search is None:
        search, candidates = cfg.search.passes, cfg.search.candidates
    # the bits each stage visits, resolved by the config's own rule
    scfg = cfg.replace(search={"passes": search, "candidates": candidates or 0})
    if search and trace is not None:
        raise ValueError("a trace is only kept without code search")
    A = cfg.fixed.act_bits
    r = np.asarray(x, dtype=np.int64)
    codes = []
    n = len(model.stages)
    for s, stage in enumerate(model.stages[:stages]):
        t = [] if trace is not None else None
        c = scfg.search_bits(s)               # 0: not searched (the last stage's decoder is not in the encoder)
        bits = search_code(stage, r, cfg, search, c) if c else encoder_forward(stage, r, cfg, t)
        codes.append(bits)
        if s < n - 1:
            y = decoder_forward(stage, bits, cfg, t)
            r = sat(r - y, A)
            if t is not None:
                t.append(("residual", -1, "sub", r))
        if trace is not None:
            trace.extend((s,) + item for item in t)
    return codes


def decode(model: IntModel, codes: list[np.ndarray], stages: int | None = None,
           trace: list | None = None, frame_stages: np.ndarray | None = None) -> np.ndarray:
    """The decoder core: code bits of the first K stages -> integer frames (T, D).

    ``frame_stages`` (T,) int: frame t sums only its first ``frame_stages[t]`` stages (a stream
    whose later sections were damaged, ``bitstream.Frames.stages``; 0 gives zeros), so each frame
    is bit for bit what a decode with that many stages gives it (frames are independent)."""
    cfg = model.config
    A = cfg.fixed.act_bits
    k = len(codes) if stages is None else stages
    if not 1 <= k <= min(len(codes), len(model.stages)):
        raise ValueError(f"cannot decode {k} stages from {len(codes)} code sets")
    total = None
    for s in range(k):
        t = [] if trace is not None else None
        y = decoder_forward(model.stages[s], codes[s], cfg, t)
        if frame_stages is None:
            total = y if total is None else sat(total + y, A)
        else:                       # frames past their usable stages keep the sum they have
            use = (np.asarray(frame_stages) > s)[:, None]
            y = np.where(use, y, 0)
            total = y if total is None else np.where(use, sat(total + y, A), total)
        if t is not None:
            t.append(("sum", -1, "add", total))
            trace.extend((s,) + item for item in t)
    return total


def quantize_frames(x: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """Float frames -> the golden model's input format (round to nearest, saturate)."""
    F, A = cfg.fixed.act_frac, cfg.fixed.act_bits
    return sat(np.round(np.asarray(x, dtype=np.float64) * (1 << F)).astype(np.int64), A)


def dequantize_frames(y: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    return np.asarray(y, dtype=np.float64) / (1 << cfg.fixed.act_frac)


def random_model(cfg: CodecConfig, seed: int = 0) -> IntModel:
    """A random but well-scaled integer model (for tests and hardware checks without training).

    Multipliers are drawn so that a layer's output spans the activation range for inputs of the
    activation range, so every rounding, clamp and saturation path is exercised.
    """
    rng = np.random.default_rng(seed)
    F = cfg.fixed.act_frac
    m_hi = (1 << (cfg.fixed.scale_bits - 1)) - 1
    stages = []
    for s in range(cfg.network.stages):
        shapes = cfg.layer_shapes(s)
        sides = {}
        for side in ("encoder", "decoder"):
            layers = []
            for i, (kind, fi, fo) in enumerate(shapes[side]):
                in_frac = 0 if (side == "decoder" and i == 0) else F
                shift = cfg.fixed.scale_bits - 2
                # float scale ~ 1.5/sqrt(fan_in) -> mult = scale * 2**(F - in_frac + shift)
                target = 1.5 / np.sqrt(fi) * 2.0 ** (F - in_frac + shift)
                while target > m_hi and shift > 0:
                    shift -= 1
                    target /= 2
                mult = np.clip(np.round(target * rng.uniform(0.25, 1.0, fo)), 1, m_hi).astype(np.int64)
                bias = np.round(rng.normal(0, 0.3, fo) * 2.0 ** F).astype(np.int64)
                weights = rng.integers(0, 2, (fo, fi), dtype=np.uint8)
                layers.append(IntLayer(kind, weights, mult, bias, shift, in_frac))
            sides[side] = layers
        stages.append(IntStage(**sides))
    model = IntModel(cfg, stages)
    model.check()
    return model
