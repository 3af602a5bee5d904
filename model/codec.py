"""The codec end to end: model files, encoding a signal to a bitstream and decoding it back.

``Codec`` ties together the config, the trained cascade, the LSF quantizer and the Huffman
codebooks.  ``arith="float"`` runs the PyTorch model; ``arith="fixed"`` runs the integer golden
model, so that its bitstream is exactly what the hardware produces.

Model file (``.pt``, loaded with ``torch.load(weights_only=True)``): a dict with ``format``
("cascade-model"), ``version``, ``config`` (dict), ``config_hash``, ``state_dict``, ``lsf``
(quantizer levels), ``codebooks`` (Huffman, may be absent) and ``meta`` (how it was made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import dsp, golden
from .bitstream import Frames, SideCoder, _check_codebooks, read_stream, side_columns, write_stream
from .config import CodecConfig
from .export import quantize_model
from .modelfile import DEFAULT_MODEL, MODEL_FORMAT, MODEL_VERSION, ModelError, check_head
from .net import Cascade

__all__ = ["Codec", "ModelError", "DEFAULT_MODEL", "ARITHS"]

ARITHS = ("float", "fixed")


#: Huffman-code the stage sections of a stream only when it saves at least this share of their
#: bits (``Codec.stage_codebooks``): a bit error in a Huffman section costs the rest of the
#: section (its stage and the later ones of the packet's frames), in a raw one the bit it hits.
HUFFMAN_MIN_SAVING = 0.05

#: How ``Codec.decode`` conceals frames that lost their side information but kept their stage
#: codes (``_conceal``): ``"interpolate"`` (the default) or ``"hold"``.
CONCEAL_MODES = ("interpolate", "hold")

#: ``num_gamma`` values ``Codec.tune_postfilter`` tries by default (``cascade tune-postfilter``).
POSTFILTER_GAMMAS = (0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


@dataclass
class Codec:
    cfg: CodecConfig
    net: Cascade
    lsf_q: dsp.LsfQuantizer | None
    codebooks: list | None = None
    meta: dict = field(default_factory=dict)
    side: SideCoder | None = None
    #: How frames without side information are concealed (``_conceal``): ``"interpolate"`` or
    #: ``"hold"`` (``CONCEAL_MODES``).
    conceal: str = "interpolate"
    _int: golden.IntModel | None = field(default=None, repr=False)

    # ---- files ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> "Codec":
        path = Path(path) if path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model file {path} not found")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise ModelError(f"{path} is not a readable model file ({type(exc).__name__})") from None
        cfg = check_head(d, path)
        state = d.get("state_dict")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{path}: no weights")
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ModelError(f"{path}: weights {bad[0]} hold NaN or infinite values")
        # the network is sized by the config (bounded by bitstream.LIMITS); a file must also hold
        # the weights its config sizes, so what is allocated is bounded by the file's own size
        need = sum(i * o for st in range(cfg.network.stages) for side in ("encoder", "decoder")
                   for _, i, o in cfg.layer_shapes(st)[side])
        have = sum(v.numel() for v in state.values())
        if have < need:
            raise ModelError(f"{path}: holds {have:,} weight values, its config needs at least {need:,}")
        net = Cascade(cfg)
        try:
            net.load_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise ModelError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
        net.eval()
        from .huffman import Codebook
        try:
            lsf_q = dsp.LsfQuantizer.from_dict(d["lsf"]) if d.get("lsf") else None
            if lsf_q is not None and lsf_q.levels.shape != (cfg.lpc.order, 1 << cfg.lpc.lsf_bits):
                raise ValueError("LSF quantizer does not match the config")
            if lsf_q is not None and not (np.isfinite(lsf_q.levels).all() and np.isfinite(lsf_q.min_gap)):
                raise ValueError("LSF quantizer levels hold NaN or infinite values")
            codebooks = [Codebook.from_dict(c) for c in d["codebooks"]] if d.get("codebooks") else None
            if codebooks is not None and len(codebooks) != cfg.network.stages:
                raise ValueError("one Huffman codebook per stage expected")
            if codebooks is not None:
                _check_codebooks(codebooks, cfg.network.stages, cfg)   # symbol size, code lengths
            meta = dict(d.get("meta") or {})
            side = SideCoder.from_dict(d["side_codebooks"]) if d.get("side_codebooks") else None
            if side is not None:
                side.check(cfg)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ModelError(f"{path}: damaged quantizer, codebook or metadata ({type(exc).__name__}: {exc})") from None
        if cfg.lpc.enabled and lsf_q is None:
            raise ModelError(f"{path}: model uses LPC but has no LSF quantizer")
        return cls(cfg, net, lsf_q, codebooks, meta, side=side)

    def train_entropy_coders(self, signals: list[np.ndarray], arith: str = "fixed") -> None:
        """Huffman codebooks for the stage codes (from the codes ``arith`` gives on ``signals``,
        without code search: the codes the encoder core sends) and for the side information (LSF
        and gain index deltas)."""
        from .huffman import train_codebooks
        analyses = [dsp.analyze(s, self.cfg, self.lsf_q) for s in signals]
        frames = np.concatenate([an.frames[an.gain_idx > 0] for an in analyses])
        self.codebooks = train_codebooks(self.encode_frames(frames, arith, search=0), self.cfg)
        self.side = SideCoder.train([side_columns(an.lsf_idx, an.gain_idx, an.pitch, self.cfg)
                                     for an in analyses], self.cfg)

    def tune_postfilter(self, signals: list[np.ndarray], gammas=POSTFILTER_GAMMAS, arith: str = "fixed",
                        progress=None) -> dict:
        """Pick the formant postfilter's ``num_gamma`` for every number of decoded stages K
        (``PostfilterConfig.num_gamma``): each signal is encoded once (``arith``, the config's code
        search: what the encoder core sends), decoded with K = 1..N stages, postfiltered with each
        of ``gammas`` and scored with PESQ-WB against the signal; for each K the gamma of the best
        mean score is kept.  Sets ``self.cfg`` and returns the table (``gammas``, ``pesq_wb``
        [K][gamma], ``num_gamma``, ``files_judged``: files PESQ could score).  Use training data:
        the schedule is part of the model.  ``progress(done, total)`` is called after each
        (signal, K).  Raises ``ValueError`` for a codec without a formant postfilter (LPC or the
        postfilter off) and when PESQ can judge none of the signals."""
        import warnings
        from .metrics import MetricWarning, pesq_wb
        if not (self.cfg.postfilter.enabled and self.cfg.lpc.enabled):
            raise ValueError("this model has no formant postfilter to tune (its LPC or postfilter is off)")
        gammas = [float(g) for g in gammas]
        # one config per gamma; the config's own check refuses gammas outside [0, 1)
        cfgs = [self.cfg.replace(postfilter={"num_gamma": g}) for g in gammas]
        if not cfgs:
            raise ValueError("no gammas to try")
        N = self.cfg.network.stages
        scores = np.zeros((N, len(gammas)))
        counts = np.zeros((N, len(gammas)))
        done, total = 0, len(signals) * N
        for x in signals:
            fr = self.encode(x, arith)
            for k in range(1, N + 1):
                y = self.decode_frames(fr.codes[:k], arith)
                for j, cfg in enumerate(cfgs):
                    with warnings.catch_warnings():   # a file PESQ cannot judge is counted, not warned about
                        warnings.simplefilter("ignore", MetricWarning)
                        s = pesq_wb(x, dsp.synthesize(y, fr.lsf_idx, fr.gain_idx, fr.num_samples, cfg, self.lsf_q, k,
                                                    fr.pitch))
                    if np.isfinite(s):   # nan: PESQ cannot judge this file (too short, silent)
                        scores[k - 1, j] += s
                        counts[k - 1, j] += 1
                done += 1
                if progress:
                    progress(done, total)
        if not counts.any():
            raise ValueError("PESQ could judge none of the signals (too short or silent?)")
        mean = scores / np.maximum(counts, 1)
        best = tuple(gammas[int(np.argmax(row))] for row in mean)
        self.cfg = self.cfg.replace(postfilter={"num_gamma": list(best)})
        return {"gammas": gammas, "pesq_wb": mean.round(4).tolist(), "num_gamma": list(best),
                "files": len(signals), "files_judged": int(counts[-1].max()), "arith": arith}

    def provenance(self) -> str:
        """The commands that made this model file, from its ``meta``: the training command, then
        any ``cascade codebooks`` / ``cascade tune-postfilter`` / ``cascade set-search`` run on it since."""
        later = sum((self.meta.get(k, []) for k in ("codebook_updates", "postfilter_updates", "search_updates")), [])
        return " && ".join([str(self.meta.get("made_by", "?"))] + [u["command"] for u in later if "command" in u])

    def save(self, path: str | Path, force: bool = True) -> Path:
        """Write the model file (``model.files.write_file``: complete or not at all; with
        ``force=False`` an existing file is never replaced)."""
        from .files import write_file
        path = Path(path)
        d = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "config": self.cfg.to_dict(),
             "config_hash": self.cfg.config_hash, "state_dict": self.net.state_dict(),
             "lsf": self.lsf_q.to_dict() if self.lsf_q else None,
             "codebooks": [c.to_dict() for c in self.codebooks] if self.codebooks else None,
             "side_codebooks": self.side.to_dict() if self.side else None,
             "meta": json.loads(json.dumps(self.meta, default=str))}  # plain types only
        return write_file(path, lambda f: torch.save(d, f), force)

    # ---- arithmetic -----------------------------------------------------------------------
    def int_model(self) -> golden.IntModel:
        if self._int is None:
            self._int = quantize_model(self.net, self.cfg)
        return self._int

    def _check_arith(self, arith: str):
        if arith not in ARITHS:
            raise ValueError(f"arith must be one of {ARITHS}")

    def encode_frames(self, x: np.ndarray, arith: str = "float", stages: int | None = None,
                      search: int | None = None) -> list[np.ndarray]:
        """Normalized frames (T, D) -> per-stage code bits [(T, B_n)] uint8 (1 = +1) of the
        first ``stages`` stages (default all).  ``search``: passes of the closed-loop code search
        (``SearchConfig``; default ``cfg.search.passes``, what the encoder core does; 0 = none)."""
        self._check_arith(arith)
        sc = self.cfg.search
        passes = sc.passes if search is None else search
        if arith == "fixed":
            codes = golden.encode(self.int_model(), golden.quantize_frames(x, self.cfg),
                                  search=passes, candidates=sc.candidates, stages=stages)
            return [c.astype(np.uint8) for c in codes]
        with torch.no_grad():
            r = torch.from_numpy(np.asarray(x, dtype=np.float32))
            if not passes:
                return [(c.numpy() > 0).astype(np.uint8) for c in self.net(r, stages)[0]]
            scfg = self.cfg.replace(search={"passes": passes})
            codes = []
            for n, stage in enumerate(self.net.stages[:stages]):
                z = stage.code_preactivation(r).numpy()

                def error(b, st=stage, target=r.numpy()):
                    y = st.decode(torch.from_numpy(b.astype(np.float32) * 2 - 1)).numpy()
                    return ((target - y) ** 2).sum(axis=1)
                bits = (z >= 0).astype(np.int64)
                if scfg.search_bits(n):      # the stages the golden model searches, as many bits
                    bits = golden.refine_code(error, bits, np.abs(z), passes, scfg.search_bits(n))
                codes.append(bits.astype(np.uint8))
                r = r - stage.decode(torch.from_numpy(bits.astype(np.float32) * 2 - 1))
        return codes

    def decode_frames(self, codes: list[np.ndarray], arith: str = "float",
                      frame_stages: np.ndarray | None = None) -> np.ndarray:
        """Per-stage code bits of the first K stages -> normalized frames (T, D).  ``frame_stages``
        (T,): frame t is decoded from its first ``frame_stages[t]`` stages only (zeros for 0)."""
        self._check_arith(arith)
        if arith == "fixed":
            return golden.dequantize_frames(golden.decode(self.int_model(), codes, frame_stages=frame_stages),
                                            self.cfg)
        with torch.no_grad():
            pm = [torch.from_numpy(c.astype(np.float32) * 2 - 1) for c in codes]
            if frame_stages is None:
                return self.net.decode(pm).double().numpy()
            fs = torch.from_numpy(np.asarray(frame_stages))
            return sum(self.net.stages[n].decode(c) * (fs > n)[:, None] for n, c in enumerate(pm)).double().numpy()

    # ---- signals and bitstreams -------------------------------------------------------------
    def encode(self, signal: np.ndarray, arith: str = "float", stages: int | None = None,
               search: int | None = None) -> Frames:
        k = self.cfg.network.stages if stages is None else stages
        if not 1 <= k <= self.cfg.network.stages:
            raise ValueError(f"stages must be 1..{self.cfg.network.stages}, not {k}")
        an = dsp.analyze(signal, self.cfg, self.lsf_q)
        codes = self.encode_frames(an.frames, arith, k, search)
        return Frames(an.num_samples, an.lsf_idx, an.gain_idx, codes, pitch=an.pitch)

    def decode(self, frames: Frames, arith: str = "float", stages: int | None = None) -> np.ndarray:
        """Frames -> speech with the first ``stages`` stages (default all the stream holds).  A
        frame whose later stages were damaged (``frames.stages``) decodes with the stages before
        them; one with none repeats the frame before's decoded frame; one whose side information
        is lost (``frames.lost``) keeps its own stages and gets its LSFs and gain interpolated
        between the good frames around it, or those of the frame before, 3 dB quieter per frame,
        where none follows (``_conceal``)."""
        if stages is not None and not 1 <= stages <= len(frames.codes):
            raise ValueError(f"stages must be 1..{len(frames.codes)} for this stream, not {stages}")
        codes = frames.codes if stages is None else frames.codes[:stages]
        if not codes:
            raise ValueError("no stage to decode")
        K = len(codes)
        fs = None if frames.stages is None else np.minimum(np.asarray(frames.stages), K)
        if fs is not None and (fs >= K).all():
            fs = None
        y = self.decode_frames(codes, arith, fs)
        lsf_idx, gain_idx = frames.lsf_idx.copy(), frames.gain_idx.copy()
        pitch = None if frames.pitch is None else frames.pitch.copy()
        lost = np.zeros(len(gain_idx), bool) if frames.lost is None else np.asarray(frames.lost, bool)
        none = np.zeros_like(lost) if fs is None else fs == 0
        if lost.any() or none.any():
            y, lsf_idx, gain_idx, pitch = _conceal(y, lsf_idx, gain_idx, pitch, lost, none, self.cfg,
                                                   self.conceal == "interpolate")
        return dsp.synthesize(y, lsf_idx, gain_idx, frames.num_samples, self.cfg, self.lsf_q,
                              K if fs is None else np.maximum(fs, 1), pitch)

    def stage_codebooks(self, frames: Frames) -> list | None:
        """The codebooks to write ``frames`` with: the model's when Huffman makes the stage
        sections at least ``HUFFMAN_MIN_SAVING`` smaller than raw, else None (raw sections, where
        a bit error costs the code bit it hits instead of the rest of the section)."""
        if not self.codebooks:
            return None
        raw = sum(c.size for c in frames.codes)
        coded = sum(self.codebooks[n].cost(c) for n, c in enumerate(frames.codes))
        return self.codebooks if raw and coded <= (1 - HUFFMAN_MIN_SAVING) * raw else None

    def encode_bytes(self, signal: np.ndarray, arith: str = "float", stages: int | None = None,
                     search: int | None = None, robust: bool = False, side_block: int | None = None) -> bytes:
        """``signal`` -> stream bytes (format version 4).  The side information is compact (per
        packet blocks of ``side_block`` frames, default ``bitstream.SIDE_BLOCK_FRAMES``, each
        delta+Huffman coded with the model's side codebooks and checked by a CRC-8: a bit error
        costs its block's side information) unless ``robust`` (a fixed-width unit with a CRC-8 per
        frame: a bit error costs one frame's) or the model file has no side codebooks
        (``self.side is None``: robust units, the only mode it can write)."""
        frames = self.encode(signal, arith, stages, search)
        return self.write_frames(frames, robust, side_block)

    def write_frames(self, frames: Frames, robust: bool = False, side_block: int | None = None) -> bytes:
        """Encoded frames -> stream bytes, as ``encode_bytes`` writes them."""
        from .bitstream import SIDE_BLOCK_FRAMES
        return write_stream(frames, self.cfg, self.stage_codebooks(frames), None if robust else self.side,
                            SIDE_BLOCK_FRAMES if side_block is None else side_block)

    def decode_bytes(self, data: bytes, arith: str = "float", stages: int | None = None) -> tuple[np.ndarray, Frames]:
        frames = read_stream(data, self.cfg, self.codebooks, side=self.side)
        return self.decode(frames, arith, stages), frames


def _conceal(y, lsf_idx, gain_idx, pitch, lost, none, cfg, interpolate: bool = True):
    """Conceal frames without stages (``none``) and frames without side information (``lost``).

    A frame without stages repeats the decoded frame before.  A run of frames that lost their
    side information but kept their stage codes (a damaged compact side block or side unit),
    with a good frame on either side and ``interpolate``, gets LSF and gain indices interpolated
    linearly between those two frames (rounded half up; ``LsfQuantizer.dequantize`` keeps any indices
    stable) and the pitch lag interpolated with the smaller pitch gain when the two lags (index +
    ``pitch.lag_min``) agree within an eighth, else no pitch comb.  Every other lost frame takes the LSFs and pitch lag of
    the frame before, no pitch comb, and its gain 3 dB lower (each further lost frame 3 dB
    more)."""
    step = max(1, int(round(3.0 / cfg.gain.step_db)))
    T = len(lost)
    bridged = np.zeros(T, bool)
    if interpolate:
        t = 0
        while t < T:
            if not lost[t]:
                t += 1
                continue
            e = t
            while e < T and lost[e]:
                e += 1
            if t > 0 and e < T and not none[t:e].any() and not none[t - 1] and not none[e]:
                w = (np.arange(t, e) - (t - 1)) / (e - (t - 1))
                lsf_idx[t:e] = np.floor((1 - w[:, None]) * lsf_idx[t - 1] + w[:, None] * lsf_idx[e] + 0.5)
                gain_idx[t:e] = np.floor((1 - w) * gain_idx[t - 1] + w * gain_idx[e] + 0.5)
                if pitch is not None:
                    (l0, g0), (l1, g1) = pitch[t - 1], pitch[e]
                    if g0 and g1 and abs(int(l0) - int(l1)) <= (int(l0) + cfg.pitch.lag_min) // 8:
                        pitch[t:e, 0] = np.floor((1 - w) * l0 + w * l1 + 0.5)
                        pitch[t:e, 1] = min(g0, g1)
                    else:
                        pitch[t:e] = (l0, 0)
                bridged[t:e] = True
            t = e
    for t in np.flatnonzero((lost & ~bridged) | none):
        if none[t]:
            y[t] = y[t - 1] if t else 0
        if lost[t]:
            if t == 0:
                gain_idx[t] = 0
                continue
            lsf_idx[t] = lsf_idx[t - 1]
            gain_idx[t] = max(0, gain_idx[t - 1] - step)
            if pitch is not None:
                pitch[t] = (pitch[t - 1, 0], 0)
    return y, lsf_idx, gain_idx, pitch
