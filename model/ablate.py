"""``cascade ablate``: which parts of the codec matter, measured with the same budget.

Each *variant* of :func:`variants` is the default codec with one thing changed: a config field
(``CodecConfig.replace``), a training option (:class:`model.train.TrainOptions`) or the training
data.  ``cascade ablate TRAIN_DIR... --out OUT`` trains every variant with the same reduced budget
(``--epochs`` greedy epochs per stage, no fine-tuning unless the variant is about it, the same
seed), evaluates each model with ``--arith fixed`` (the integer golden model = the hardware) at
every K on the held-out files, and writes to ``OUT``:

* ``models/NAME.pt``: the trained models (``models/.gitignore`` keeps them out of git).  A
  variant whose model exists is not trained again (``--force`` retrains it), so the study can be
  run piecewise with ``--only``; every run rewrites the report from all the models present.
  A model made with other settings (other data, ``--epochs``, ``--seed`` or base config) stops
  the run rather than being mixed into the table.
* ``configs/NAME.json``: each variant's full config; with it, the ``cascade train`` command line
  recorded for the variant reproduces its model.
* ``evals/NAME.json``: per-file results at every K (a cache keyed by the model's and the test
  files' SHA-256, so an unchanged model is not evaluated again).
* ``ablation.json``: every number, the train and eval commands of each variant, the baselines.
* ``ablation.md``: the table (full K, the K nearest ``--rate`` kbps and PESQ-WB interpolated at
  ``--rate`` kbps, deltas against the ``baseline`` row, training seconds) and what was not run.
* ``ablation.png``: rate-quality curves of all variants beside Opus, Speex and G.722, measured in
  the same run on the same files (``--no-baselines`` leaves them out).

Training data convention: the first TRAIN_DIR is the real speech, further folders are extra
(e.g. ``data/synth``, espeak-ng speech); the ``real_only`` variant trains on the first folder only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import HOST_SECTIONS, CodecConfig, ConfigError, PostfilterConfig

__all__ = ["Variant", "NOT_RUN", "variants", "study_options", "variant_options",
           "variant_config", "train_command", "eval_command", "summarize", "run_ablation", "AblationOptions"]

#: Greedy epochs per stage of the study (a reduced budget: the whole study fits in CPU hours).
DEFAULT_EPOCHS = 4
#: Rate (kbps) of the equal-rate columns.
DEFAULT_RATE = 20.0
# Evaluations use a variant's host-only config sections (config.HOST_SECTIONS: decoder
# postfilter and noise filling, encoder code search, input high-pass), not those saved in the model file.


@dataclass(frozen=True)
class Variant:
    """One row of the study.

    ``config``: ``{section: {field: value}}`` applied to the base config with
    ``CodecConfig.replace``; ``options``: :class:`~model.train.TrainOptions` fields changed from
    :func:`study_options`; ``data``: ``"all"`` TRAIN_DIRs or ``"first"`` only; ``skip``: why the
    variant cannot run with this base config (then it is reported as not run); ``eval_of``: the
    variant whose model this one evaluates with ``config`` applied at the decoder only (no
    training: for decoder-side settings such as the postfilter, which leave the bitstream
    alone)."""
    name: str
    tests: str
    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    data: str = "all"
    skip: str | None = None
    eval_of: str | None = None

    @property
    def changed(self) -> str:
        """What differs from the baseline, in a few words."""
        parts = []
        for sec, ch in self.config.items():
            if sec == "network" and "code_bits" in ch:
                bits = ch["code_bits"]
                same = len(set(bits)) == 1
                parts.append(f"{len(bits)} stage{'s' if len(bits) > 1 else ''} x "
                             f"{bits[0] if same else list(bits)} bits")
                ch = {k: v for k, v in ch.items() if k not in ("code_bits", "stages")}
            parts += [f"{sec}.{k}={v}" for k, v in ch.items()]
        parts += [f"{k}={v}" for k, v in self.options.items()]
        if self.data == "first":
            parts.append("first TRAIN_DIR only")
        if self.eval_of:
            parts.append(f"no training, model of `{self.eval_of}`")
        return ", ".join(parts) or "nothing (reference)"


def _fixed_variants() -> list[Variant]:
    return [
        Variant("baseline", "The reference: the default codec at the study's budget (greedy "
                "training only); every delta is against this row."),
        Variant("stft", "Does the critically sampled MDCT matter? STFT frames (real and "
                "imaginary parts, twice the coefficients per frame) with the same code bits.",
                config={"signal": {"transform": "stft"}}),
        Variant("lpc8", "A coarser spectral envelope: order-8 LPC sends half the LSF bits and "
                "leaves more of the envelope to the autoencoders.", config={"lpc": {"order": 8}}),
        Variant("lpc24", "A finer spectral envelope: order-24 LPC, 50 % more LSF bits.",
                config={"lpc": {"order": 24}}),
        Variant("lsf2", "Coarser LSF quantization (2 bits per LSF): fewer side bits, a less "
                "exact synthesis filter.", config={"lpc": {"lsf_bits": 2}}),
        Variant("lsf4", "Finer LSF quantization (4 bits per LSF): more side bits, a more exact "
                "synthesis filter.", config={"lpc": {"lsf_bits": 4}}),
        Variant("gamma085", "Perceptual weighting: gamma 0.85 makes A(z/gamma) flatter, so the "
                "coding noise is shaped less (closer to a plain MSE on the signal).",
                config={"lpc": {"gamma": 0.85}}),
        Variant("gamma100", "Perceptual weighting: gamma 1.0 whitens the residual fully, so the "
                "coding noise follows the whole LPC envelope.", config={"lpc": {"gamma": 1.0}}),
        Variant("no_lpc", "No LPC at all: the autoencoders code the gain-normalized spectrum of "
                "the signal itself, the MSE is unweighted and no LSF bits are sent.",
                config={"lpc": {"enabled": False}}),
        Variant("finetune", "Joint fine-tuning (patent claims 3-4): greedy training plus 2 rounds "
                "of all stages together, each of half the greedy epochs.",
                options={"finetune_rounds": 2}),
        Variant("learned_scale", "Binary layers' per-output scales trained as parameters of their "
                "own (TrainOptions.scale='learned', the default since this study's base was made) "
                "instead of the study's mean |W| of the latent weights (XNOR-Net).  Same network, "
                "same hardware: only the trained scale values differ.",
                options={"scale": "learned"}),
        Variant("epochs1", "Training budget: 1 greedy epoch per stage instead of the study's "
                "budget (with 32 s of real speech, longer training might overfit; with the mean "
                "scale rule it does not help even on the training frames).",
                options={"greedy_epochs": 1}),
        Variant("epochs4", "Training budget: 4 greedy epochs per stage.",
                options={"greedy_epochs": 4}),
        Variant("no_augment", "Data augmentation: no speed-perturbed (0.9x, 1.1x) copies of the "
                "training files.", options={"augment": False}),
        Variant("real_only", "Extra data: train on the first TRAIN_DIR (real speech) only, "
                "without the further folders (the synthetic espeak-ng speech).", data="first"),
        Variant("loss_bands", "Perceptual loss: MSE plus a multi-resolution log band-energy term "
                "(TrainOptions.loss='bands'), which penalizes spectral holes.",
                options={"loss": "bands"}),
        Variant("entropy_aware", "Entropy-aware training: 1 dB per bit of the code bits' mean "
                "binary entropy added to the greedy loss (TrainOptions.rate_weight), so the codes "
                "skew and Huffman coding spends fewer bits; compare at equal kbps.",
                options={"rate_weight": 1.0}),
        Variant("entropy_aware01", "Entropy-aware training, milder: 0.1 dB per bit of mean code "
                "entropy.", options={"rate_weight": 0.1}),
        Variant("no_postfilter", "Decoder-side formant postfilter (PostfilterConfig): the "
                "baseline's model and streams decoded without it.",
                config={"postfilter": {"enabled": False}}, eval_of="baseline"),
        Variant("no_pitch_postfilter", "Decoder-side pitch (long-term) postfilter "
                "(PostfilterConfig.pitch_gain): the baseline's model and streams decoded without "
                "it (the formant postfilter stays).",
                config={"postfilter": {"pitch_gain": 0.0}}, eval_of="baseline"),
        Variant("postfilter_per_k", "Decoder-side formant postfilter strength per number of "
                "decoded stages K (PostfilterConfig.num_gamma): the baseline's streams decoded with "
                "the schedule `cascade tune-postfilter data/train` picked for the shipped default "
                "model (0.70 for K = 1..5, 0.75 for K = 6..8, 0.80 from K = 9) instead of 0.75 "
                "for every K.", config={"postfilter": {"num_gamma": [0.7] * 5 + [0.75] * 3 + [0.8]}},
                eval_of="baseline"),
        Variant("noise_fill", "Decoder-side noise filling (NoiseFillConfig): the baseline's "
                "streams decoded with half of each frame's missing energy added as white noise "
                "above 4.8 kHz.", config={"noise_fill": {"enabled": True}}, eval_of="baseline"),
        Variant("no_noise_fill", "Decoder-side noise filling: the baseline's streams decoded "
                "without it.", config={"noise_fill": {"enabled": False}}, eval_of="baseline"),
        Variant("search", "Closed-loop code search (SearchConfig, analysis by synthesis): the "
                "baseline's model, the code of stages 1..N-1 refined by 2 passes of single-bit "
                "flips over all bits against the stage's own decoder (software only: 65x the "
                "encoder core's decoder work).  Same decoder, same format.",
                config={"search": {"passes": 2, "candidates": 0}}, eval_of="baseline"),
        Variant("search_c16", "Cheaper code search: 1 pass over the 16 least certain bits of "
                "each searched stage (16 trial decoder runs per stage instead of 128).",
                config={"search": {"passes": 1, "candidates": 16}}, eval_of="baseline"),
        Variant("search_c6", "Code search with the default's 48 trials per frame spread evenly: "
                "1 pass over the 6 least certain bits of each searched stage.",
                config={"search": {"passes": 1, "candidates": 6}}, eval_of="baseline"),
        Variant("search_front", "The default code search, done by the encoder core in real time "
                "on the shipped boards: 1 pass, 48 trials per frame spent mostly on the first "
                "stages, which every K decodes (24, 8, 4, 4, then 2 bits per stage).",
                config={"search": {"passes": 1, "candidates": [24, 8, 4, 4, 2]}}, eval_of="baseline"),
        Variant("no_search", "No code search: the baseline's model with the encoder network's "
                "code.", config={"search": {"passes": 0, "candidates": 0}}, eval_of="baseline"),
    ]


def _shape_variants(base: CodecConfig) -> list[Variant]:
    """Bits per stage against number of stages at the base network's total code bits."""
    n, bits, sym = base.network.stages, base.network.code_bits, base.entropy.symbol_bits
    total, hidden = sum(bits), base.network.hidden
    if len(set(bits)) != 1:
        return [Variant("shapes", "Bits per stage against stages at equal total bits.",
                        skip=f"the base network's stages differ in width ({list(bits)})")]
    b = bits[0]
    out = []
    if (b // 2) % sym == 0 and b % 2 == 0:
        out.append(Variant(
            f"s{2 * n}x{b // 2}", f"Equal rate, finer steps: {2 * n} stages of {b // 2} bits "
            f"instead of {n} x {b} ({total} code bits per frame either way): twice the rate "
            f"points, twice the network cost.",
            config={"network": {"stages": 2 * n, "code_bits": [b // 2] * (2 * n)}}))
    else:
        out.append(Variant(f"s{2 * n}x{b / 2:g}", "Equal rate, finer steps.",
                           skip=f"{b}/2 bits is not a multiple of symbol_bits={sym}"))
    f = next((f for f in (2, 3) if n % f == 0), None)
    if f is None:
        out.append(Variant("coarser", "Equal rate, coarser steps.",
                           skip=f"{n} stages are divisible by neither 2 nor 3"))
    else:
        note = (f" (hidden width {hidden} unchanged, so the code layer is wider than it)"
                if b * f > hidden else "")
        out.append(Variant(
            f"s{n // f}x{b * f}", f"Equal rate, coarser steps: {n // f} stage{'s' if n // f > 1 else ''} of {b * f} bits "
            f"instead of {n} x {b}{note}: fewer rate points, fewer residual hand-offs.",
            config={"network": {"stages": n // f, "code_bits": [b * f] * (n // f)}}))
    # finer steps cost weights: at the same total bits, these are the finer shapes whose encoder
    # core still keeps its weights in the three SPRAM banks an iCE40 UP5K leaves for them
    for stages, width, hidden in ((2 * n, b // 2, 48), (4 * n // 3, 3 * b // 4, 64)):
        if stages * width != total or width % sym or (stages, hidden) == (n, base.network.hidden):
            continue
        out.append(Variant(
            f"s{stages}x{width}h{hidden}", f"Equal rate and fits the iCE40 UP5K: {stages} stages of "
            f"{width} bits with hidden width {hidden} (finer steps, narrower layers; the encoder's "
            f"weights stay within three SPRAM banks).",
            config={"network": {"stages": stages, "code_bits": [width] * stages, "hidden": hidden}}))
    return out


def _weight_count(cfg: CodecConfig) -> int:
    """Binary weights of all stages' encoders and decoders (one shared network per stage)."""
    return sum(i * o for s in range(cfg.network.stages)
               for side in cfg.layer_shapes(s).values() for _, i, o in side)


def _subband_variants(base: CodecConfig, bands: int = 4) -> list[Variant]:
    """Sub-band weight sharing (``NetworkConfig.subbands``) at the base's code bits: the base's
    hidden width, and half of it (fewer weights still)."""
    d, bits = base.coefficients, base.network.code_bits
    out = []
    for name, hidden in (("subband_sharing", base.network.hidden),
                         ("subband_sharing_h2", base.network.hidden // 2)):
        config = {"network": {"subbands": bands, **({"hidden": hidden} if hidden != base.network.hidden else {})}}
        try:
            cfg = base.replace(**config)
        except ConfigError as exc:
            out.append(Variant(name, "Sub-band weight sharing.", config, skip=f"invalid config: {exc}"))
            continue
        out.append(Variant(
            name, f"Sub-band weight sharing at equal rate: each stage is one network applied with "
            f"the same weights to each of {bands} sub-bands of {d // bands} coefficients, "
            f"{bits[0] // bands} code bits per band, hidden width {hidden} "
            f"({_weight_count(cfg):,} weights against the baseline's {_weight_count(base):,}; "
            f"{cfg.binary_macs_per_frame('encoder') / base.binary_macs_per_frame('encoder'):.2f}x "
            f"the encoder core's MACs per frame; no hardware form yet).", config))
    return out


def variants(base: CodecConfig | None = None) -> list[Variant]:
    """The study's variants for a base config (default: ``CodecConfig()``), baseline first.
    A variant whose changed config is invalid for this base is returned with ``skip`` set."""
    base = CodecConfig() if base is None else base
    vs = _fixed_variants()
    vs = vs[:9] + _shape_variants(base) + _subband_variants(base) + vs[9:]
    out = []
    for v in vs:
        if v.skip is None:
            try:
                same = variant_config(base, v) == base and v.config
            except ConfigError as exc:
                v = Variant(v.name, v.tests, v.config, v.options, v.data, skip=f"invalid config: {exc}")
            else:
                if same and not v.options and v.data == "all":
                    v = Variant(v.name, v.tests, v.config, v.options, v.data,
                                skip="the same codec as the baseline for this base config")
        out.append(v)
    return out


#: Parts of issue 7's study that this command does not run, with the reason.  No numbers exist
#: for them; the report lists them as "not run".
NOT_RUN = [
    ("float_weights", "Binary against float weights of the same network.",
     "measured separately (`cascade report --float-model`, docs/RESULTS.md): a float-weight "
     "model has no integer form, so --arith fixed cannot evaluate it"),
]


def study_options(epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> dict:
    """TrainOptions fields of the study's reduced budget (the baseline's options).  The study
    keeps the scale rule its rows were trained with (``mean``); ``learned_scale`` measures the
    default's."""
    return {"seed": seed, "greedy_epochs": epochs, "finetune_rounds": 0,
            "finetune_epochs": max(1, epochs // 2), "scale": "mean"}


#: TrainOptions fields added after models were made, with the value those models were trained
#: with where it is not the option's default.
_OPTIONS_BEFORE = {"scale": "mean"}


def variant_options(v: Variant, epochs: int = DEFAULT_EPOCHS, seed: int = 0):
    from .train import TrainOptions
    return TrainOptions(**{**study_options(epochs, seed), **v.options})


def variant_config(base: CodecConfig, v: Variant) -> CodecConfig:
    return base.replace(**v.config) if v.config else base


#: The default list (for ``--list`` and documentation); the study itself derives it from its base.

def variant_dirs(v: Variant, train_dirs: list[str]) -> list[str]:
    return list(train_dirs[:1]) if v.data == "first" else list(train_dirs)


def train_command(v: Variant, train_dirs, out: Path, epochs: int, seed: int, threads: int = 0) -> str:
    """The ``cascade train`` command line that makes ``OUT/models/NAME.pt`` (with
    ``OUT/configs/NAME.json``, which the study writes)."""
    o = variant_options(v, epochs, seed)
    argv = ["cascade", "train", *map(str, variant_dirs(v, list(train_dirs))),
            "--config", str(out / "configs" / f"{v.name}.json"),
            "--out", str(out / "models" / f"{v.name}.pt"), "--seed", str(o.seed),
            "--greedy-epochs", str(o.greedy_epochs), "--rounds", str(o.finetune_rounds),
            "--finetune-epochs", str(o.finetune_epochs)]
    if o.batch != 128:
        argv += ["--batch", str(o.batch)]
    if not o.augment:
        argv.append("--no-augment")
    if o.loss != "mse":
        argv += ["--loss", o.loss]
    if o.rate_weight:
        argv += ["--rate-weight", f"{o.rate_weight:g}"]
    if o.scale != "learned":
        argv += ["--scale", o.scale]
    if threads:
        argv += ["--threads", str(threads)]
    return " ".join(shlex.quote(a) for a in argv)


def eval_command(v: Variant, test_dir, out: Path) -> str:
    """``cascade eval`` of one variant at K stages (``K`` to be replaced by 1..N)."""
    return (f"cascade eval {shlex.quote(str(test_dir))} --model "
            f"{shlex.quote(str(out / 'models' / f'{v.name}.pt'))} --arith fixed --stages K")


def _host_flags(cfg: CodecConfig) -> str:
    """``cascade eval`` flags that set a variant's host-side sections (``HOST_SECTIONS``)."""
    flags = []
    if not cfg.postfilter.enabled:
        flags.append("--no-postfilter")
    elif not cfg.postfilter.pitch_gain:
        flags.append("--no-pitch-postfilter")
    if cfg.postfilter.num_gamma != PostfilterConfig().num_gamma:   # a schedule, or another value
        g = cfg.postfilter.num_gamma
        flags += ["--num-gamma", ",".join(map(str, g)) if isinstance(g, tuple) else str(g)]
    if not cfg.noise_fill.enabled:
        flags.append("--no-noise-fill")
    flags += ["--search", str(cfg.search.passes)]
    c = cfg.search.candidates
    if c:
        flags += ["--search-candidates", ",".join(map(str, c)) if isinstance(c, tuple) else str(c)]
    return " " + " ".join(flags)


def _recipe(v: Variant, cfg: CodecConfig, train_dirs, epochs: int, seed: int) -> dict:
    """What a variant's model must have been made from to belong to this study."""
    opts = {k: val for k, val in vars(variant_options(v, epochs, seed)).items() if k != "device"}
    return {"variant": v.name, "config_hash": cfg.config_hash, "options": opts,
            "train_dirs": [str(Path(d).resolve()) for d in variant_dirs(v, list(train_dirs))]}


# ------------------------------------------------------------------------------ summaries

def _interp(points: list[dict], rate: float, key: str) -> float | None:
    """``key`` linearly interpolated at ``rate`` kbps along the curve, or None outside it."""
    pts = sorted((p["kbps"], p[key]) for p in points if np.isfinite(p.get(key, np.nan)))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= rate <= x1:
            return float(y0 if x1 == x0 else y0 + (y1 - y0) * (rate - x0) / (x1 - x0))
    if len(pts) == 1 and pts[0][0] == rate:
        return float(pts[0][1])
    return None


def summarize(points: list[dict], rate: float = DEFAULT_RATE) -> dict:
    """Full-K point, the point nearest ``rate`` kbps (lower K on a tie) and PESQ-WB/STOI
    interpolated at ``rate``."""
    full = max(points, key=lambda p: p["stages"])
    near = min(points, key=lambda p: (abs(p["kbps"] - rate), p["stages"]))
    return {"full": full, "near_rate": near,
            "at_rate": {"kbps": rate, "pesq_wb": _interp(points, rate, "pesq_wb"),
                        "stoi": _interp(points, rate, "stoi")}}


def _delta(a, b):
    return None if a is None or b is None else float(a) - float(b)


def _paired_se(row: dict, ref: dict) -> float | None:
    """Standard error of the mean per-file PESQ-WB difference to ``ref`` at full K (the files are
    the same, so the difference is paired); None when it cannot be computed."""
    try:
        a = json.loads(Path(row["per_file"]).read_text())["per_file"][-1]["files"]
        b = json.loads(Path(ref["per_file"]).read_text())["per_file"][-1]["files"]
    except (OSError, KeyError, IndexError, json.JSONDecodeError):
        return None
    pb = {Path(f["file"]).name: f["pesq_wb"] for f in b}
    d = np.array([f["pesq_wb"] - pb[Path(f["file"]).name] for f in a if Path(f["file"]).name in pb])
    d = d[np.isfinite(d)]
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None


def _add_deltas(rows: list[dict]) -> None:
    ref = next((r for r in rows if r["name"] == "baseline" and r["status"] == "done"), None)
    for r in rows:
        if r["status"] != "done":
            continue
        r["delta"] = {f"{where}_{k}": (_delta(r[where][k], ref[where][k]) if ref else None)
                      for where in ("full", "near_rate", "at_rate") for k in ("pesq_wb", "stoi")}
        r["delta"]["full_pesq_wb_se"] = (_paired_se(r, ref) if ref is not None and r is not ref
                                         and r["full"]["stages"] == ref["full"]["stages"] else None)


# ------------------------------------------------------------------------------ the study

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tests_key(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + _sha256(f).encode())
    return h.hexdigest()


def _evaluate(codec, files, model_path: Path, cache: Path, tests_key: str, progress) -> list[dict]:
    """Mean results at every K with --arith fixed (cached in ``cache``)."""
    from .evaluation import evaluate_files
    key = {"model_sha256": _sha256(model_path), "tests": tests_key, "arith": "fixed",
           "config": json.loads(json.dumps(codec.cfg.to_dict()))}   # as it reads back (lists, not tuples)
    if cache.is_file():
        try:
            d = json.loads(cache.read_text())
            if d.get("key") == key:
                return d["points"]
        except (json.JSONDecodeError, KeyError):
            pass
    points, per_file = [], []
    for k in range(1, codec.cfg.network.stages + 1):
        r = evaluate_files(codec, files, "fixed", k, progress)
        points.append({"stages": k, **r["mean"]})
        per_file.append({"stages": k, "files": r["files"]})
    _write_text(cache, json.dumps({"key": key, "points": points, "per_file": per_file},
                                  indent=1, default=float))
    return points


def _write_text(path: Path, text: str) -> None:
    from .files import write_file
    write_file(path, text, force=True)     # the study's own files, rebuilt on each run


def _plot(rows: list[dict], baselines: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done"]
    order = {r["name"]: i for i, r in enumerate(rows)}      # stable colours across partial runs
    tab = plt.get_cmap("tab20")
    palette = [tab(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    xmax = max([p["kbps"] for r in done for p in r["points"]] +
               [b["kbps"] for b in baselines if b["system"] != "g722"] + [1.0]) * 1.08
    markers = "osD^vP*Xh<>"
    for r in done:
        pts = sorted(r["points"], key=lambda p: p["kbps"])
        ref = r["name"] == "baseline"
        for ax, key in zip(axes, ("pesq_wb", "stoi")):
            xy = [(p["kbps"], p[key]) for p in pts if np.isfinite(p[key])]
            if xy:
                ax.plot(*zip(*xy), marker=markers[order[r["name"]] % len(markers)], ms=4 if not ref else 6,
                        lw=2.6 if ref else 1.2,
                        color="black" if ref else palette[order[r["name"]] % len(palette)],
                        label=r["name"], zorder=3 if ref else 2)
    systems: dict[str, list[dict]] = {}
    for b in baselines:
        systems.setdefault(b["system"], []).append(b)
    styles = {"opus": ("dimgray", "--"), "speex": ("darkgray", "-."), "g722": ("gray", ":")}
    for name, pts in systems.items():
        color, ls = styles.get(name, ("tab:gray", ":"))
        pts = sorted(pts, key=lambda p: p["kbps"])
        for ax, key in zip(axes, ("pesq_wb", "stoi")):
            xy = [(p["kbps"], p[key]) for p in pts if np.isfinite(p[key])]
            if not xy:
                continue
            inside = [(x, y) for x, y in xy if x <= xmax]
            if inside:
                ax.plot(*zip(*inside), ls=ls, color=color, marker=".", label=name)
            for x, y in xy:  # off the axis (G.722 at 64 kbps): a horizontal line at its level
                if x > xmax:
                    ax.axhline(y, ls=ls, color=color, lw=1, label=f"{name} {x:.0f} kbps")
    axes[0].set_ylabel("PESQ-WB (MOS-LQO)")
    axes[1].set_ylabel("STOI")
    for ax in axes:
        ax.set_xlabel("bit rate (kbps, from file sizes)")
        ax.set_xlim(0, xmax)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from .files import write_file
    write_file(path, lambda f: fig.savefig(f, format="png", dpi=110), force=True)
    plt.close(fig)


def _f(v, nd=2, signed=False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _markdown(res: dict) -> str:
    from .report import markdown_table
    rate = res["rate_kbps"]
    rows = res["variants"]
    done = [r for r in rows if r["status"] == "done"]
    md = ["# Ablation study\n",
          f"Generated by `{res['command']}` on {res['date']} (this run: {res['run_seconds']:.0f} s).\n",
          f"Base config `{res['base_config']['hash']}`: {res['base_config']['stages']} stages x "
          f"{res['base_config']['code_bits']} bits, hidden {res['base_config']['hidden']}. "
          f"Every variant is trained with the same budget: {res['epochs']} greedy epoch"
          f"{'s' if res['epochs'] != 1 else ''} per stage, "
          f"no fine-tuning (except `finetune`), seed {res['seed']}, on "
          + ", ".join(f"`{d}`" for d in res["train_dirs"]) + " (the first folder is the real "
          "speech; `real_only` uses it alone).  The shipped model's own recipe and figures are in "
          "model/default/README.md and docs/RESULTS.md.\n",
          f"Evaluation: `--arith fixed` (the integer golden model, what the hardware computes) at "
          f"every K, the encoder's code search as each variant's config sets it (the base's: "
          f"{res.get('base_search', '?')}), on {len(res['test_files'])} held-out files ({res['test_seconds']:.1f} s) in "
          f"`{res['test_dir']}`; kbps are actual (file bytes over duration: header, side "
          f"information and Huffman-coded stages).  Δ: difference to the `baseline` row; ± is the "
          f"standard error of the per-file differences at full K (paired: same files), so a Δ "
          f"within about twice it is not a measured difference.  "
          f"K≈{rate:g}: the K whose rate is nearest {rate:g} kbps; @{rate:g}: PESQ-WB "
          f"interpolated linearly between the two K around {rate:g} kbps (- when the curve does "
          f"not reach it).\n",
          "| variant | what changed | stages x bits | kbps | PESQ-WB | STOI | Δ PESQ | "
          f"K≈{rate:g} | kbps | PESQ-WB | STOI | Δ PESQ | PESQ @{rate:g} | Δ @{rate:g} | train s |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in done:
        fu, ne, at, d = r["full"], r["near_rate"], r["at_rate"], r["delta"]
        bits = r["code_bits"]
        shape = f"{len(bits)} x {bits[0]}" if len(set(bits)) == 1 else "+".join(map(str, bits))
        md.append(
            f"| {r['name']} | {r['changed']} | {shape} | {_f(fu['kbps'])} | {_f(fu['pesq_wb'])} | "
            f"{_f(fu['stoi'], 3)} | {_f(d['full_pesq_wb'], 2, True)}"
            f"{' ± ' + _f(d['full_pesq_wb_se']) if d.get('full_pesq_wb_se') is not None else ''} | {ne['stages']} | "
            f"{_f(ne['kbps'])} | {_f(ne['pesq_wb'])} | {_f(ne['stoi'], 3)} | "
            f"{_f(d['near_rate_pesq_wb'], 2, True)} | {_f(at['pesq_wb'])} | "
            f"{_f(d['at_rate_pesq_wb'], 2, True)} | {_f(r['train_seconds'], 0)} |")
    if not done:
        md.append("| (no variant trained yet) | | | | | | | | | | | | | | |")
    md += ["\n![rate-quality](ablation.png)\n", "## What each variant tests\n"]
    for r in rows:
        md.append(f"* `{r['name']}`: {r['tests']}")
    md += ["\n## Not run\n", "No numbers exist for these; nothing here was measured.\n",
           "| variant | what it would test | reason |", "|---|---|---|"]
    for r in rows:
        if r["status"] != "done":
            md.append(f"| {r['name']} | {r['tests']} | {r['reason']} |")
    for n in res["not_run"]:
        md.append(f"| {n['name']} | {n['tests']} | {n['reason']} |")
    md += ["\n## Commands\n", "Each model: `cascade train` with the variant's config "
           "(`configs/NAME.json`, written by the study); each point: `cascade eval` at K stages.\n"]
    for r in rows:
        if r.get("train_command"):
            md.append(f"* `{r['name']}`: `{r['train_command']}`; `{r['eval_command']}` for K = 1.."
                      f"{len(r['code_bits'])}")
        elif r.get("eval_only"):
            md.append(f"* `{r['name']}` (no training): `{r['eval_command']}` for K = 1..{len(r['code_bits'])}")
    if res["baselines"]:
        md += ["\n## Reference codecs (same files, same run)\n", markdown_table(res["baselines"])]
    return "\n".join(md) + "\n"


def _check_out(out: Path, force: bool) -> None:
    from .errors import UserError
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force and not (
            (out / "ablation.json").exists() or (out / "models").is_dir()):
        raise UserError(f"{out} exists and is not an ablation study folder; use --force to write into it")


def _check_model(path: Path, recipe: dict):
    """Load a variant's existing model; refuse one made with other settings."""
    from .codec import Codec
    from .errors import UserError
    codec = Codec.load(path)
    had = (codec.meta or {}).get("ablation")
    if isinstance(had, dict) and isinstance(had.get("options"), dict):
        # a training option added after the model was made: it was trained with its default
        # then (_OPTIONS_BEFORE), or else its default now
        from .train import TrainOptions
        defaults = {**{f.name: f.default for f in dataclasses.fields(TrainOptions)}, **_OPTIONS_BEFORE}
        had = {**had, "options": {**{k: defaults[k] for k in recipe["options"] if k in defaults},
                                  **had["options"]}}
    if had != recipe:
        what = "not made by cascade ablate" if not isinstance(had, dict) else ", ".join(
            k for k in recipe if had.get(k) != recipe[k]) + " differ"
        raise UserError(f"{path} was trained with other settings ({what}); use the same TRAIN_DIRs, "
                        f"--epochs, --seed and config, another --out, or --force to retrain it")
    return codec


def list_variants(base: CodecConfig) -> list[dict]:
    return ([{"name": v.name, "changed": v.changed, "tests": v.tests, "runs": v.skip is None,
              **({"reason": v.skip} if v.skip else {})} for v in variants(base)] +
            [{"name": n, "changed": "-", "tests": t, "runs": False, "reason": why}
             for n, t, why in NOT_RUN])


@dataclasses.dataclass(frozen=True)
class AblationOptions:
    """What ``cascade ablate`` runs (the CLI fills it from its arguments; a script may too).

    ``train_dir``: training WAV folders (the first is the real speech); ``test``: the folder the
    variants are compared on (the validation voice); ``out``: the study folder; ``epochs``,
    ``seed``, ``threads``: the training budget; ``only``: comma-separated variants to train;
    ``rate``: kbps of the equal-rate columns; ``config``: the base config (file or preset);
    ``no_baselines``, ``list``, ``report_only``, ``json``, ``force``: as the CLI's flags;
    ``command``: how the study says it was made."""
    out: str | Path
    train_dir: tuple = ()
    test: str | Path = "data/val"
    epochs: int = 4
    seed: int = 0
    threads: int = 0
    only: str | None = None
    rate: float = 20.0
    config: str | None = None
    no_baselines: bool = False
    list: bool = False
    report_only: bool = False
    json: bool = False
    force: bool = False
    command: str = "cascade ablate"


def run_ablation(a: AblationOptions) -> dict:
    """The ``cascade ablate`` command."""
    import torch
    from .errors import UserError
    from .evaluation import search_name, wav_files
    from .progress import console, progress_bars
    from .train import checkpoint_path, load_training_data, train_model

    base = CodecConfig.load(a.config) if a.config else CodecConfig()
    vs = variants(base)
    if a.list:
        rows = list_variants(base)
        if a.json:
            print(json.dumps(rows, indent=2))
        else:
            w = max(len(r["name"]) for r in rows) + 2
            for r in rows:
                state = "" if r["runs"] else f"not run: {r['reason']}"
                print(f"{r['name']:<{w}}{r['changed'] if r['runs'] else state}\n{'':<{w}}{r['tests']}")
        return {"variants": rows}
    if not a.train_dir:
        raise UserError("give at least one TRAIN_DIR (the first one is the real speech)")
    if a.epochs < 1:
        raise UserError("--epochs must be at least 1")
    by_name = {v.name: v for v in vs}
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        for n in names:
            if n not in by_name:
                hint = dict((x[0], x[2]) for x in NOT_RUN).get(n)
                raise UserError(f"variant {n!r} is not run by this study: {hint}" if hint else
                                f"unknown variant {n!r} (variants: {', '.join(by_name)})")
            if by_name[n].skip:
                raise UserError(f"variant {n!r} cannot run: {by_name[n].skip}")
        selected = names
    else:
        selected = [v.name for v in vs if v.skip is None]
    if a.report_only:
        selected = []
    train_dirs = list(a.train_dir)
    for d in train_dirs:
        wav_files(d)                        # each folder exists and holds WAV files
    test_files = wav_files(a.test)
    out = Path(a.out)
    _check_out(out, a.force)
    for sub in ("models", "configs", "evals"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    gi = out / "models" / ".gitignore"
    if not gi.exists():
        _write_text(gi, "# trained models of the ablation study: large, rebuilt by `cascade ablate`\n*\n")
    if a.threads:
        torch.set_num_threads(a.threads)
    con = console()
    t_run = time.time()
    argv_cmd = a.command

    # ---- train what is missing
    data_cache: dict = {}
    rows = []
    for v in vs:
        row = {"name": v.name, "tests": v.tests, "changed": v.changed, "config_changes": v.config,
               "option_changes": v.options, "data": v.data}
        rows.append(row)
        if v.skip:
            row.update(status="not run", reason=v.skip)
            continue
        if v.data == "first" and len(train_dirs) < 2:
            row.update(status="not run", reason="needs a second TRAIN_DIR (the extra/synthetic "
                       "speech) to leave out")
            continue
        cfg = variant_config(base, v)
        row["_host_config"] = {sec: dataclasses.asdict(getattr(cfg, sec)) for sec in HOST_SECTIONS}
        if v.eval_of:   # no training: the other variant's model, this config at the decoder
            src = by_name[v.eval_of]
            src_cfg = variant_config(base, src)
            row.update(config_hash=cfg.config_hash, model=str(out / "models" / f"{src.name}.pt"),
                       code_bits=list(cfg.network.code_bits), eval_only=True,
                       decoder_config=v.config, train_command=None,
                       eval_command=eval_command(src, a.test, out) + _host_flags(cfg))
            row["_recipe"] = _recipe(src, src_cfg, train_dirs, a.epochs, a.seed)
            continue
        cfg_path = out / "configs" / f"{v.name}.json"
        if not cfg_path.exists() or cfg_path.read_text() != cfg.to_json() + "\n":
            _write_text(cfg_path, cfg.to_json() + "\n")
        model = out / "models" / f"{v.name}.pt"
        recipe = _recipe(v, cfg, train_dirs, a.epochs, a.seed)
        cmd = train_command(v, train_dirs, out, a.epochs, a.seed, a.threads)
        row.update(config_hash=cfg.config_hash, config_file=str(cfg_path), model=str(model),
                   code_bits=list(cfg.network.code_bits), train_command=cmd,
                   eval_command=eval_command(v, a.test, out) + _host_flags(cfg))
        row["_recipe"] = recipe
        if v.name not in selected or (model.exists() and not a.force):
            continue
        dirs = variant_dirs(v, train_dirs)
        key = (tuple(dirs), cfg.signal.sample_rate)
        if key not in data_cache:
            data_cache[key] = load_training_data(dirs, cfg.signal.sample_rate)
        files, signals = data_cache[key]
        ckpt = checkpoint_path(model)
        ck_recipe = Path(str(ckpt) + ".recipe.json")
        if ckpt.exists() and (a.force or not ck_recipe.is_file()
                              or json.loads(ck_recipe.read_text()) != recipe):
            ckpt.unlink()                    # a checkpoint of other settings: start afresh
        _write_text(ck_recipe, json.dumps(recipe))
        con.rule(f"variant {v.name}: {v.changed}")
        con.print(cmd, markup=False, highlight=False, style="dim", soft_wrap=True)
        with progress_bars() as p:
            codec = train_model(cfg, dirs, files, signals, variant_options(v, a.epochs, a.seed),
                                model, cmd, p, log=lambda m: con.print(m, markup=False, highlight=False),
                                extra_meta={"ablation": recipe})
        ck_recipe.unlink(missing_ok=True)
        con.print(f"model written to {model} ({codec.meta['train_seconds']:.0f} s of training)",
                  markup=False, highlight=False)

    # ---- evaluate every model present
    tests_key = _tests_key(test_files)
    for row in rows:
        if row.get("status") == "not run":
            continue
        model = Path(row["model"])
        if not model.exists():
            row.update(status="not run", reason=f"no model yet: run with --only {row['name']}")
            continue
        codec = _check_model(model, row["_recipe"])
        # the host-side settings (postfilter, code search) are the variant's, whatever the model
        # file was saved with: they change no weight, and the study's base config fixes them
        from .codec import Codec
        codec = Codec(codec.cfg.replace(**row["_host_config"]), codec.net, codec.lsf_q,
                      codec.codebooks, codec.meta, side=codec.side)
        with progress_bars() as p:
            pts = _evaluate(codec, test_files, model, out / "evals" / f"{row['name']}.json",
                            tests_key, p)
        row.update(status="done", points=pts,
                   train_seconds=None if row.get("eval_only") else codec.meta.get("train_seconds"),
                   per_file=str(out / "evals" / f"{row['name']}.json"), **summarize(pts, a.rate))
    for row in rows:
        row.pop("_recipe", None)
        row.pop("_host_config", None)
    _add_deltas(rows)

    baselines = []
    if not a.no_baselines:
        from .report import baseline_points
        baselines = baseline_points(test_files, progress=True)

    sr = base.signal.sample_rate
    from .data import load_wav
    test_seconds = sum(len(load_wav(f, sr)) for f in test_files) / sr
    res = {"command": argv_cmd, "date": time.strftime("%Y-%m-%d %H:%M"),
           "run_seconds": time.time() - t_run,
           "base_config": {"hash": base.config_hash, "stages": base.network.stages,
                           "code_bits": base.network.code_bits[0] if len(set(base.network.code_bits)) == 1
                           else list(base.network.code_bits), "hidden": base.network.hidden},
           "base_search": (search_name(base.search.passes, base.search.candidates)
                           if base.search.passes else "none, the encoder networks' code"),
           "train_dirs": [str(d) for d in train_dirs], "test_dir": str(a.test),
           "test_files": [str(f) for f in test_files], "test_seconds": test_seconds,
           "epochs": a.epochs, "seed": a.seed, "threads": a.threads, "rate_kbps": a.rate,
           "arith": "fixed", "variants": rows,
           "not_run": [{"name": n, "tests": t, "reason": why} for n, t, why in NOT_RUN],
           "baselines": baselines}
    _plot(rows, baselines, out / "ablation.png",
          f"ablation: {len([r for r in rows if r['status'] == 'done'])} variants, "
          f"{a.epochs} greedy epochs/stage, {len(test_files)} held-out files, --arith fixed")
    _write_text(out / "ablation.md", _markdown(res))
    _write_text(out / "ablation.json", json.dumps(res, indent=1, default=float))
    n_done = sum(r["status"] == "done" for r in rows)
    print(f"ablation: {n_done} of {len(rows)} variants measured; written to {out}/ablation.md, "
          f"ablation.json, ablation.png", file=sys.stderr)
    if a.json:
        print(json.dumps(res, indent=1, default=float))
    return res
