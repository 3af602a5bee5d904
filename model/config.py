"""The one description of a codec.

Every part of the project reads a :class:`CodecConfig`: the PyTorch model (``model/net.py``), the
signal front end (``model/dsp.py``), the integer golden model (``model/golden.py``), the weight
export (``model/export.py``), the bitstream (``model/bitstream.py``) and the hardware generators
(``hw/``).  A layer width, a bit count or a fixed-point format is written here and nowhere else.

A config is a frozen dataclass tree; it serializes to JSON (``to_dict``/``from_dict``) and has a
stable hash (``config_hash``) that bitstreams, exports and generated RTL carry so that a decoder can
refuse data made for another codec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .bitstream import LIMITS      # the formats' one table (model.bitstream imports no config)
from .errors import CascadeError

__all__ = [
    "SignalConfig", "LpcConfig", "GainConfig", "NetworkConfig", "FixedPointConfig",
    "EntropyConfig", "PostfilterConfig", "NoiseFillConfig", "SearchConfig", "InputConfig",
    "PitchConfig", "CodecConfig", "ConfigError", "PRESETS", "preset", "HOST_SECTIONS",
]


class ConfigError(CascadeError, ValueError):
    """A config that cannot describe a working codec."""


#: Limits every config (and so every model file) must keep, checked before anything is sized from
#: it: a model file's config decides how much memory the loader allocates, so a hostile file could
#: otherwise ask for gigabytes before a weight is read.  The table is the formats' one table,
#: ``model.bitstream.LIMITS`` (quoted in docs/bitstream.md); ``MAX_PARAMETERS`` bounds the
#: network's weights, biases and scales together (``CodecConfig.parameter_count``).
MAX_PARAMETERS = LIMITS["parameters"]


@dataclass(frozen=True)
class SignalConfig:
    """Sampling and transform.

    ``hop`` samples per frame (20 ms at 16 kHz by default).  ``transform`` is ``"mdct"`` (sine
    window of ``2*hop``, ``hop`` real coefficients per frame) or ``"stft"`` (sqrt-Hann window of
    ``2*hop``, 50 % overlap, real and imaginary parts of bins 0..hop with the always-zero imaginary
    parts of DC and Nyquist left out: ``2*hop`` reals per frame; FIG. 5 of the patent).
    """
    sample_rate: int = 16000
    hop: int = 320
    transform: str = "mdct"

    @property
    def coefficients(self) -> int:
        """Real values per frame that the autoencoders see (the network's input width D)."""
        return self.hop if self.transform == "mdct" else 2 * self.hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


@dataclass(frozen=True)
class LpcConfig:
    """LPC pre-processing (patent Eq. 4): the codec codes the residual e(t) = A(z) s(t).

    ``gamma`` is the bandwidth expansion A(z/gamma) applied before quantization.  It is the
    perceptual weighting of this codec: a plain MSE on the residual spectrum makes the decoded
    noise follow 1/A(z/gamma), the smoothed spectral envelope, as in the weighting filter of CELP
    coders (Atal & Schroeder 1979; ITU-T G.729 sec. 3.3).  The coefficients travel as line
    spectral frequencies, each scalar-quantized with ``lsf_bits`` bits on a grid fitted to
    training data (stored with the model).

    The defaults were chosen by the ablation study (``docs/ablation``); the figures are in
    docs/RESULTS.md ("Why the defaults are what they are").
    """
    enabled: bool = True
    order: int = 16
    gamma: float = 0.92
    lsf_bits: int = 4
    window: int = 640

    @property
    def bits_per_frame(self) -> int:
        return self.order * self.lsf_bits if self.enabled else 0


@dataclass(frozen=True)
class GainConfig:
    """Per-frame gain normalization: the frame is divided by its quantized RMS.

    The RMS is sent as a ``bits``-bit index on a log grid of ``step_db`` dB starting at
    ``min_db`` (dB re. full scale of a 16-bit sample = 1.0).
    """
    bits: int = 6
    step_db: float = 1.5
    min_db: float = -100.0


@dataclass(frozen=True)
class NetworkConfig:
    """The cascade of N residual autoencoders (patent FIG. 2-4, Eq. 1-3).

    Each stage: encoder ``D -> hidden`` (hardtanh), ``res_layers`` residual layers
    ``h <- h + hardtanh(W h + b)``, code layer ``sign(W h + b)`` of ``code_bits[n]`` units; decoder
    ``code -> hidden`` (hardtanh), ``res_layers`` residual layers, linear ``hidden -> D``.
    ``binary``: weights are sign(W) times one positive scale per output (BNN); ``False`` keeps
    float weights for comparison (such a model has no integer/hardware form).

    Default size: 8 stages of 64 bits and a last one of 48 (the last stage is the one every
    lower rate leaves out, and the pitch pre-filter's side information needs room under 32
    kbps), hidden 96: the largest hidden width at which the encoder core keeps its weights and
    parameters in the four 256-kbit SPRAMs of an iCE40 UP5K (``Schedule``, ``hw/synth.py``).
    The measurements behind it are in docs/RESULTS.md ("Why the defaults are what they are").

    ``subbands`` S > 1 (sub-band weight sharing): each stage's encoder and decoder is one network
    of input/output width D/S (``layer_shapes``) applied with the same weights to each of the S
    contiguous frequency sub-bands of the frame (coefficients ``[k*D/S, (k+1)*D/S)``), each band
    giving ``code_bits[n]/S`` bits; the stage's code is the bands' codes concatenated, band 0
    first (``to_bands``/``from_bands``).  S times fewer weights in the outer layers, S times the
    MACs of the shared network per frame.  No hardware form yet (``hw/schedule.py`` refuses it).
    The ablation study measures it (row ``subband_sharing``, ``docs/ablation``).
    """
    stages: int = 9
    code_bits: tuple[int, ...] = (64,) * 8 + (48,)
    hidden: int = 96
    res_layers: int = 1
    binary: bool = True
    subbands: int = 1

    def __post_init__(self):
        object.__setattr__(self, "code_bits", tuple(int(b) for b in self.code_bits))

    @property
    def code_offsets(self) -> tuple[int, ...]:
        """``N + 1`` offsets: stage n's code bits are bits ``code_offsets[n] ..
        code_offsets[n+1] - 1`` of a frame's code (stage 0 first), and the first K stages hold
        ``code_offsets[K]`` bits.  The one definition of that layout: the model, the stream's
        Huffman sections, the cores' code buffers, the board protocol and the host read it."""
        out = [0]
        for b in self.code_bits:
            out.append(out[-1] + b)
        return tuple(out)

    def to_bands(self, x):
        """Frames (T, W) -> the rows the shared network sees, (T*S, W/S): row ``t*S + k`` is band
        k of frame t.  ``x`` is a numpy array or a torch tensor (anything with ``reshape``)."""
        return x if self.subbands == 1 else x.reshape(-1, x.shape[-1] // self.subbands)

    def from_bands(self, x):
        """Inverse of :meth:`to_bands`: (T*S, W) -> (T, S*W), band 0 first in each row."""
        return x if self.subbands == 1 else x.reshape(-1, x.shape[-1] * self.subbands)


@dataclass(frozen=True)
class FixedPointConfig:
    """Number formats of the integer datapath (golden model and hardware).

    Activations, stage inputs, residuals and stage outputs are signed ``act_bits``-bit integers
    with ``act_bits - act_int_bits`` fractional bits (Q``act_int_bits``.``frac``; the sign bit
    counts among the integer bits).  Each layer's per-output scale is a signed ``scale_bits``-bit
    multiplier followed by an arithmetic right shift (per layer) with round-half-up.
    Each output's bias is a signed ``bias_bits``-bit integer at the output's resolution (F
    fractional bits), added after the shift.  Accumulator width follows from fan-in so that it
    cannot overflow (see ``acc_bits``).

    The default width is the smallest of 6/8/10/12/16 bits that keeps the shipped model within
    0.05 PESQ-WB of float and >= 99 % of code bits equal to float stage by stage (``cascade
    report``'s fixed-point sweep).  Scales and biases take 8 bits each, so that a parameter is one
    16-bit SPRAM word on the iCE40 UltraPlus.  Figures: docs/RESULTS.md.
    """
    act_bits: int = 10
    act_int_bits: int = 4
    scale_bits: int = 8
    bias_bits: int = 8

    @property
    def act_frac(self) -> int:
        return self.act_bits - self.act_int_bits

    def acc_bits(self, fan_in: int) -> int:
        """Width that holds any sum of ``fan_in`` terms of +-(act value): no overflow possible.

        |acc| <= fan_in * 2**(A-1), and +fan_in * 2**(A-1) (every input -2**(A-1), every weight
        -1) needs A + bit_length(fan_in) signed bits when fan_in is a power of two."""
        return self.act_bits + max(1, int(fan_in).bit_length())

    def product_bits(self, fan_in: int) -> int:
        """Width of ``acc * scale``."""
        return self.acc_bits(fan_in) + self.scale_bits


@dataclass(frozen=True)
class EntropyConfig:
    """Huffman coding of the stage codes (patent FIG. 3): ``symbol_bits``-bit symbols,
    canonical codes no longer than ``max_code_len``, one codebook per stage.  Frames travel in
    packets of ``packet_frames`` frames, each stage in its own byte-aligned section so a stream can
    be cut to its first K stages without re-encoding."""
    symbol_bits: int = 8
    max_code_len: int = 12
    packet_frames: int = 50


def _freeze_schedule(section, name: str, cast) -> None:
    """A field that holds one value or a schedule (one value per stage): lists become tuples."""
    value = getattr(section, name)
    if isinstance(value, (list, tuple)):
        object.__setattr__(section, name, tuple(cast(v) for v in value))


def _schedule_values(value) -> tuple:
    """Every value of a one-value-or-schedule field, as a tuple."""
    return value if isinstance(value, tuple) else (value,)


def _schedule_entry(value, index: int):
    """One value, or entry ``index`` (0-based) of a schedule; its last entry for larger indexes."""
    if isinstance(value, tuple):
        return value[min(max(index, 0), len(value) - 1)]
    return value


@dataclass(frozen=True)
class PostfilterConfig:
    """Decoder-side formant postfilter on the decoded speech (host side, after the LPC synthesis
    filter), as in CELP decoders (Chen & Gersho 1995; ITU-T G.729 sec. 4.2):
    ``H(z) = A(z/num_gamma) / A(z/den_gamma) * (1 - tilt z^-1)`` with the frame's decoded LPC
    polynomial A(z), the output scaled to the input's energy frame by frame.  It deepens the
    valleys between formants where the coding noise is most audible.

    After it, a long-term (pitch) postfilter (``pitch_gain`` > 0; ``model.dsp.pitch_postfilter``)
    deepens the valleys between the harmonics of voiced speech, where the codec's noise is
    heard most at low rates (as the G.729 decoder's, sec. 4.2.1): on windows of 20 ms every
    10 ms (sine-squared, overlap-added), the lag T of 2 to 20 ms (500 to 50 Hz) that
    maximizes the normalized correlation r of the decoded speech with its own past is found,
    and the window becomes (y(n) + g y(n - T)) / (1 + g) with g = ``pitch_gain`` * r where
    r > ``pitch_threshold`` (voiced), else it is left as it is.  No side information: the
    decoder finds the lag on its own output.

    ``num_gamma`` is one number, or one per number of decoded stages: ``(g_1, g_2, ...)``, entry
    K-1 for a stream decoded with K stages (the last entry also for more).  The decoder knows K
    from the stream's header, so the postfilter can be weaker where fewer coding errors are
    left: ``cascade tune-postfilter`` picks such a schedule for a model on its training data
    (``model.codec.Codec.tune_postfilter``).  A model file without a schedule keeps one value.

    It does not change the bitstream, so it is left out of ``config_hash``.  The defaults were
    chosen by measurement, ``pitch_gain`` last on the unseen validation voice together with the
    transmitted pitch pre-filter (``PitchConfig``); the figures are in docs/RESULTS.md.
    """
    enabled: bool = True
    num_gamma: float | tuple[float, ...] = 0.75
    den_gamma: float = 0.92
    tilt: float = 0.15
    pitch_gain: float = 0.7
    pitch_threshold: float = 0.3

    def __post_init__(self):
        _freeze_schedule(self, "num_gamma", float)

    def num_gamma_for(self, stages: int) -> float:
        """``num_gamma`` for a stream decoded with ``stages`` stages (1-based)."""
        return _schedule_entry(self.num_gamma, stages - 1)


@dataclass(frozen=True)
class NoiseFillConfig:
    """Decoder-side noise filling (host side, on the decoded gain-normalized MDCT frames, before
    the gain, the inverse transform and the LPC synthesis filter).  An MSE-trained decoder
    returns less energy than the frame had (median 59 % at K = 9 with the shipped model), and it
    loses it mostly where the residual is noise-like.  The encoder normalizes every frame to unit
    RMS, so the decoder knows the missing energy ``D - sum(y**2)``; a ``fraction`` of it is added
    as white noise (seeded, so decoding is deterministic) in the bins at and above ``start_hz``.

    MDCT frames only (``signal.transform = "mdct"``).  It changes no bit of the stream and no
    weight, so it is left out of ``config_hash``.  The defaults were chosen by measurement and
    re-checked on the unseen validation voice (docs/RESULTS.md).
    """
    enabled: bool = True
    start_hz: float = 4800.0
    fraction: float = 0.5


@dataclass(frozen=True)
class SearchConfig:
    """Closed-loop code search of the encoder (analysis by synthesis, as in CELP encoders), done
    alike by the software encoder and the encoder core (``model.golden.search_code``,
    ``hw/core.py``).  After a stage's encoder network gives its code, ``passes`` sweeps over its
    least certain code bits (smallest ``|z|`` at the code layer) flip each bit that makes the
    residual the stage leaves smaller in squared sum, judged by the stage's own decoder.
    Stages 1..N-1 are searched (their decoders are in the encoder anyway); on the last one the
    search gained nothing measurable.

    ``candidates``: bits visited per pass, one number for every searched stage, or a schedule
    ``(C_1, C_2, ...)`` for stages 1, 2, ... whose last entry also holds for the later stages;
    0 = all bits of the stage.  ``CodecConfig.search_bits(n)`` resolves it.

    The decoder and the bitstream format are untouched, so any decoder plays the stream and
    this section is left out of ``config_hash``; it sets the encoder core's work per frame
    (``1 + passes * C_n + 1`` decoder runs per searched stage instead of one).

    Default: 1 pass, 48 trials per frame spent mostly on the first stages, which every K
    decodes: (24, 8, 4, 4, 2, ...), what keeps the iCEBreaker encoder core real-time at the
    board's own 12 MHz.  A model file carries its own (``cascade set-search``, which checks the
    real-time factor on a board at a clock): the shipped default model's is wider, for the
    iCEBreaker at a PLL clock.  The figures behind both are in docs/RESULTS.md.
    """
    passes: int = 1
    candidates: int | tuple[int, ...] = (24, 8, 4, 4, 2)

    def __post_init__(self):
        _freeze_schedule(self, "candidates", int)

    def stage_candidates(self, stage: int) -> int:
        """``candidates`` for stage ``stage`` (0-based; 0 = all bits), before capping at B_n."""
        return _schedule_entry(self.candidates, stage)


@dataclass(frozen=True)
class InputConfig:
    """Encoder-side input conditioning (host side, before any analysis): a Butterworth high-pass
    of ``highpass_order`` at ``highpass_hz`` (0 = off), as every speech-codec standard has one
    (G.722.2 and Opus at about 50 Hz, AMR-WB's pre-processing at 50 Hz, G.729's at 140 Hz).  Studio
    prompt recordings carry much of their energy below 300 Hz (rumble, breath, proximity effect)
    that costs the stages bits and the LPC its accuracy.  Applied zero-state, causal
    (``scipy.signal.sosfilt``); it changes no bit of the stream format, so it is left out of
    ``config_hash``, and training applies it to the training speech too.

    A config made before this section existed (a model file without it) has it off.
    """
    highpass_hz: float = 80.0
    highpass_order: int = 4


@dataclass(frozen=True)
class PitchConfig:
    """Transmitted long-term (pitch) pre-filter, as in Opus' CELT layer (RFC 6716 sec. 4.3.7.1).

    Per frame the encoder picks a lag ``T`` in ``lag_min..lag_max`` samples (the smallest lag
    whose normalized correlation with the frame is within ``octave`` of the best one, so that a
    multiple of the period is not taken for it) and a gain ``g = gain_step * q``, ``q =
    round(strength * r / gain_step)`` with ``q`` in ``0..2**gain_bits - 1`` (``q = 0`` where
    ``r < threshold``), and filters ``x'(n) = x(n) - g x(n - T)``; over the first ``fade``
    samples of a frame the previous frame's filter cross-fades into this one's (a sine-squared
    ramp).  ``T - lag_min`` and ``q`` are sent in the side information (``lag_bits`` + ``gain_bits``
    bits per frame before Huffman coding).  The decoder applies the exact inverse, the comb
    ``y(n) = y'(n) + g y(n - T)`` with the same cross-fade, so without coding noise the signal
    comes back unchanged, and the coding noise is shaped like the harmonics instead of filling
    the valleys between them.

    ``domain``: ``"signal"`` (on the high-passed speech, before LPC analysis; the decoder after
    the LPC synthesis filter, before the postfilters) or ``"residual"`` (on the LPC residual,
    before the transform; the decoder between the inverse transform and the synthesis filter).

    It is part of the stream format (the side information holds it), so it is in
    ``config_hash`` when enabled; a config without it (made before it existed) has it off.
    """
    enabled: bool = True
    domain: str = "signal"
    lag_min: int = 32
    lag_max: int = 320
    gain_bits: int = 3
    gain_step: float = 0.125
    strength: float = 0.8
    threshold: float = 0.3
    octave: float = 0.9
    fade: int = 80

    @property
    def lag_bits(self) -> int:
        return max(1, (self.lag_max - self.lag_min).bit_length())

    @property
    def side_widths(self) -> tuple[int, ...]:
        """Side-information fields per frame: (lag index, gain index) widths, () when off."""
        return (self.lag_bits, self.gain_bits) if self.enabled else ()


#: Sections that only the host reads: no bit of the stream format and no weight depends on them,
#: so ``config_hash`` leaves them out.  ``pitch`` (when off) is left out too, see ``to_dict``.
HOST_SECTIONS = ("postfilter", "search", "noise_fill", "input")


@dataclass(frozen=True)
class CodecConfig:
    """A whole codec.  See the section classes for the meaning of each field."""
    signal: SignalConfig = field(default_factory=SignalConfig)
    lpc: LpcConfig = field(default_factory=LpcConfig)
    gain: GainConfig = field(default_factory=GainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    fixed: FixedPointConfig = field(default_factory=FixedPointConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    postfilter: PostfilterConfig = field(default_factory=PostfilterConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    noise_fill: NoiseFillConfig = field(default_factory=NoiseFillConfig)
    input: InputConfig = field(default_factory=InputConfig)
    pitch: PitchConfig = field(default_factory=PitchConfig)

    def __post_init__(self):
        self.validate()

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def coefficients(self) -> int:
        return self.signal.coefficients

    @property
    def code_bits_total(self) -> int:
        return self.network.code_offsets[-1]

    def raw_bits_per_frame(self, stages: int | None = None) -> int:
        """Bits per frame before entropy coding: side information plus the first ``stages`` codes."""
        k = self.network.stages if stages is None else stages
        return (self.lpc.bits_per_frame + self.gain.bits + sum(self.pitch.side_widths)
                + self.network.code_offsets[k])

    def raw_kbps(self, stages: int | None = None) -> float:
        return self.raw_bits_per_frame(stages) * self.signal.frame_rate / 1000

    def layer_shapes(self, stage: int) -> dict[str, list[tuple[str, int, int]]]:
        """``{"encoder": [(kind, fan_in, fan_out), ...], "decoder": [...]}`` for one stage.

        Kinds: ``in`` (hardtanh, no residual), ``res`` (h + hardtanh(.)), ``code`` (sign),
        ``out`` (linear).  This list is the layer schedule of the golden model and of the hardware
        sequencer.
        """
        n = self.network
        d, h, b = self.coefficients // n.subbands, n.hidden, n.code_bits[stage] // n.subbands
        enc = [("in", d, h)] + [("res", h, h)] * n.res_layers + [("code", h, b)]
        dec = [("in", b, h)] + [("res", h, h)] * n.res_layers + [("out", h, d)]
        return {"encoder": enc, "decoder": dec}

    def core_layers(self, side: str) -> list[tuple[int, str, int]]:
        """The networks' layers one core runs per frame, in its order, as ``(stage, net, layer)``
        (``net`` is ``"encoder"`` or ``"decoder"``, ``layer`` an index into
        ``layer_shapes(stage)[net]``): the one definition of what the ``encoder`` core (stage by
        stage its encoder, then its decoder for the residual the next stage codes: decoders
        1..N-1, not N) and the ``decoder`` core (decoders 1..N) compute.  ``hw.schedule.Schedule``
        lays its ops out in this order; the MAC counts below sum it.  A searched stage's
        decoder runs more than once (``hw.schedule.Schedule.stage_decoder_runs``)."""
        if side not in ("encoder", "decoder"):
            raise ValueError(f"side must be 'encoder' or 'decoder', not {side!r}")
        N, out = self.network.stages, []
        for s in range(N):
            shapes = self.layer_shapes(s)
            nets = (("encoder",) + (("decoder",) if s < N - 1 else ())) if side == "encoder" else ("decoder",)
            out += [(s, net, i) for net in nets for i in range(len(shapes[net]))]
        return out

    def search_bits(self, stage: int) -> int:
        """Code bits the encoder's search visits per pass in stage ``stage`` (0-based): 0 when
        the stage is not searched (no search, or the last stage)."""
        if not self.search.passes or stage >= self.network.stages - 1:
            return 0
        b = self.network.code_bits[stage]
        return min(self.search.stage_candidates(stage) or b, b)

    def binary_macs_per_frame(self, side: str) -> int:
        """Binary multiply-accumulates per frame of the ``encoder`` core (all encoders and the
        decoders 1..N-1) or of the ``decoder`` core (all decoders); the shared network of a
        sub-band model runs once per sub-band."""
        shapes = [self.layer_shapes(s) for s in range(self.network.stages)]
        total = 0
        for s, net, i in self.core_layers(side):
            _, fan_in, fan_out = shapes[s][net][i]
            total += fan_in * fan_out
        return total * self.network.subbands

    # ---- checks ---------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        """Weights, biases and scales of the whole network (what a model file's state holds)."""
        n = self.network
        per_out = 2                                  # a bias and a scale per output (model.net)
        per_band = sum(i * o + per_out * o for st in range(n.stages) for side in ("encoder", "decoder")
                       for _, i, o in self.layer_shapes(st)[side])
        return per_band          # sub-bands share one network's weights

    def _check_types(self) -> None:
        """Every field has its default's type (an int field an int, not a bool or 2.5; a float
        field a finite number; a schedule a non-empty list of such), before any check or size
        computes with it: a model file's config is read from the file."""
        for sec in dataclasses.fields(self):
            obj = getattr(self, sec.name)
            for f in dataclasses.fields(obj):
                v, d = getattr(obj, f.name), f.default
                what = f"{sec.name}.{f.name}"
                if isinstance(d, bool) or isinstance(d, str):
                    if type(v) is not type(d):
                        raise ConfigError(f"{what} must be a {type(d).__name__}, not {v!r}")
                    continue
                vals = v if isinstance(v, tuple) else (v,)
                if isinstance(v, tuple) and not v:
                    raise ConfigError(f"{what} must not be an empty list")
                want_int = isinstance(d, int) or (isinstance(d, tuple) and all(isinstance(x, int) for x in d))
                for x in vals:
                    if isinstance(x, bool) or not isinstance(x, (int, float)):
                        raise ConfigError(f"{what} must be a number, not {v!r}")
                    if want_int and not isinstance(x, int):
                        raise ConfigError(f"{what} must be an integer, not {v!r}")
                    if isinstance(x, float) and not math.isfinite(x):
                        raise ConfigError(f"{what} must be a finite number, not {v!r}")

    def _check_limits(self) -> None:
        """``LIMITS`` (``model.bitstream``), before any other check computes with the sizes."""
        self._check_types()
        s, n, sc, l, g, e, f, pt = (self.signal, self.network, self.search, self.lpc, self.gain,
                                    self.entropy, self.fixed, self.pitch)
        ints = {"sample_rate": s.sample_rate, "hop": s.hop, "stages": n.stages, "hidden": n.hidden,
                "res_layers": n.res_layers, "subbands": n.subbands, "search_passes": sc.passes,
                "lpc_order": l.order, "lsf_bits": l.lsf_bits, "lpc_window": l.window, "gain_bits": g.bits,
                "pitch_lag_max": pt.lag_max, "pitch_gain_bits": pt.gain_bits, "symbol_bits": e.symbol_bits,
                "max_code_len": e.max_code_len, "packet_frames": e.packet_frames, "act_bits": f.act_bits,
                "scale_bits": f.scale_bits, "bias_bits": f.bias_bits}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, not {v!r}")
            if not 0 <= v <= LIMITS[name]:
                raise ConfigError(f"{name} = {v} is outside 0..{LIMITS[name]} (bitstream.LIMITS)")
        bits = n.code_bits
        if not isinstance(bits, (tuple, list)) or len(bits) > LIMITS["stages"] or any(
                isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= LIMITS["code_bits"] for b in bits):
            raise ConfigError(f"code_bits must list at most {LIMITS['stages']} integers of "
                              f"0..{LIMITS['code_bits']} (bitstream.LIMITS)")
        cands = _schedule_values(sc.candidates)
        if len(cands) > LIMITS["stages"] or any(not 0 <= c <= LIMITS["search_candidates"] for c in cands):
            raise ConfigError(f"search candidates: at most {LIMITS['stages']} numbers of "
                              f"0..{LIMITS['search_candidates']} (bitstream.LIMITS)")
        if len(_schedule_values(self.postfilter.num_gamma)) > LIMITS["stages"]:
            raise ConfigError(f"postfilter num_gamma: at most {LIMITS['stages']} values (bitstream.LIMITS)")
        if len(bits) == n.stages and n.stages and n.subbands and self.parameter_count() > MAX_PARAMETERS:
            raise ConfigError(f"the network would hold {self.parameter_count():,} parameters; at most "
                              f"{MAX_PARAMETERS:,} (bitstream.LIMITS)")

    def validate(self) -> None:
        self._check_limits()
        s, n, f, l, g, e = self.signal, self.network, self.fixed, self.lpc, self.gain, self.entropy
        if s.sample_rate <= 0 or s.hop <= 0:
            raise ConfigError("sample_rate and hop must be positive")
        pf = self.postfilter
        nums = _schedule_values(pf.num_gamma)
        if not (nums and all(0 <= g < 1 for g in nums) and 0 <= pf.den_gamma < 1 and -1 < pf.tilt < 1):
            raise ConfigError("postfilter gammas must be in [0, 1) (num_gamma: one number or a non-empty "
                              "list) and tilt in (-1, 1)")
        sc = self.search
        cands = _schedule_values(sc.candidates)
        if sc.passes < 0 or not cands or any(not isinstance(c, int) or c < 0 for c in cands):
            raise ConfigError("search passes and candidates must be non-negative integers "
                              "(candidates: one number or a non-empty list)")
        nf = self.noise_fill
        if not (0 <= nf.fraction <= 1 and 0 <= nf.start_hz <= self.signal.sample_rate / 2):
            raise ConfigError("noise_fill: fraction in [0, 1], start_hz in [0, sample_rate/2]")
        if s.transform not in ("mdct", "stft"):
            raise ConfigError(f"transform must be 'mdct' or 'stft', not {s.transform!r}")
        if n.stages < 1:
            raise ConfigError("a codec needs at least one stage")
        if len(n.code_bits) != n.stages:
            raise ConfigError(f"code_bits lists {len(n.code_bits)} stages, network has {n.stages}")
        if any(b < 1 for b in n.code_bits) or n.hidden < 1 or n.res_layers < 0:
            raise ConfigError("code_bits and hidden must be positive, res_layers non-negative")
        if n.subbands < 1:
            raise ConfigError("network.subbands must be at least 1")
        if s.coefficients % n.subbands:
            raise ConfigError(f"network.subbands={n.subbands} does not divide the {s.coefficients} "
                              f"coefficients per frame")
        if any(b % n.subbands for b in n.code_bits):
            raise ConfigError(f"network.subbands={n.subbands} must divide every stage's code_bits "
                              f"({list(n.code_bits)})")
        if not 2 <= f.act_int_bits < f.act_bits:
            raise ConfigError("need 2 <= act_int_bits < act_bits (hardtanh output +-1 must fit)")
        if not 2 <= f.scale_bits <= LIMITS["scale_bits"]:
            raise ConfigError(f"scale_bits must be 2..{LIMITS['scale_bits']}")
        if not f.act_frac + 2 <= f.bias_bits <= LIMITS["bias_bits"]:
            raise ConfigError(f"bias_bits must be act_frac+2..{LIMITS['bias_bits']} (a bias of +-1 must fit)")
        widest = max(max(s.coefficients, n.hidden, *n.code_bits), 1)
        if f.product_bits(widest) > 62:
            raise ConfigError(f"acc * scale needs {f.product_bits(widest)} bits; at most 62 (int64 golden model)")
        if l.enabled and not (1 <= l.order and 0 < l.gamma <= 1 and 1 <= l.lsf_bits):
            raise ConfigError(f"lpc: order 1..{LIMITS['lpc_order']}, gamma in (0, 1], lsf_bits 1..{LIMITS['lsf_bits']}")
        if l.enabled and l.window < s.hop:
            raise ConfigError("lpc.window must be at least one hop")
        if not 1 <= g.bits or g.step_db <= 0:
            raise ConfigError(f"gain: bits 1..{LIMITS['gain_bits']} and a positive step")
        ip, pt = self.input, self.pitch
        if not (0 <= ip.highpass_hz < s.sample_rate / 2 and 1 <= ip.highpass_order <= 8):
            raise ConfigError("input: highpass_hz in [0, sample_rate/2), highpass_order 1..8")
        if pt.domain not in ("signal", "residual"):
            raise ConfigError(f"pitch.domain must be 'signal' or 'residual', not {pt.domain!r}")
        if not (2 <= pt.lag_min < pt.lag_max and 1 <= pt.gain_bits
                and 0 < pt.gain_step and pt.gain_step * ((1 << pt.gain_bits) - 1) < 1
                and 0 <= pt.strength <= 1 and 0 <= pt.threshold <= 1 and 0 < pt.octave <= 1
                and 0 <= pt.fade <= s.hop):
            raise ConfigError(f"pitch: 2 <= lag_min < lag_max <= {LIMITS['pitch_lag_max']}, gain_bits "
                              f"1..{LIMITS['pitch_gain_bits']} with every gain "
                              "below 1, strength, threshold in [0, 1], octave in (0, 1], fade 0..hop")
        if not 1 <= e.symbol_bits or e.max_code_len < e.symbol_bits or e.packet_frames < 1:
            raise ConfigError(f"entropy: symbol_bits 1..{LIMITS['symbol_bits']}, max_code_len symbol_bits.."
                              f"{LIMITS['max_code_len']}, packet_frames 1..{LIMITS['packet_frames']}")
        if any(b % e.symbol_bits for b in n.code_bits):
            raise ConfigError(f"every stage's code_bits must be a multiple of symbol_bits={e.symbol_bits}")

    # ---- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # network.subbands was added after models, exports and bitstreams were made: at its
        # default (1) it is left out, so their configs, JSON files and config_hash stay as they were
        if d["network"]["subbands"] == 1:
            del d["network"]["subbands"]
        # likewise the pitch pre-filter when it is off: older configs hash as they did
        if not d["pitch"]["enabled"]:
            del d["pitch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        if not isinstance(d, dict):
            raise ConfigError("a config is a JSON object of sections")
        sections = {"signal": SignalConfig, "lpc": LpcConfig, "gain": GainConfig,
                    "network": NetworkConfig, "fixed": FixedPointConfig, "entropy": EntropyConfig,
                    "postfilter": PostfilterConfig, "search": SearchConfig,
                    "noise_fill": NoiseFillConfig, "input": InputConfig, "pitch": PitchConfig}
        # sections newer than a file: a config written before they existed had them off
        absent = {"input": {"highpass_hz": 0.0}, "pitch": {"enabled": False}}
        unknown = set(d) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        kw = {}
        for name, klass in sections.items():
            if not isinstance(d.get(name, {}), dict):
                raise ConfigError(f"config section [{name}] is not an object")
            sub = dict(d[name]) if name in d else dict(absent.get(name, {}))
            names = {f.name for f in dataclasses.fields(klass)}
            bad = set(sub) - names
            if bad:
                raise ConfigError(f"unknown field(s) in [{name}]: {', '.join(sorted(bad))}")
            try:
                kw[name] = klass(**sub)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"config section [{name}]: {exc}") from None
        try:
            return cls(**kw)
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # a field of the wrong type
            raise ConfigError(f"config has a field of the wrong type ({exc})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "CodecConfig":
        path = Path(path)
        if path.suffix == "" and path.name in PRESETS:
            return preset(path.name)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found (presets: {', '.join(PRESETS)})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not a text (JSON) file") from None
        except OSError as exc:      # a folder, no permission ...
            raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
        try:
            return cls.from_dict(d)
        except TypeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    def replace(self, **sections) -> "CodecConfig":
        """``cfg.replace(fixed={"act_bits": 10})``: a copy with some fields of some sections changed."""
        d = dataclasses.asdict(self)
        for name, changes in sections.items():
            if name not in d:
                raise ConfigError(f"unknown config section {name!r}")
            d[name].update(changes)
        return CodecConfig.from_dict(d)

    @property
    def config_hash(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON: identifies a codec's bitstream and
        hardware.  The host-side sections (decoder postfilter and noise filling, encoder code
        search) are not part of it: none changes the format or a weight."""
        return hash_config_dict(self.to_dict())


def hash_config_dict(d: dict) -> str:
    """``CodecConfig.config_hash`` of a config in its ``to_dict`` form (also one that does not
    validate: a test builds hostile model files with it)."""
    d = {k: v for k, v in d.items() if k not in HOST_SECTIONS}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tiny() -> CodecConfig:
    # Small enough for fast unit tests and a bit-exact simulation of every core in CI.
    return CodecConfig(
        signal=SignalConfig(hop=64),
        lpc=LpcConfig(order=8, window=128, lsf_bits=3),
        network=NetworkConfig(stages=2, code_bits=(16, 16), hidden=32, res_layers=1),
        entropy=EntropyConfig(symbol_bits=8, max_code_len=12, packet_frames=25),
        pitch=PitchConfig(fade=16),
    )


def _large() -> CodecConfig:
    # The ECP5 codec: 18 stages of 32 bits (the same 576 code bits per frame as the default in
    # finer steps) at hidden width 128, and the default's 4-bit LSFs; why: docs/RESULTS.md.  Its
    # encoder's weights are far more than an iCE40 UP5K holds; a ULX3S-85F holds one core
    # (encoder and decoder are one bitstream each).
    return CodecConfig(network=NetworkConfig(stages=18, code_bits=(32,) * 18, hidden=128, res_layers=1))


PRESETS = {
    "default": CodecConfig,
    "tiny": _tiny,
    "large": _large,
}


def preset(name: str) -> CodecConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})") from None
