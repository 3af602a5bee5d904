"""``cascade``: the command-line tool.

Every subcommand that takes ``--model`` uses the shipped default model when it is left out.
Errors a user can cause (bad audio, bad stream, bad model, bad config, an existing output file)
print one line, ``cascade: error: ...``, and exit with status 1; nothing is overwritten unless
``--force`` is given, and outputs are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .bitstream import LIMITS, SIDE_BLOCK_FRAMES
from .errors import CascadeError, UserError
from .evaluation import (curve_markdown, evaluate_baseline, evaluate_curve, evaluate_files, search_name,
                         search_variants, wav_files)
from .files import check_new, signals_interrupt, write_file
from .progress import progress_bars


def _home() -> Path:
    """Where default inputs and outputs live (``data/``, ``bitstreams/``, ``docs/report/``,
    ``build/``): the checkout the package runs from (a ``pyproject.toml`` beside the package
    folder, an editable install), else the current directory, so that an installed package
    never writes into site-packages."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "model" / "cli.py").is_file() else Path.cwd()


REPO = _home()
DEFAULT_TEST_DIR = REPO / "data" / "test"
#: Where recipe choices are made (``cascade prepare-data``: half of an unseen voice).
DEFAULT_VAL_DIR = REPO / "data" / "val"


# ---------------------------------------------------------------------------------- helpers

def _out_path(path: str | Path, force: bool) -> Path:
    """The early check of an output file (``files.check_new``); the write checks again."""
    try:
        return check_new(path, force)
    except OSError as exc:
        raise UserError(str(exc)) from None


def _out_dir(path: str | Path, force: bool) -> Path:
    """An output folder: absent, empty, or (with --force) one whose files may be replaced."""
    out = _folder(path)
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} exists and is not empty; use --force")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist")
    return out


@contextmanager
def _fds_to(path):
    """Send this process's and its children's stdout/stderr to a file (the simulator is chatty)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _load_codec(path):
    from .codec import Codec
    return Codec.load(path)


def _host_settings(codec, a):
    """The codec with ``--search`` / ``--search-candidates`` / ``--no-postfilter`` /
    ``--no-pitch-postfilter`` / ``--num-gamma`` / ``--no-noise-fill`` applied (they set host-side
    sections of the config that change no weight and no stream format: ``_host_config``)."""
    codec.cfg = _host_config(codec.cfg, a)
    return codec


def _host_config(cfg, a):
    """``cfg`` with the host-side options of ``a`` applied (``_host_settings``)."""
    changes = {}
    if getattr(a, "search", None) is not None or getattr(a, "search_candidates", None) is not None:
        sc = cfg.search
        changes["search"] = {"passes": sc.passes if a.search is None else a.search,
                             "candidates": sc.candidates if a.search_candidates is None else a.search_candidates}
    if getattr(a, "no_postfilter", False):
        changes["postfilter"] = {"enabled": False}
    elif getattr(a, "no_pitch_postfilter", False):
        changes["postfilter"] = {"pitch_gain": 0.0}
    if getattr(a, "num_gamma", None) is not None:
        changes.setdefault("postfilter", {})["num_gamma"] = a.num_gamma
    if getattr(a, "no_noise_fill", False):
        changes["noise_fill"] = {"enabled": False}
    return cfg.replace(**changes) if changes else cfg


def _numbers(text: str, cast) -> tuple:
    """ "24,8,4" -> (24, 8, 4) with ``cast``; an argparse error for anything else."""
    try:
        return tuple(cast(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a comma-separated list of numbers: {text!r}") from None


def _ranged(cast, lo, hi=None, what=None):
    """An argparse type: ``cast(text)`` within [lo, hi] (hi None: no upper bound)."""
    def parse(text):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if cast is int else 'a number'}: {text!r}") from None
        if v != v or (cast is float and not math.isfinite(v)) or v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range ({what or _range_words(lo, hi)})")
        return v
    parse.__name__ = cast.__name__
    return parse


def _range_words(lo, hi):
    return f"at least {lo}" if hi is None else f"{lo}..{hi}"


def _positive(cast):
    """An argparse type for a (finite) number above 0."""
    return _ranged(cast, 1 if cast is int else 1e-9, what="must be positive")


# The ranges of the numeric options, one definition each (a value outside is argparse's error:
# one line, exit 1); sizes that a model or stream also holds come from bitstream.LIMITS.
_LANES = _ranged(int, 1, 1024)               # --lanes of every command that has them
_THREADS = _ranged(int, 0, 256)              # --threads (0: torch's default)
_SEARCH = _ranged(int, 0, LIMITS["search_passes"])
_SIDE_BLOCK = _ranged(int, 1, LIMITS["side_block"])   # encode: frames per compact side block
_SEED = _ranged(int, 0, 2 ** 32 - 1)         # what NumPy and PyTorch accept
_EPOCHS = _ranged(int, 1, 10_000)
_ROUNDS = _ranged(int, 0, 1_000)
_BATCH = _ranged(int, 1, 1 << 16)
_FRAMES = _ranged(int, 1, 10_000)            # verify: frames simulated
_BAUD = _ranged(int, 1, 100_000_000)
_CLOCK_MHZ = _ranged(float, 1, 1000)         # synth --clock
_NON_NEGATIVE = _ranged(float, 0)
_SPEED_PERTURB = _ranged(float, 0, 0.5)      # prepare-data: factors in [1 - S, 1 + S]


def _lanes_or_auto(text: str):
    """``--lanes`` of ``cascade synth``: ``auto`` or a lane count."""
    return "auto" if text == "auto" else _LANES(text)


_lanes_or_auto.__name__ = "lanes"


def _lane_list(text: str) -> tuple:
    """``--sweep 8,16,32``: lane counts, each in ``_LANES``'s range."""
    return tuple(_LANES(v) for v in text.split(","))


_lane_list.__name__ = "lane list"


def _candidates(text: str):
    """``--search-candidates``: "6" -> 6, "24,8,4" -> (24, 8, 4) (``SearchConfig.candidates``),
    at most ``LIMITS["stages"]`` numbers of 0..``LIMITS["search_candidates"]``."""
    vals = _numbers(text, int)
    top = LIMITS["search_candidates"]
    if len(vals) > LIMITS["stages"] or any(not 0 <= v <= top for v in vals):
        raise argparse.ArgumentTypeError(f"{text} is out of range (at most {LIMITS['stages']} numbers of 0..{top})")
    return vals[0] if len(vals) == 1 else vals


_candidates.__name__ = "candidates"


def _widths(text: str) -> tuple:
    """``report --widths 6,8,10``: activation widths, each 2..``LIMITS["act_bits"]`` (the model's
    act_int_bits is checked when the model is loaded); "" for no sweep."""
    if not text.strip():
        return ()
    vals = _numbers(text, int)
    if any(not 2 <= v <= LIMITS["act_bits"] for v in vals):
        raise argparse.ArgumentTypeError(f"{text} is out of range (widths of 2..{LIMITS['act_bits']} bits)")
    return vals


_widths.__name__ = "widths"


def _folder(path, what: str = "") -> Path:
    """A folder a command writes into (made if absent): never an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what + ' ' if what else ''}{p} is a file, not a folder")
    return p


def _load_audio(path, codec, resample: bool):
    from .data import load_wav
    x = load_wav(path, codec.cfg.signal.sample_rate, resample=resample)
    return x


def _json_out(obj, path, force: bool = False):
    text = json.dumps(obj, indent=2, default=float)
    if path in (None, "-"):
        print(text)
    else:
        write_file(Path(path), text + "\n", force)


def _stages_arg(codec, stages):
    n = codec.cfg.network.stages
    if stages is None:
        return n
    if not 1 <= stages <= n:
        raise UserError(f"--stages must be 1..{n} for this model")
    return stages


# --------------------------------------------------------------------------------- commands

def _input_file(path) -> Path:
    """An input file that exists (checked before the model is loaded: that takes seconds)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file" if not p.exists() else f"{p} is not a file")
    return p


def cmd_encode(a):
    _input_file(a.input)
    out = _out_path(a.output, a.force)
    from .data import load_wav
    from .modelfile import read_config
    # the audio is checked (rate, channels, samples) before PyTorch and the weights load
    x = load_wav(a.input, read_config(a.model).signal.sample_rate, resample=a.resample)
    codec = _host_settings(_load_codec(a.model), a)
    data = codec.encode_bytes(x, a.arith, _stages_arg(codec, a.stages), robust=a.robust, side_block=a.side_block)
    write_file(out, data, a.force)
    dur = len(x) / codec.cfg.signal.sample_rate
    mode = ("robust side information" if a.robust or codec.side is None
            else f"compact side information ({a.side_block or SIDE_BLOCK_FRAMES}-frame blocks)")
    print(f"{a.input} -> {out}: {len(data)} bytes, {dur:.2f} s, {8 * len(data) / dur / 1000:.2f} kbps, {mode}")


def cmd_decode(a):
    data = _input_file(a.input).read_bytes()
    out = _out_path(a.output, a.force)
    from .bitstream import read_stream, stream_info
    head = stream_info(data)                     # a stream this reader refuses fails before the model loads
    if a.stages is not None and not 1 <= a.stages <= head["stages"]:
        raise UserError(f"--stages must be 1..{head['stages']} for this stream")
    from .data import write_wav
    codec = _host_settings(_load_codec(a.model), a)
    frames = read_stream(data, codec.cfg, codec.codebooks, side=codec.side)
    if a.stages is not None and not 1 <= a.stages <= len(frames.codes):
        raise UserError(f"--stages must be 1..{len(frames.codes)} for this stream")
    y = codec.decode(frames, a.arith, a.stages)
    write_wav(out, y, codec.cfg.signal.sample_rate, force=a.force)
    lost = int(frames.lost.sum()) if frames.lost is not None else 0
    msg = f"{a.input} -> {out}: {len(frames.codes)} stages, {len(frames.gain_idx)} frames"
    if lost:
        msg += f", {lost} damaged frames concealed"
    fewer = int((frames.stages < len(frames.codes)).sum()) if frames.stages is not None else 0
    if fewer:
        msg += f", {fewer} frames decoded with fewer stages (damaged sections)"
    if frames.stray_bytes:
        msg += f", {frames.stray_bytes} bytes outside good packets ignored"
    print(msg)


def cmd_truncate(a):
    from .bitstream import truncate_stream, stream_info
    src = _input_file(a.input)
    out = _out_path(a.output, a.force)
    data = src.read_bytes()
    info = stream_info(data)
    from .modelfile import read_config
    cut = truncate_stream(data, a.stages, read_config(a.model))  # refuses a stream made for another codec
    write_file(out, cut, a.force)
    print(f"{src} ({info['stages']} stages, {len(data)} bytes) -> {out} ({a.stages} stages, {len(cut)} bytes)")


def cmd_info(a):
    from .bitstream import stream_info
    _json_out(stream_info(_input_file(a.input).read_bytes()), None)


def cmd_eval(a):
    files = wav_files(a.wav_dir)
    if a.json not in (None, "-"):
        _out_path(a.json, a.force)
    if a.markdown:
        if not a.curve:
            raise UserError("--markdown writes the table of a --curve")
        _out_path(a.markdown, a.force)
    if a.baseline:
        name, _, rate = a.baseline.partition(":")
        try:
            kbps = float(rate) if rate else None
        except ValueError:
            raise UserError(f"--baseline {a.baseline}: the rate after ':' is not a number") from None
        with progress_bars(not a.quiet) as p:
            res = evaluate_baseline(name, kbps, files, p)
        _print_eval(res, f"{name} {rate or 'default'}")
        if a.json:
            _json_out(res, a.json, a.force)
        return
    codec = _host_settings(_load_codec(a.model), a)
    if a.curve:
        if a.stages is not None:
            raise UserError("--curve measures every K; leave out --stages")
        with progress_bars(not a.quiet) as p:
            res = evaluate_curve(codec, files, a.arith, p)
        for row in res["curve"]:
            vm = row["voice_mean"]
            per = "  ".join(f"{v} {m['pesq_wb']:.3f}" for v, m in row["voices"].items())
            print(f"K={row['stages']:2d} {row['mean']['kbps']:6.2f} kbps  PESQ-WB voice mean {vm['pesq_wb']:.3f}"
                  f"  ({per})", file=sys.stderr)
        if a.json:
            _json_out(res, a.json, a.force)
        if a.markdown:
            write_file(Path(a.markdown), curve_markdown(res), a.force)
        return
    k = _stages_arg(codec, a.stages)
    with progress_bars(not a.quiet) as p:
        res = evaluate_files(codec, files, a.arith, k, p)
    sc = codec.cfg.search
    _print_eval(res, f"K={k} {a.arith} search {search_name(sc.passes, sc.candidates)}")
    if a.json:
        _json_out(res, a.json, a.force)


def _print_eval(res, what):
    m = res["mean"]
    if len(res["voices"]) > 1:
        for v, vm in res["voices"].items():
            print(f"  {v:12} {vm['kbps']:6.2f} kbps  PESQ-WB {vm['pesq_wb']:.3f}  STOI {vm['stoi']:.3f}  "
                  f"({vm['files']} files, {vm['seconds']:.1f} s)", file=sys.stderr)
        vm = res["voice_mean"]
        print(f"  {'voice mean':12} {vm['kbps']:6.2f} kbps  PESQ-WB {vm['pesq_wb']:.3f}  STOI {vm['stoi']:.3f}",
              file=sys.stderr)
    print(f"{what}: "
          f"{m['kbps']:.2f} kbps  PESQ-WB {m['pesq_wb']:.3f}  STOI {m['stoi']:.3f}  "
          f"SNR {m['snr_db']:.2f} dB  ({m['files']} files, {m['seconds']:.1f} s)", file=sys.stderr)


def cmd_train(a):
    import torch
    from .config import CodecConfig
    from .train import TrainOptions, checkpoint_path, load_checkpoint, load_training_data, train_model
    cfg = _host_config(CodecConfig.load(a.config) if a.config else CodecConfig(), a)
    out = _out_path(a.out, a.force)
    _check_device(a.device)
    ckpt = checkpoint_path(out)
    if ckpt.exists():                # resumed from: refuse a damaged one before any work
        load_checkpoint(ckpt)        # a CheckpointError (one line) for a damaged one
    files, signals = load_training_data(a.wav_dir, cfg.signal.sample_rate, a.resample, a.speaker_minutes)
    opts = TrainOptions(seed=a.seed, greedy_epochs=a.greedy_epochs, finetune_rounds=a.rounds,
                        finetune_epochs=a.finetune_epochs, batch=a.batch, lr=a.lr,
                        augment=not a.no_augment, device=a.device, loss=a.loss,
                        rate_weight=a.rate_weight, scale=a.scale, finetune_lr=a.finetune_lr,
                        search_residuals=a.search_residuals)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    with progress_bars() as p:
        codec = train_model(cfg, a.wav_dir, files, signals, opts, out,
                            "cascade train " + " ".join(sys.argv[2:]), p, force=a.force)
    if codec is not None:
        print(f"model written to {out} ({time.time() - t0:.0f} s)")


def _check_device(name: str) -> None:
    """``--device``: auto, cpu, or a CUDA device this machine has."""
    import torch
    if name in ("auto", "cpu"):
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:1 ...)") from None
    if dev.type != "cuda":
        raise UserError(f"--device {name}: only auto, cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: this machine has no CUDA device")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def cmd_set_format(a):
    from .codec import Codec
    codec = _load_codec(a.model)
    out = _out_path(a.out, a.force)
    changes = {k: v for k, v in (("act_bits", a.act_bits), ("act_int_bits", a.act_int_bits),
                                 ("scale_bits", a.scale_bits), ("bias_bits", a.bias_bits)) if v is not None}
    if not changes:
        raise UserError("nothing to change: give --act-bits, --act-int-bits, --scale-bits or --bias-bits")
    if a.bias_bits is None:   # a bias of +-1 must fit at the new resolution: widen it if needed
        frac = changes.get("act_bits", codec.cfg.fixed.act_bits) - changes.get("act_int_bits", codec.cfg.fixed.act_int_bits)
        if codec.cfg.fixed.bias_bits < frac + 2:
            changes["bias_bits"] = frac + 2
    cfg = codec.cfg.replace(fixed=changes)
    meta = dict(codec.meta)
    meta.setdefault("format_changes", []).append({"from": codec.cfg.config_hash, "to": cfg.config_hash,
                                                  "fixed": changes})
    new = Codec(cfg, codec.net, codec.lsf_q, codec.codebooks, meta)
    new.int_model()  # proves the float weights fit the new formats
    new.save(out, force=a.force)
    print(f"{out}: fixed-point formats {changes}, config {codec.cfg.config_hash} -> {cfg.config_hash}")


def cmd_codebooks(a):
    from .data import load_wav
    codec = _load_codec(a.model)
    out = _out_path(a.out, a.force)
    files = []
    for d in a.wav_dir:
        files += wav_files(d)
    signals = [load_wav(f, codec.cfg.signal.sample_rate, resample=a.resample) for f in files]
    codec.train_entropy_coders(signals, "fixed" if codec.cfg.network.binary else "float")
    codec.meta = dict(codec.meta)
    codec.meta.setdefault("codebook_updates", []).append(
        {"command": "cascade codebooks " + " ".join(sys.argv[2:]), "files": len(files),
         "date": time.strftime("%Y-%m-%d")})
    codec.save(out, force=a.force)
    print(f"{out}: Huffman codebooks of the stage codes and side information from {len(files)} files")


def cmd_set_search(a):
    """Write the encoder code search a model file carries (its host-side ``search`` section: no
    weight, no stream format and no config hash changes), checked against a board's real time."""
    codec = _load_codec(a.model)
    out = _out_path(a.out, a.force)
    if a.search is None and a.search_candidates is None:
        raise UserError("set-search needs --search and/or --search-candidates")
    codec = _host_settings(codec, a)
    checked = None
    if a.board:
        from hw.clocks import resolve_clock
        from hw.synth import choose_lanes, cycles_per_frame, platform_for
        model = codec.int_model()
        clk = resolve_clock(platform_for(a.board), None if a.clock is None else a.clock * 1e6)
        lanes = choose_lanes(model, a.board, ("encoder",))["lanes"] if a.lanes == "auto" else a.lanes
        cycles = cycles_per_frame(model, lanes, ("encoder",))["encoder"]
        rtf = clk / (cycles * codec.cfg.signal.frame_rate)
        checked = {"board": a.board, "clock_mhz": clk / 1e6, "lanes": lanes, "cycles_per_frame": cycles,
                   "real_time_factor": round(rtf, 3)}
        if rtf < a.min_rtf:
            raise UserError(f"the {a.board} encoder core at {lanes} lanes and {clk / 1e6:g} MHz needs {cycles} "
                            f"cycles per frame with this search: {rtf:.3f}x real time, under --min-rtf {a.min_rtf:g}")
    codec.meta = dict(codec.meta)
    codec.meta.setdefault("search_updates", []).append(
        {"command": "cascade set-search " + " ".join(sys.argv[2:]), "search": dataclasses.asdict(codec.cfg.search),
         "checked": checked, "date": time.strftime("%Y-%m-%d")})
    codec.save(out, force=a.force)
    print(json.dumps({"search": dataclasses.asdict(codec.cfg.search), "real_time": checked}))


def cmd_tune_postfilter(a):
    from .codec import POSTFILTER_GAMMAS
    from .data import load_wav
    codec = _load_codec(a.model)
    out = _out_path(a.out, a.force)
    for extra in (a.json, a.plot):
        if extra not in (None, "-"):
            _out_path(extra, a.force)
    files = []
    for d in a.wav_dir:
        files += wav_files(d)
    signals = [load_wav(f, codec.cfg.signal.sample_rate, resample=a.resample) for f in files]
    N = codec.cfg.network.stages
    with progress_bars(not a.quiet) as p:
        task = p.add_task(f"postfilter: {len(files)} files x {N} stage counts", total=len(files) * N) if p else None
        step = (lambda done, total: p.update(task, completed=done)) if p else None
        try:
            table = codec.tune_postfilter(signals, a.gammas or POSTFILTER_GAMMAS, progress=step)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    codec.meta = dict(codec.meta)
    codec.meta.setdefault("postfilter_updates", []).append(
        {"command": "cascade tune-postfilter " + " ".join(sys.argv[2:]), "files": [str(f) for f in files],
         "num_gamma": table["num_gamma"], "date": time.strftime("%Y-%m-%d")})
    codec.save(out, force=a.force)
    if a.json is not None:
        _json_out(table, a.json, a.force)
    if a.plot:
        _postfilter_plot(table, Path(a.plot), a.force)
    if a.json != "-":
        for k, (g, row) in enumerate(zip(table["num_gamma"], table["pesq_wb"]), 1):
            print(f"K={k:2d}  num_gamma {g:.2f}  PESQ-WB {max(row):.3f}  (" +
                  " ".join(f"{x:.2f}:{v:.3f}" for x, v in zip(table["gammas"], row)) + ")")
        judged = "" if table["files_judged"] == len(files) else f" ({table['files_judged']} that PESQ could judge)"
        print(f"{out}: formant postfilter num_gamma per K from {len(files)} files{judged}")


def _postfilter_plot(table: dict, path: Path, force: bool = False) -> None:
    """PESQ-WB per number of decoded stages K (x) for each gamma tried (lines), the kept gamma
    of each K ringed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    pesq = np.array(table["pesq_wb"])
    ks = np.arange(1, len(pesq) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, g in enumerate(table["gammas"]):
        ax.plot(ks, pesq[:, j] - pesq.max(1), "o-", ms=3, label=f"gamma {g:.2f}")
    ax.plot(ks, np.zeros(len(ks)), "ko", mfc="none", ms=9, label="kept")
    ax.set_xticks(ks)
    ax.set_xlabel("decoded stages K")
    ax.set_ylabel("PESQ-WB minus the best at this K")
    ax.set_title(f"formant postfilter: {table['files']} files")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_file(path, lambda f: fig.savefig(f, format="png", dpi=110), force)
    plt.close(fig)


def _gammas(text: str) -> tuple:
    """``--gammas``: "0.7,0.8" -> (0.7, 0.8), each in [0, 1)."""
    vals = _numbers(text, float)
    if not all(0 <= v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"gammas must be in [0, 1): {text!r}")
    return vals


def _num_gamma(text: str):
    """``--num-gamma``: "0.8" -> 0.8, "0.7,0.8" -> (0.7, 0.8) (``PostfilterConfig.num_gamma``)."""
    vals = _gammas(text)
    return vals[0] if len(vals) == 1 else vals


def cmd_export(a):
    from .export import save_export
    codec = _load_codec(a.model)
    out = _out_dir(a.out, a.force)
    save_export(codec.int_model(), out, a.force)
    print(f"export written to {out} (config {codec.cfg.config_hash})")


def cmd_export_rtl(a):
    from hw.rtl import export_rtl
    codec = _host_settings(_load_codec(a.model), a)
    out = _out_dir(a.out, a.force)
    info = export_rtl(codec.int_model(), out, a.lanes, a.force)
    print(json.dumps(info, indent=1, default=str))


def _frames_for_verify(codec, wav, frames):
    from . import dsp, golden
    from .data import load_wav
    if wav is None:
        from .data import list_wavs
        files = list_wavs(DEFAULT_TEST_DIR)
        if not files:
            raise UserError("no --wav given and no held-out test data (run `cascade prepare-data`)")
        wav = files[0]
    x = load_wav(wav, codec.cfg.signal.sample_rate)
    an = dsp.analyze(x, codec.cfg, codec.lsf_q)
    fr = an.frames[an.gain_idx > 0] if (an.gain_idx > 0).any() else an.frames
    return golden.quantize_frames(fr[:frames], codec.cfg), wav


def cmd_verify(a):
    from sim.verify import verify_cores
    if a.json:
        _out_path(a.json, a.force)       # before minutes of simulation
    codec = _host_settings(_load_codec(a.model), a)
    frames, wav = _frames_for_verify(codec, a.wav, a.frames)
    build = _folder(a.build_dir, "--build-dir")
    build.mkdir(parents=True, exist_ok=True)
    log = build / "simulation.log"
    if a.storage == "spram":
        from hw.store import spram_misfit
        fx = codec.cfg.fixed
        misfit = spram_misfit(a.lanes, fx.scale_bits, fx.bias_bits)
        if misfit:
            raise UserError(misfit)
    print(f"simulating {len(frames)} frames of {wav} (lanes={a.lanes}, weights in {a.storage}) in Icarus "
          f"Verilog (log: {log})...", file=sys.stderr)
    with _fds_to(log):
        res = verify_cores(codec.int_model(), frames, a.lanes, build, storage=a.storage)
    bad = False
    for core in ("encoder", "decoder"):
        r = res[core]
        cyc = (f"{r['cycles_per_frame']} cycles/frame" if r.get("cycles_per_frame") is not None else
               f"{r.get('designed_cycles_per_frame')} cycles/frame designed (3+ frames to measure)")
        print(f"{core}: {r['mismatches']} mismatches in {r['words']} words, {cyc}")
        if r["mismatches"]:
            bad = True
            fm = r["first_mismatch"]
            layer = ("its code layer" if core == "encoder" else "the decoder output layer (running sum)")
            print(f"  first mismatch: frame {fm['frame']}, stage {fm['stage']}, word {fm['word']} "
                  f"(output of {layer}): expected {fm['expected']}, got {fm['got']}")
    if a.json:
        _json_out({"config_hash": codec.cfg.config_hash, "lanes": a.lanes, "storage": a.storage,
                   "wav": os.path.relpath(wav, REPO) if Path(wav).resolve().is_relative_to(REPO) else str(wav),
                   "frames": len(frames),
                   "search": {"passes": codec.cfg.search.passes,
                              "bits_per_stage": [codec.cfg.search_bits(n) for n in range(codec.cfg.network.stages)]},
                   **res}, a.json, a.force)
    if bad:
        raise SystemExit(1)


def _synth_sweep(a, model, builds):
    from hw.synth import sweep
    results = {}
    for cores in builds:
        src = Path(a.model) if a.model else None
        tag = "default" if src is None else (src.parent.name if src.name == "model.pt" else src.stem)
        name = f"{tag}-{a.board}-{'-'.join(cores)}"
        out = Path(a.out) if a.out else REPO / "docs" / "report" / "lanes" / name
        print(f"lane sweep of {' + '.join(cores)} on {a.board}, P = {', '.join(map(str, a.sweep))} -> {out}",
              file=sys.stderr)

        def said(P, row):
            if row["fits"]:
                rtf = ", ".join(f"{c} {e['rtf_at_board_clock']}x" for c, e in row["per_core"].items())
                print(f"  P={P}: {row['cells']} cells, {row['fmax_mhz']} MHz, real time {rtf} at the board clock"
                      + (" (reused)" if row["reused"] else ""), file=sys.stderr)
            else:
                print(f"  P={P}: {row['reason']}", file=sys.stderr)
        results[name] = sweep(model, a.board, a.sweep, REPO / "build" / "sweep" / name, cores=cores,
                              storage=a.storage, report_dir=out, progress=said, clock_hz=a.clock_hz)
    print(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=1, default=str))


def cmd_synth(a):
    if a.out:
        _folder(a.out, "--out")
    from hw.synth import FitError, choose_lanes, platform_for, resolve_storage, synth
    from hw.clocks import resolve_clock
    # the system clock first: a clock the board cannot make is one line before any tool runs
    a.clock_hz = None if a.clock is None else resolve_clock(platform_for(a.board), a.clock * 1e6)
    if a.clock_hz is not None and abs(a.clock_hz - a.clock * 1e6) > 1:
        print(f"clock: {a.clock_hz / 1e6:g} MHz, the PLL's nearest output at or below {a.clock:g} MHz",
              file=sys.stderr)
    board_kwargs = {}
    if a.flash_boot:
        if platform_for(a.board).family != "iCE40":
            raise UserError(f"--flash-boot: {a.board} is not an iCE40 board (flash boot is built for the iCEBreaker)")
        if a.storage == "rom":
            raise UserError("--flash-boot loads the weights into RAM: use --storage spram or ram (or auto)")
        if a.storage == "auto":
            a.storage = "spram"
        board_kwargs["flash_boot"] = True
    if a.random_weights:   # --model may then name a config file or preset as well as a model
        from .config import CodecConfig
        from .golden import random_model
        try:
            cfg = _load_codec(a.model).cfg
        except CascadeError:
            if a.model is None:
                raise
            cfg = CodecConfig.load(a.model)
        model = random_model(_host_config(cfg, a), 0)
    else:
        codec = _host_settings(_load_codec(a.model), a)
        model = codec.int_model()
    def fits(cores):     # FitError if no build of these cores fits (at --lanes, or at any P for auto)
        if a.lanes == "auto" or a.sweep:
            choose_lanes(model, a.board, cores, storage=a.storage)
        else:
            resolve_storage(model, a.board, a.lanes, cores, storage=a.storage)

    if a.cores == "auto":
        # both cores in one top when they fit, else one bitstream per core (each must fit)
        try:
            fits(("encoder", "decoder"))
            builds = [("encoder", "decoder")]
        except FitError:
            builds = [("encoder",), ("decoder",)]
    else:
        cores = tuple(c.strip() for c in a.cores.split(",") if c.strip())
        if not cores or set(cores) - {"encoder", "decoder"}:
            raise UserError("--cores takes auto, encoder, decoder or encoder,decoder")
        builds = [cores]
    for cores in builds:   # check every build before the first (long) tool run
        fits(cores)
    if a.out and len(builds) > 1:
        raise UserError("the cores need one bitstream each here: give --cores encoder or --cores decoder with --out")
    if a.sweep:
        if a.flash_boot:
            raise UserError("--sweep builds without --flash-boot (the flash reader adds the same few cells at every P)")
        if a.mode != "full":
            raise UserError("--sweep needs --mode full (each row has Fmax from place and route)")
        return _synth_sweep(a, model, builds)
    results = {}
    for cores in builds:
        name = a.board if len(cores) == 2 else f"{a.board}-{cores[0]}"
        out = Path(a.out) if a.out else REPO / "bitstreams" / name
        print(f"building {' + '.join(cores)} for {a.board} -> {out}", file=sys.stderr)
        results[name] = synth(model, a.board, a.lanes, out, cores=cores, storage=a.storage, mode=a.mode,
                              clock_hz=a.clock_hz, **board_kwargs)
        if "lanes_choice" in results[name]:
            print(f"lanes: {results[name]['lanes']} ({results[name]['lanes_choice']['why']})", file=sys.stderr)
        for core, e in results[name]["per_core"].items():
            if e["real_time_factor_at_board_clock"] < 1:
                print(f"warning: the {core} core needs {e['cycles_per_frame']} cycles per frame: "
                      f"{e['real_time_factor_at_board_clock']}x real time at the board clock"
                      + (" (fewer --search-candidates, more --lanes or a faster --clock make it faster)"
                         if core == "encoder" else ""),
                      file=sys.stderr)
    print(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=1, default=str))


def cmd_board(a):
    """Stream speech through a codec board (hw/board.py) over its UART."""
    from hw.host import Board, ProtocolError
    from . import dsp, golden
    from .bitstream import Frames, read_stream, write_stream
    from .data import load_wav, write_wav
    codec = _load_codec(a.model)
    cfg = codec.cfg
    if a.action in ("encode", "decode"):
        if not a.input or not a.output:
            raise UserError(f"board {a.action} needs INPUT and OUTPUT")
        out = _out_path(a.output, a.force)
    try:
        board = Board.open(a.port, cfg, a.baud)
        info = board.info(check=True)
        if info["needs_load"] and (not info["loaded"] or a.action == "load"):
            board.load(codec.int_model(), info)    # weights in RAM (e.g. iCE40 SPRAM): send them
            info["loaded"] = True
        if a.action in ("info", "load"):
            _json_out(info, None)
        elif a.action == "selftest":
            res = board.selftest()
            print(json.dumps(res))
            if not all(res.values()):
                raise SystemExit(1)
        elif a.action == "encode":
            an = dsp.analyze(load_wav(a.input, cfg.signal.sample_rate), cfg, codec.lsf_q)
            codes = board.encode(golden.quantize_frames(an.frames, cfg))
            frames = Frames(an.num_samples, an.lsf_idx, an.gain_idx, [c.astype("uint8") for c in codes], pitch=an.pitch)
            write_file(out, write_stream(frames, cfg, codec.codebooks, codec.side), a.force)
            print(f"{a.input} -> {out} (coded on the board)")
        else:
            frames = read_stream(Path(a.input).read_bytes(), cfg, codec.codebooks, side=codec.side)
            y = golden.dequantize_frames(board.decode(frames.codes), cfg)
            write_wav(out, dsp.synthesize(y, frames.lsf_idx, frames.gain_idx, frames.num_samples, cfg,
                                          codec.lsf_q, len(frames.codes), frames.pitch), cfg.signal.sample_rate,
                      force=a.force)
            print(f"{a.input} -> {out} (decoded on the board)")
    except (ProtocolError, ImportError, OSError) as exc:
        raise UserError(f"board on {a.port}: {exc}") from None


def cmd_report(a):
    _folder(a.out, "--out")
    if a.float_model:
        _input_file(a.float_model)
    from .report_cmd import ReportOptions, run_damage_report, run_report
    opts = _options(ReportOptions, a, command="cascade report " + " ".join(sys.argv[2:]))
    if a.damage_only:
        return run_damage_report(opts)
    run_report(opts)


def cmd_ablate(a):
    import shlex
    from .ablate import AblationOptions, run_ablation
    run_ablation(_options(AblationOptions, a, train_dir=tuple(a.train_dir),
                          command="cascade ablate " + " ".join(shlex.quote(x) for x in a.argv[1:])))


def _options(cls, a, **given):
    """A library command's options dataclass from the parsed arguments (its fields by name)."""
    import dataclasses
    return cls(**{f.name: getattr(a, f.name) for f in dataclasses.fields(cls) if f.name not in given}, **given)


def cmd_prepare_data(a):
    from .data import check_engines, prepare_pocketsphinx, synthesize_speech
    out = _folder(a.out, "--out")
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    if a.synth_minutes > 0:
        try:
            check_engines(engines)
        except RuntimeError as exc:
            raise UserError(str(exc)) from None
    res = prepare_pocketsphinx(out)
    print(f"pocketsphinx-testdata: {len(res['train'])} train, {len(res['test'])} test files in {out}")
    if not a.no_asterisk:
        from .data import prepare_asterisk
        try:
            with progress_bars() as p:
                task = p.add_task("asterisk prompts (G.722 -> WAV)", total=None)
                ast = prepare_asterisk(out, progress=lambda d, t: p.update(task, completed=d, total=t))
        except (FileNotFoundError, RuntimeError) as exc:
            raise UserError(str(exc)) from None
        mins = ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(ast["seconds"].items()))
        print(f"asterisk prompts: {mins} ({len(ast['skipped'])} short or silent prompts skipped)")
    if a.synth_minutes > 0:
        try:
            files = synthesize_speech(out / "synth", minutes=a.synth_minutes, seed=a.seed, engines=engines,
                                      speed_perturb=a.speed_perturb)
        except RuntimeError as exc:
            raise UserError(str(exc)) from None
        print(f"{', '.join(engines)}: {len(files)} synthetic files in {out / 'synth'}")


def cmd_demo(a):
    from .data import load_wav, write_wav
    from .metrics import measure
    out = _folder(a.out, "--out")
    if a.wav:
        _input_file(a.wav)
    codec = _load_codec(a.model)
    out.mkdir(parents=True, exist_ok=True)
    from .data import list_wavs, voice_of
    if not a.wav and not list_wavs(DEFAULT_TEST_DIR):
        from .data import prepare_asterisk, prepare_pocketsphinx
        prepare_pocketsphinx(REPO / "data")
        try:
            prepare_asterisk(REPO / "data")
        except (FileNotFoundError, RuntimeError) as exc:   # the pocketsphinx clips still do
            print(f"note: no asterisk prompts ({exc})")
    if a.wav:
        wav, note = Path(a.wav), ""
    else:  # the longest test recording: a voice absent from the training data
        wav = max(list_wavs(DEFAULT_TEST_DIR), key=lambda f: f.stat().st_size)
        note = f", voice '{voice_of(wav)}', never trained on"
    sr = codec.cfg.signal.sample_rate
    x = load_wav(wav, sr)
    print(f"model: {codec.provenance()} (config {codec.cfg.config_hash})")
    print(f"input: {wav} ({len(x) / sr:.2f} s{note})")
    rows = []
    (p0, c0, _), *others = search_variants(codec)
    runs = [("float", p0, c0, codec, "float"), ("fixed", p0, c0, codec, "fixed")]
    runs += [("fixed", p, c, cw, "fixed_search2" if p else "fixed_nosearch") for p, c, cw in others]
    for arith, passes, cands, cw, name in runs:
        data = cw.encode_bytes(x, arith)
        y, _ = cw.decode_bytes(data, arith)
        write_file(out / f"demo_{name}.cas", data, force=True)    # the demo's own folder: each run
        write_wav(out / f"demo_{name}.wav", y, sr, force=True)    # replaces its files
        m = measure(x, y, sr)
        what = search_name(passes, cands) + (" (core)" if cw is codec else "")
        rows.append((arith, what, 8 * len(data) / (len(x) / sr) / 1000, m))
    w = max(len("code search"), *(len(r[1]) for r in rows))
    print(f"{'arith':6} {'code search':{w}} {'kbps':>6} {'PESQ-WB':>8} {'STOI':>6} {'SNR dB':>7}")
    for arith, what, kbps, m in rows:
        print(f"{arith:6} {what:{w}} {kbps:6.2f} {m['pesq_wb']:8.3f} {m['stoi']:6.3f} {m['snr_db']:7.2f}")
    print(f"decoded audio: {out}/demo_fixed.wav (bitstream {out}/demo_fixed.cas: the encoder "
          f"core's code, as the board sends it)")
    from .export import save_export
    save_export(codec.int_model(), out / "export")
    try:
        from hw.rtl import export_rtl
    except ImportError:
        print("hardware generator not available in this build")
        return
    info = export_rtl(codec.int_model(), out / "rtl", a.lanes)
    print(f"hardware: Verilog in {out}/rtl (lanes={a.lanes}): " + ", ".join(
        f"{k}={v}" for k, v in info.items() if "cycles" in k))


# ------------------------------------------------------------------------------------ parser

class _Parser(argparse.ArgumentParser):
    """argparse with the error contract: a bad argument is one line, ``cascade: error: ...``,
    and exit status 1 (argparse's own is usage lines and status 2)."""

    def error(self, message):
        sub = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(1, f"cascade: error: {sub}{' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cascade",
        description="Cascaded residual autoencoder speech codec (US 11,276,413): train, code, "
                    "measure, and turn it into bit-exact FPGA hardware.",
        epilog="Every --model defaults to the shipped model (model/default/model.pt).")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def model_arg(sp):
        sp.add_argument("--model", help="model file (.pt); default: the shipped model")

    def arith_arg(sp):
        sp.add_argument("--arith", choices=("float", "fixed"), default="fixed",
                        help="float: PyTorch model; fixed: integer golden model = the hardware (default)")

    def search_args(sp, core=False):
        what = ("the encoder core's code search: passes of single-bit flips against each stage's "
                "decoder (default: the model's config, 1; 0 = none); the software encoder must use "
                "the same to send the same streams" if core else
                "closed-loop code search: passes of single-bit flips against each stage's decoder "
                "(default: the model's config, as the encoder core does it: 1; 0 = none; the "
                "stream decodes anywhere either way)")
        sp.add_argument("--search", type=_SEARCH, metavar="PASSES", help=what)
        sp.add_argument("--search-candidates", type=_candidates, metavar="C[,C2,...]",
                        help="bits the search visits per pass: C for every searched stage, or "
                             "C1,C2,... for stages 1, 2, ... (the last also for later stages); "
                             "0 = all (default: the model's config: cascade set-search writes it)")

    def decoder_host_args(sp):
        sp.add_argument("--no-postfilter", action="store_true",
                        help="decode without the postfilters (formant and pitch)")
        sp.add_argument("--no-pitch-postfilter", action="store_true",
                        help="decode without the pitch (long-term) postfilter")
        sp.add_argument("--no-noise-fill", action="store_true",
                        help="decode without noise filling")
        sp.add_argument("--num-gamma", type=_num_gamma, metavar="G[,G2,...]",
                        help="formant postfilter numerator gamma: one value for every K, or one per "
                             "number of decoded stages K (default: the model's, see cascade tune-postfilter)")

    sp = add("demo", cmd_demo, "encode and decode held-out real speech with the default model, print "
             "bitrate and quality, export weights and generate the Verilog")
    model_arg(sp)
    sp.add_argument("--wav", help="speech file to use (default: a held-out pocketsphinx recording)")
    sp.add_argument("--out", default="out/demo", help="output folder, whose demo_* files each run "
                    "replaces (default out/demo)")
    sp.add_argument("--lanes", type=_LANES, default=16, help="parallel MAC lanes of the generated cores")

    sp = add("train", cmd_train, "train a codec on folders of WAV files (greedy, then joint fine-tuning)")
    sp.add_argument("wav_dir", nargs="+", help="folder(s) of WAV files, searched recursively")
    sp.add_argument("--config", help="config JSON file or preset name (default: the default config)")
    sp.add_argument("--out", required=True, help="model file to write")
    sp.add_argument("--seed", type=_SEED, default=0)
    sp.add_argument("--greedy-epochs", type=_EPOCHS, default=30, help="epochs per stage in greedy training")
    sp.add_argument("--rounds", type=_ROUNDS, default=2, help="joint fine-tuning rounds M")
    sp.add_argument("--finetune-epochs", type=_EPOCHS, default=15, help="epochs per fine-tuning round")
    sp.add_argument("--batch", type=_BATCH, default=128)
    sp.add_argument("--lr", type=_positive(float), default=2e-3, help="learning rate (Adam, cosine to 5 %%)")
    sp.add_argument("--finetune-lr", type=_positive(float), help="learning rate of the fine-tuning rounds "
                    "(default: --lr)")
    sp.add_argument("--no-augment", action="store_true", help="no speed-perturbed copies")
    sp.add_argument("--speaker-minutes", type=_positive(float), metavar="M",
                    help="balance the speakers: at most M minutes from each folder of WAV files "
                         "(one folder per voice, as cascade prepare-data writes them)")
    sp.add_argument("--loss", choices=("mse", "bands"), default="mse",
                    help="mse: MSE on the LPC-weighted residual spectrum (default); bands: plus a "
                         "multi-resolution log band-energy term (model/train.py)")
    sp.add_argument("--rate-weight", type=_NON_NEGATIVE, default=0.0, metavar="L",
                    help="entropy-aware training: add L dB per bit of the code bits' mean binary "
                         "entropy to the greedy loss (skewed codes that Huffman coding shrinks; "
                         "--loss mse only; default 0)")
    sp.add_argument("--search-residuals", action="store_true",
                    help="train each stage on the residual the earlier stages leave with the codes "
                         "the encoder's code search picks (the config's search section, or "
                         "--search / --search-candidates, as the encoder core runs it), not with "
                         "their one-shot codes")
    search_args(sp, core=True)
    sp.add_argument("--scale", choices=("learned", "mean"), default="learned",
                    help="binary layers' per-output scales: learned (trained parameters, default) "
                         "or mean (mean |W| of the latent weights, XNOR-Net; the older rule)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    sp.add_argument("--threads", type=_THREADS, default=0, help="torch CPU threads (0: torch's default)")
    sp.add_argument("--resample", action="store_true", help="resample/downmix files that are not 16 kHz mono")
    sp.add_argument("--force", action="store_true", help="overwrite --out")

    def coding_args(sp, stages_help):    # what encode and decode both take
        sp.add_argument("input")
        sp.add_argument("output")
        model_arg(sp)
        arith_arg(sp)
        sp.add_argument("--stages", type=int, help=stages_help)

    sp = add("encode", cmd_encode, "encode a WAV file to a .cas bitstream")
    coding_args(sp, "code only the first K stages (lower bitrate)")
    search_args(sp)
    sp.add_argument("--resample", action="store_true", help="accept other rates / stereo by resampling / downmixing")
    side = sp.add_mutually_exclusive_group()
    side.add_argument("--robust", action="store_true",
                      help="side information in checked per-frame units (a bit error costs one frame's side "
                           "information; about +1 kbps), instead of compact delta+Huffman blocks "
                           "(docs/bitstream.md)")
    side.add_argument("--side-block", type=_SIDE_BLOCK, metavar="FRAMES",
                      help=f"frames per compact side block, each with its own check (a bit error costs its "
                           f"block's side information; longer blocks code a little smaller; default "
                           f"{SIDE_BLOCK_FRAMES}, 1..{LIMITS['side_block']})")
    sp.add_argument("--force", action="store_true", help="overwrite the output")

    sp = add("decode", cmd_decode, "decode a .cas bitstream to a WAV file")
    coding_args(sp, "decode only the first K stages")
    decoder_host_args(sp)
    sp.add_argument("--force", action="store_true", help="overwrite the output")

    sp = add("truncate", cmd_truncate, "cut a .cas stream to its first K stages without re-encoding")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.add_argument("--stages", type=int, required=True)
    model_arg(sp)
    sp.add_argument("--force", action="store_true")

    sp = add("info", cmd_info, "print a .cas stream's header as JSON")
    sp.add_argument("input")

    sp = add("eval", cmd_eval, "measure PESQ-WB, STOI, SNR and the actual bitrate on a folder of WAV files")
    sp.add_argument("wav_dir")
    model_arg(sp)
    arith_arg(sp)
    sp.add_argument("--stages", type=int, help="use the first K stages (default all)")
    search_args(sp)
    decoder_host_args(sp)
    sp.add_argument("--curve", action="store_true",
                    help="every K = 1..N from one encoding per file (streams cut with truncate)")
    sp.add_argument("--baseline", metavar="CODEC[:KBPS]",
                    help="measure a reference codec instead of the model: opus[:KBPS], speex[:KBPS], "
                         "g722 (same files, same metrics, rate from its file sizes)")
    sp.add_argument("--json", help="write per-file and mean results to this JSON file ('-': stdout)")
    sp.add_argument("--markdown", help="with --curve: write the per-voice table (PESQ-WB per voice and K, "
                                       "voice mean, bitrate) to this Markdown file")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--force", action="store_true", help="overwrite --json and --markdown")

    sp = add("set-format", cmd_set_format, "change a trained model's fixed-point formats (the float "
             "weights do not depend on them, so no retraining): writes a new model file")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--act-bits", type=int)
    sp.add_argument("--act-int-bits", type=int)
    sp.add_argument("--scale-bits", type=int)
    sp.add_argument("--bias-bits", type=int)
    sp.add_argument("--force", action="store_true")

    sp = add("codebooks", cmd_codebooks, "(re)build a model's Huffman codebooks (stage codes and side "
             "information) from folders of WAV files: writes a new model file")
    sp.add_argument("wav_dir", nargs="+")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--resample", action="store_true")
    sp.add_argument("--force", action="store_true")

    sp = add("tune-postfilter", cmd_tune_postfilter,
             "pick the formant postfilter's num_gamma for every number of decoded stages K by PESQ-WB "
             "on folders of WAV files (use training data): writes a new model file")
    sp.add_argument("wav_dir", nargs="+")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--gammas", type=_gammas, default=None, metavar="G1,G2,...",
                    help="num_gamma values to try (default 0.65,0.7,0.75,0.8,0.85,0.9)")
    sp.add_argument("--json", help="write the table (PESQ-WB per K and gamma) to this JSON file ('-': stdout)")
    sp.add_argument("--plot", metavar="PNG", help="draw PESQ-WB per K for each gamma, the kept ones ringed")
    sp.add_argument("--resample", action="store_true")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--force", action="store_true", help="overwrite --out, --json and --plot")

    sp = add("set-search", cmd_set_search,
             "write a model file whose encoder code search (the software encoder's and the encoder "
             "core's default) is --search / --search-candidates, checked to keep the encoder core "
             "real-time on --board at --clock; weights, streams and the config hash stay the same")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    search_args(sp, core=True)
    sp.add_argument("--board", choices=("icebreaker", "ulx3s-25f", "ulx3s-85f"),
                    help="check the encoder core's real-time factor on this board")
    sp.add_argument("--clock", type=_CLOCK_MHZ, metavar="MHZ", help="system clock of that board (as cascade "
                    "synth --clock; default its oscillator)")
    sp.add_argument("--lanes", type=_lanes_or_auto, default="auto", help="lanes of that build (default auto, "
                    "as cascade synth)")
    sp.add_argument("--min-rtf", type=_positive(float), default=1.1,
                    help="refuse a search under this real-time factor there (default 1.1)")
    sp.add_argument("--force", action="store_true", help="overwrite --out")

    sp = add("export", cmd_export, "write the integer model (weight bits, scales, biases, formats) for the hardware")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--force", action="store_true")

    sp = add("export-rtl", cmd_export_rtl, "generate the encoder and decoder cores as Verilog")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--lanes", type=_LANES, default=16, help="parallel MAC lanes P")
    search_args(sp, core=True)
    sp.add_argument("--force", action="store_true")

    sp = add("verify", cmd_verify, "simulate the encoder and decoder cores (Icarus) on real speech "
             "frames and compare every word with the golden model")
    model_arg(sp)
    sp.add_argument("--wav", help="speech file (default: a held-out test recording)")
    sp.add_argument("--frames", type=_FRAMES, default=4, help="frames to simulate (default 4)")
    sp.add_argument("--lanes", type=_LANES, default=16)
    sp.add_argument("--build-dir", default="build/verify")
    sp.add_argument("--storage", default="rom", choices=("rom", "spram", "ram"),
                    help="weights in ROM (ECP5 builds), in iCE40 SPRAM (Yosys' SB_SPRAM256KA model; "
                         "loaded through the core's load stream first, as on the iCEBreaker) or in RAM")
    search_args(sp, core=True)
    sp.add_argument("--json", help="write the result as JSON")
    sp.add_argument("--force", action="store_true", help="replace the --json file if it exists")

    sp = add("synth", cmd_synth, "synthesize, place and route for a board; write bitstream and report")
    sp.add_argument("--board", required=True, choices=("icebreaker", "ulx3s-25f", "ulx3s-85f"))
    model_arg(sp)
    sp.add_argument("--lanes", type=_lanes_or_auto, default="auto",
                    help="parallel MAC lanes P; auto (default): the largest power of two that the fit check "
                         "passes (cells, memory bits, block RAMs side by side, SPRAM word width) while doubling "
                         "still saves 10 %% of the cycles, halved after place and route while the build misses "
                         "the board clock; the report says why P stopped there")
    sp.add_argument("--sweep", type=_lane_list, nargs="?", const=(8, 16, 32, 64, 128), metavar="P,P,...",
                    help="build at each P (default 8,16,32,64,128) and write a table and a plot of cells, "
                         "Fmax, cycles and real-time factor against P to docs/report/lanes/MODEL-BOARD-CORES/ "
                         "(builds under build/sweep/; a P already built by this generator is reused)")
    sp.add_argument("--cores", default="auto",
                    help="which cores a board top holds: encoder, decoder or encoder,decoder; auto (default): "
                         "both in one bitstream if they fit, else one bitstream each (bitstreams/BOARD-encoder, "
                         "bitstreams/BOARD-decoder)")
    sp.add_argument("--out", help="output folder (default bitstreams/BOARD, or BOARD-CORE for one core)")
    sp.add_argument("--storage", default="auto", choices=("auto", "rom", "spram", "ram"),
                    help="where the weights live: rom (in the bitstream), spram (iCE40 UltraPlus SPRAM, "
                         "sent by `cascade board load`), ram (block RAM, loaded likewise); auto (default): "
                         "rom if it fits, else spram")
    sp.add_argument("--mode", default="full", choices=("full", "yosys"),
                    help="full (default): synthesis, place and route, bitstream; yosys: synthesis and "
                         "its cell counts only (a quick fit check, no bitstream)")
    sp.add_argument("--clock", type=_CLOCK_MHZ, metavar="MHZ",
                    help="system clock in MHz (default: the board's oscillator, iCEBreaker 12, ULX3S 25): "
                         "made by the board's PLL (iCE40 boards), the nearest output at or below MHZ; the "
                         "build checks timing at it and the report's real-time factors use it; a faster "
                         "clock pays for a wider --search-candidates")
    sp.add_argument("--flash-boot", action="store_true",
                    help="iCE40: the board reads its weights from its SPI flash at power-up (no host "
                         "needed to load them; weights in SPRAM or RAM); the build writes OUT/flash-image.bin "
                         "and the report says how to program it (iceprog -o 1024k flash-image.bin)")
    sp.add_argument("--random-weights", action="store_true",
                    help="the model's config with random weights (hardware size and timing do not "
                         "depend on the weights; for trying a --model config file or preset)")
    search_args(sp, core=True)

    sp = add("board", cmd_board, "talk to a codec board over its UART: info, load (send the weights to "
             "a board that keeps them in RAM; done first by every action when needed), selftest, or "
             "encode a WAV / decode a .cas on the board (needs pyserial)")
    sp.add_argument("action", choices=("info", "load", "selftest", "encode", "decode"))
    sp.add_argument("input", nargs="?")
    sp.add_argument("output", nargs="?")
    sp.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    sp.add_argument("--baud", type=_BAUD, default=1_000_000)
    model_arg(sp)
    sp.add_argument("--force", action="store_true")

    sp = add("report", cmd_report, "rate-quality curve at every K next to Opus/Speex/G.722, fixed vs "
             "float sweep, Huffman savings: Markdown, JSON and PNG")
    model_arg(sp)
    sp.add_argument("--test-dir", default=str(DEFAULT_TEST_DIR), help="held-out WAV folder")
    sp.add_argument("--out", default="out/report")
    sp.add_argument("--arith", choices=("float", "fixed", "both"), default="both")
    sp.add_argument("--widths", type=_widths, default=(6, 8, 10, 12, 16),
                    help="activation widths for the fixed-point sweep (default 6,8,10,12,16; '' for none)")
    sp.add_argument("--no-baselines", action="store_true")
    sp.add_argument("--float-model", help="a float-weight model (network.binary=false) to draw beside")
    sp.add_argument("--damage-seeds", type=_ranged(int, 0, 1000), default=8,
                    help="seeds of the damage section (model/damage.py; default 8, 0: no damage section)")
    sp.add_argument("--damage-before", help="an earlier layout's damage.json to show beside (same command)")
    sp.add_argument("--damage-only", action="store_true", help="write only the damage section: OUT/damage.md, .json")

    sp = add("ablate", cmd_ablate, "ablation study: train variants of the codec (transform, LPC, "
             "training, stage shape, loss) with one budget, measure each at every K with --arith "
             "fixed beside Opus/Speex/G.722: OUT/ablation.md, .json, .png (model/ablate.py)")
    sp.add_argument("train_dir", nargs="*", help="training WAV folders; the first is the real speech "
                    "(the real_only variant uses it alone), e.g. data/train data/synth")
    sp.add_argument("--test", default=str(DEFAULT_VAL_DIR), help="WAV folder the variants are "
                    "compared on (default data/val: the validation voice, never trained on; the "
                    "test voices are kept for the reported figures)")
    sp.add_argument("--out", default="docs/ablation", help="study folder (default docs/ablation); "
                    "models go to OUT/models/NAME.pt, existing ones are not retrained")
    sp.add_argument("--epochs", type=_EPOCHS, default=4, help="greedy epochs per stage (default 4; "
                    "fine-tuning rounds, where a variant has them, get half)")
    sp.add_argument("--seed", type=_SEED, default=0)
    sp.add_argument("--threads", type=_THREADS, default=0, help="torch CPU threads (0: torch's default)")
    sp.add_argument("--only", help="train only these variants (comma-separated); the report still "
                    "covers every model in OUT/models")
    sp.add_argument("--rate", type=_positive(float), default=20.0, help="rate of the equal-rate columns (kbps, default 20)")
    sp.add_argument("--config", help="base config the variants change (JSON file or preset; "
                    "default: the default config)")
    sp.add_argument("--no-baselines", action="store_true", help="do not measure Opus, Speex, G.722")
    sp.add_argument("--list", action="store_true", help="print the variants and exit")
    sp.add_argument("--report-only", action="store_true",
                    help="train nothing: measure the models already in OUT/models and rewrite the report")
    sp.add_argument("--json", action="store_true", help="also print the results (or, with --list, "
                    "the variants) as JSON on stdout")
    sp.add_argument("--force", action="store_true", help="retrain the selected variants even when "
                    "their model exists (overwriting it); write into a folder that is not a study")

    sp = add("prepare-data", cmd_prepare_data, "make the speaker-disjoint train/val/test folders "
             "from Debian's pocketsphinx-testdata and asterisk-core-sounds-*-g722 (Allison and "
             "Carlo train, June is split into val/ and test/, never trained on; data/SPLIT.md, "
             "data/ASTERISK.md) and synthesize training speech (OUT/synth)")
    sp.add_argument("--no-asterisk", action="store_true",
                    help="only the pocketsphinx recordings (no asterisk prompts)")
    sp.add_argument("--out", default=str(REPO / "data"))
    sp.add_argument("--synth-minutes", type=_NON_NEGATIVE, default=10.0)
    sp.add_argument("--engines", default="espeak-ng",
                    help="comma-separated speech synthesizers for OUT/synth: espeak-ng (default), "
                         "flite, festival (each file spoken by one of them at random)")
    sp.add_argument("--speed-perturb", type=_SPEED_PERTURB, default=0.0, metavar="S",
                    help="resample each synthetic file by a random factor in [1-S, 1+S] (new "
                         "pseudo-speakers; S in 0..0.5, default 0)")
    sp.add_argument("--seed", type=_SEED, default=0)
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    a.argv = list(map(str, argv)) if argv is not None else sys.argv[1:]
    known = CascadeError          # every error a user can cause (model/errors.py)
    try:
        with signals_interrupt():    # SIGTERM/SIGHUP: clean up temporary files like Ctrl-C does
            a.fn(a)
    except known as exc:
        if a.debug:
            raise
        print(f"cascade: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:   # Ctrl-C, SIGTERM, SIGHUP: temporary files are gone by now
        why = f" ({exc})" if str(exc) else ""
        print(f"cascade: error: interrupted{why}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except OSError as exc:   # the file system refused a path the user gave (a file for a folder, ...)
        if a.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"cascade: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # an internal error: still one line, with the way to see more
        if a.debug:
            raise
        print(f"cascade: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
