"""Training: greedy stage-by-stage, then joint fine-tuning of all stages (patent claims 2-4).

* Greedy: stage n is trained alone on the residual r_n = x - (y_1 + ... + y_{n-1}) that the
  already trained stages leave (they are frozen), minimizing the residual error in dB.
* Fine-tuning: M rounds in which all stages are updated together on the error of the whole
  cascade.  To keep the bitrate scalable, the loss is the mean over K = 1..N of the dB error of
  the first K stages (each truncated decoder must stay good, not only the full one).
* Perceptual weighting: the codec works on the LPC residual of A(z/gamma) (see
  ``LpcConfig.gamma``): an MSE there is the CELP weighted error, so the loss is a plain MSE on the
  gain-normalized residual spectrum (``loss="mse"``, the default).
* ``loss="bands"`` adds a multi-resolution log band-energy term to that MSE (in dB, weight
  ``BAND_WEIGHT``): the power spectrum of the frame and of its reconstruction are summed in 64, 16
  and 4 equal bands and the mean absolute difference of the band levels (dB) is added.  An MSE
  decoder at a low rate shrinks what it cannot predict towards zero, which leaves spectral holes;
  the band term asks for the right energy in every band even where the waveform is not matched.
  In greedy training it compares the cascade's reconstruction so far (frozen stages plus the stage
  being trained) with the frame, not the stage's output with its residual.
* ``rate_weight`` > 0 (entropy-aware training) adds ``rate_weight`` dB per bit of the mean
  binary entropy of the stage's code bits (:func:`code_entropy`), so that the codes become skewed
  and the Huffman coder can spend fewer bits on them.
* ``search_residuals``: stage n+1 is trained on the residual that stages 1..n leave with the
  codes the encoder's closed-loop search picks (``SearchConfig`` of the training config, as the
  encoder core runs it; ``model.golden.refine_code`` with the float decoder), not with their
  one-shot codes.  The search makes a residual smaller and shaped differently from the one-shot
  residual, so later stages trained on one-shot residuals see frames unlike the ones they will
  code; with it, they see exactly those.  It costs one search per stage over the training frames.
* ``scale``: how a binary layer's per-output scale alpha is trained (``model.net.BinaryLinear``):
  ``"learned"`` (default), a parameter of its own; ``"mean"``, alpha = mean |W| of the latent
  weights (XNOR-Net; the rule of the models made before).  On the held-out split the learned
  scale lowers the residual error after 9 x 64 bits from -4.4 to -5.5 dB (``cascade ablate``,
  variant ``learned_scale``).
* Data: any folder of WAV files; frames are gain-normalized (per-frame RMS).  Augmentation
  (``augment``) adds speed-perturbed copies (resampling by 0.9 and 1.1, which shifts pitch and
  formants) of every training file.

Runs on the CPU, a GPU when one is there, and several processes through ``torchrun``
(DistributedDataParallel over frames; gradients averaged by DDP, rank 0 writes checkpoints).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from .errors import CascadeError
from . import dsp, golden
from .config import CodecConfig
from .net import BinaryLinear, Cascade

__all__ = ["TrainOptions", "LOSSES", "SCALES", "frames_from_signals", "band_level_error", "code_entropy", "train"]

#: Training losses: ``mse`` (default) and ``bands`` (MSE plus a log band-energy term).
LOSSES = ("mse", "bands")
#: Rules for the binary layers' per-output scales: ``learned`` (default) and ``mean``.
SCALES = ("learned", "mean")
#: Weight of the band-energy term (dB per dB of MSE) for ``loss="bands"``.
BAND_WEIGHT = 0.5
#: Band counts of the multi-resolution band-energy term.
BAND_COUNTS = (64, 16, 4)


class CheckpointError(CascadeError, ValueError):
    """The checkpoint beside the output cannot be resumed from."""


#: What a checkpoint holds (``train`` writes it after each greedy stage and fine-tuning round).
CHECKPOINT_KEYS = ("config_hash", "state_dict", "done_stages", "done_rounds", "history", "gen_state")


def checkpoint_path(out: str | Path) -> Path:
    """The checkpoint that training a model to ``out`` writes and resumes from: ``OUT.ckpt``."""
    return Path(str(out) + ".ckpt")


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The state ``train`` saved after a stage or round (:class:`CheckpointError` if damaged)."""
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
        ok = isinstance(ck, dict) and set(CHECKPOINT_KEYS) <= set(ck)
    except Exception:  # torch raises many types for a damaged file
        ok = False
    if not ok:
        raise CheckpointError(f"{path} is not a readable training checkpoint (left by an earlier "
                              f"run?); delete it to start afresh")
    return ck


@dataclass
class TrainOptions:
    seed: int = 0
    greedy_epochs: int = 30
    finetune_rounds: int = 2
    finetune_epochs: int = 15
    batch: int = 128
    lr: float = 2e-3
    augment: bool = True
    device: str = "auto"
    loss: str = "mse"
    rate_weight: float = 0.0
    scale: str = "learned"
    finetune_lr: float | None = None       # None: ``lr``
    search_residuals: bool = False


def _augmented(signals: list[np.ndarray]) -> list[np.ndarray]:
    out = list(signals)
    for s in signals:
        out.append(resample_poly(s, 10, 9))   # slower and lower by 10 %
        out.append(resample_poly(s, 9, 10))   # faster and higher
    return out


def _cache_dir() -> Path | None:
    """``$CASCADE_CACHE`` (``off``: no cache), else ``~/.cache/cascade``."""
    d = os.environ.get("CASCADE_CACHE")
    if d == "off":
        return None
    return Path(d) if d else Path.home() / ".cache" / "cascade"


def cached_training_frames(signals: list[np.ndarray], cfg: CodecConfig, q, augment: bool,
                           log=print) -> np.ndarray:
    """``frames_from_signals`` of the (augmented) signals, cached on disk.

    The frames depend only on the signals, the front end (signal, LPC, gain, input and pitch
    sections of the config) and the LSF quantizer, not on the network, so trainings that differ
    in their network or options share one analysis (minutes of LPC and pitch analysis for an hour
    of speech).  The key is a SHA-256 of all of these; a damaged cache file is recomputed."""
    import hashlib
    front = {k: v for k, v in cfg.to_dict().items() if k in ("signal", "lpc", "gain", "input", "pitch")}
    h = hashlib.sha256(json.dumps(front, sort_keys=True).encode())
    h.update(b"augment" if augment else b"plain")
    if q is not None:
        h.update(np.ascontiguousarray(q.levels, np.float64).tobytes())
    for s in signals:
        h.update(np.int64(len(s)).tobytes())
        h.update(np.ascontiguousarray(s, np.float64).tobytes())
    d = _cache_dir()
    path = d / f"frames-{h.hexdigest()[:24]}.npy" if d else None
    if path is not None and path.is_file():
        try:
            frames = np.load(path, allow_pickle=False)
            if frames.ndim == 2 and frames.shape[1] == cfg.coefficients and frames.dtype == np.float32:
                log(f"training frames from the analysis cache {path}")
                return frames
        except (OSError, ValueError):
            pass
    frames = frames_from_signals(_augmented(signals) if augment else signals, cfg, q)
    if path is not None:
        try:
            from .files import write_file
            write_file(path, lambda f: np.save(f, frames, allow_pickle=False), force=True)
        except OSError:
            pass                      # a read-only home: train without a cache
    return frames


def frames_from_signals(signals: list[np.ndarray], cfg: CodecConfig, q) -> np.ndarray:
    """Gain-normalized transform frames of all signals, silent frames dropped."""
    frames = []
    for s in signals:
        an = dsp.analyze(s, cfg, q)
        keep = an.gain_idx > 0
        frames.append(an.frames[keep])
    return np.concatenate(frames).astype(np.float32)


def _db(err: torch.Tensor, ref_power: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(err / ref_power + 1e-9)


def _power(z: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    """Power per frequency bin of frames (B, D): MDCT coefficients squared, or |X|^2 of the STFT
    bins 0..hop (real parts first, then the imaginary parts of bins 1..hop-1)."""
    if cfg.signal.transform == "mdct":
        return z ** 2
    hop = cfg.signal.hop
    re, im = z[:, :hop + 1], z[:, hop + 1:]
    p = re ** 2
    return torch.cat([p[:, :1], p[:, 1:hop] + im ** 2, p[:, hop:]], 1)


_BAND_MATRICES: dict = {}


def _band_matrix(bins: int, bands: int, device) -> torch.Tensor:
    """(bins, bands) averaging matrix: bin i belongs to band floor(i * bands / bins)."""
    key = (bins, bands, str(device))
    if key not in _BAND_MATRICES:
        idx = torch.arange(bins) * bands // bins
        m = torch.zeros(bins, bands)
        m[torch.arange(bins), idx] = 1.0
        _BAND_MATRICES[key] = (m / m.sum(0, keepdim=True)).to(device)
    return _BAND_MATRICES[key]


def code_entropy(stage, r: torch.Tensor) -> torch.Tensor:
    """Differentiable rate estimate of a stage's code on a batch: the mean over code bits of the
    binary entropy (bits) of p_j, the batch mean of the soft bit ``clamp((z_j + 1) / 2, 0, 1)``
    (z: the code layer's pre-sign value).  1 for balanced bits, 0 for constant ones; the sum over
    bits bounds the entropy a Huffman coder of the code symbols can reach."""
    p = ((stage.code_preactivation(r) + 1) / 2).clamp(0, 1).mean(0).clamp(1e-6, 1 - 1e-6)
    return (-(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))).mean()


def band_level_error(x: torch.Tensor, y: torch.Tensor, cfg: CodecConfig, floor: float = 1e-3) -> torch.Tensor:
    """Mean absolute difference in dB between the band levels of frames ``x`` and their
    reconstruction ``y`` (both (B, D), gain-normalized), averaged over ``BAND_COUNTS``
    resolutions.  ``floor`` (-30 dB re. the frame's mean power 1) bounds the penalty of an empty
    band."""
    px, py = _power(x, cfg), _power(y, cfg)
    errs = []
    for bands in BAND_COUNTS:
        bands = min(bands, px.shape[1])
        m = _band_matrix(px.shape[1], bands, px.device)
        lx = 10 * torch.log10(px @ m + floor)
        ly = 10 * torch.log10(py @ m + floor)
        errs.append((lx - ly).abs().mean())
    return torch.stack(errs).mean()


def _epochs(model_params, data: torch.Tensor, loss_fn, epochs: int, opts: TrainOptions,
            gen: torch.Generator, progress, label: str, ddp_rank: int, ddp_world: int, lr: float | None = None):
    """Adam, cosine-annealed from ``lr`` (default ``opts.lr``) to 5 % of it over ``epochs``."""
    lr = opts.lr if lr is None else lr
    opt = torch.optim.Adam(model_params, lr=lr)
    steps_per_epoch = max(1, len(data) // opts.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch, eta_min=lr * 0.05)
    task = progress.add_task(label, total=epochs) if progress else None
    last = float("nan")
    for ep in range(epochs):
        perm = torch.randperm(len(data), generator=gen)
        perm = perm[:len(perm) - len(perm) % ddp_world][ddp_rank::ddp_world]  # equal steps on every rank
        total, count = 0.0, 0
        for i in range(0, len(perm) - opts.batch // ddp_world + 1, max(1, opts.batch // ddp_world)):
            xb = data[perm[i:i + opts.batch // ddp_world]]
            loss = loss_fn(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            count += 1
        last = total / max(count, 1)
        if progress:
            progress.update(task, advance=1, description=f"{label} loss {last:6.2f} dB")
    return last


def train(cfg: CodecConfig, signals: list[np.ndarray], opts: TrainOptions, q,
          checkpoint: Path | None = None, progress=None, log=print) -> tuple[Cascade, dict]:
    """Train a cascade on some signals (already at the codec's sample rate).

    ``checkpoint``: a path where the state after each greedy stage and fine-tuning round is
    saved; when it exists, training resumes from it (same config and options required).
    Returns the trained model and a history dict.
    """
    if opts.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {opts.loss!r}")
    if opts.scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {opts.scale!r}")
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if opts.device == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(opts.device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    data = torch.from_numpy(cached_training_frames(signals, cfg, q, opts.augment, log)).to(device)
    ref_power = (data ** 2).mean()
    log(f"training frames: {len(data)} ({len(data) / cfg.signal.frame_rate:.0f} s incl. augmentation)")

    net = Cascade(cfg).to(device)
    binary_layers = [m for m in net.modules() if isinstance(m, BinaryLinear)]
    for m in binary_layers:
        m.tied = opts.scale == "mean"
    gen = torch.Generator().manual_seed(opts.seed)
    history = {"greedy": [], "finetune": [], "frames": len(data)}
    done_stages, done_rounds = 0, 0
    if checkpoint is not None and Path(checkpoint).exists():
        ck = load_checkpoint(checkpoint, device)
        if ck["config_hash"] == cfg.config_hash:
            net.load_state_dict(ck["state_dict"])
            done_stages, done_rounds = ck["done_stages"], ck["done_rounds"]
            history = ck["history"]
            gen.set_state(ck["gen_state"])
            log(f"resuming from {checkpoint}: {done_stages} greedy stages, {done_rounds} rounds done")

    def wrap(module):
        if world > 1:
            return torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
        return module

    def save():
        if checkpoint is None or rank != 0:
            return
        from .files import write_file
        state = dict(zip(CHECKPOINT_KEYS, (cfg.config_hash, net.state_dict(), done_stages, done_rounds,
                                           history, gen.get_state())))
        write_file(checkpoint, lambda f: torch.save(state, f), force=True)

    N = cfg.network.stages

    @torch.no_grad()
    def leave(m: int, r: torch.Tensor) -> None:
        """Subtract from ``r`` (in place) what frozen stage ``m`` decodes of it: its one-shot
        code's output, or with ``search_residuals`` the output of the code the search picks."""
        st = net.stages[m]
        searched = opts.search_residuals and cfg.search_bits(m)
        for i in range(0, len(r), 4096):
            x = r[i:i + 4096]
            if not searched:
                x -= st(x)[1]
                continue
            z = st.code_preactivation(x)

            def error(b, target=x):
                y = st.decode(torch.from_numpy(b.astype(np.float32) * 2 - 1).to(target.device))
                return ((target - y) ** 2).sum(1).cpu().numpy()
            bits = golden.refine_code(error, (z >= 0).cpu().numpy().astype(np.int64), z.abs().cpu().numpy(),
                                      cfg.search.passes, cfg.search_bits(m))
            x -= st.decode(torch.from_numpy(bits.astype(np.float32) * 2 - 1).to(x.device))

    resid = None
    for n in range(done_stages, N):
        stage = wrap(net.stages[n])
        if resid is None:      # the frozen stages' residual, computed once for the whole set
            resid = data.clone()
            for m in range(n):
                leave(m, resid)

        if opts.loss == "mse":
            def loss_fn(r, stage=stage):
                _, y = stage(r)
                loss = _db(((r - y) ** 2).mean(), ref_power)
                if opts.rate_weight:
                    loss = loss + opts.rate_weight * code_entropy(stage, r)
                return loss
            stage_data = resid
        else:  # "bands": rows hold [frame | residual] so the term sees the reconstruction so far
            D = data.shape[1]

            def loss_fn(xr, stage=stage):
                x, r = xr[:, :D], xr[:, D:]
                _, y = stage(r)
                return _db(((r - y) ** 2).mean(), ref_power) + BAND_WEIGHT * band_level_error(x, x - r + y, cfg)
            stage_data = torch.cat([data, resid], 1)

        last = _epochs(stage.parameters(), stage_data, loss_fn, opts.greedy_epochs, opts, gen, progress,
                       f"greedy stage {n + 1}/{N}", rank, world)
        del stage_data
        history["greedy"].append(last)
        done_stages = n + 1
        save()
        if n < N - 1:
            leave(n, resid)
    del resid

    full = wrap(net)

    def joint_loss(xb):
        _, outs = full(xb)
        recon = torch.zeros_like(xb)
        losses = []
        for y in outs:
            recon = recon + y
            loss = _db(((xb - recon) ** 2).mean(), ref_power)
            if opts.loss == "bands":
                loss = loss + BAND_WEIGHT * band_level_error(xb, recon, cfg)
            losses.append(loss)
        return torch.stack(losses).mean()

    for r in range(done_rounds, opts.finetune_rounds):
        last = _epochs(full.parameters(), data, joint_loss, opts.finetune_epochs, opts, gen, progress,
                       f"fine-tune round {r + 1}/{opts.finetune_rounds}", rank, world, opts.finetune_lr)
        history["finetune"].append(last)
        done_rounds = r + 1
        save()
    for m in binary_layers:
        m.untie()
    return net.cpu(), history


# ---- what `cascade train` and `cascade ablate` run ----------------------------------------------
def load_training_data(wav_dirs, sample_rate: int, resample: bool = False,
                       speaker_minutes: float | None = None):
    """(files, signals) of every WAV file under the folders, in the order ``cascade train`` uses.

    ``speaker_minutes``: balance the speakers; each voice (the folder a file lies in,
    ``data.voice_of``) contributes at most that many minutes, its files taken in a fixed
    pseudo-random order (CRC-32 of the file name), so the kept prompts are spread over
    everything the speaker said and the choice never changes."""
    import zlib
    from .data import load_wav
    from .evaluation import wav_files
    files = []
    for d in wav_dirs:
        files += wav_files(d)
    signals = [load_wav(f, sample_rate, resample=resample) for f in files]
    if speaker_minutes is None:
        return files, signals
    budget: dict[str, float] = {}
    keep = set()
    for i in sorted(range(len(files)), key=lambda i: (zlib.crc32(files[i].name.encode()), str(files[i]))):
        v = str(files[i].parent)
        if budget.get(v, 0.0) < speaker_minutes * 60:
            budget[v] = budget.get(v, 0.0) + len(signals[i]) / sample_rate
            keep.add(i)
    idx = sorted(keep)
    return [files[i] for i in idx], [signals[i] for i in idx]


def train_model(cfg, wav_dirs, files, signals, opts, out: Path, made_by: str, progress=None, log=None,
                extra_meta: dict | None = None, force: bool = True):
    """What ``cascade train`` does after parsing: fit the LSF quantizer, train (checkpoint
    ``OUT.ckpt``, resumed when present), build the Huffman codebooks and save the model to ``out``
    (``extra_meta`` added to its metadata).  Returns the codec (``None`` on a torchrun rank other
    than 0)."""
    import sys
    import time
    from .codec import Codec
    log = log or (lambda m: print(m, file=sys.stderr))
    sr = cfg.signal.sample_rate
    secs = sum(len(s) for s in signals) / sr
    log(f"training data: {len(files)} files, {secs:.1f} s from {', '.join(map(str, wav_dirs))}")
    q = dsp.LsfQuantizer.fit(dsp.training_lsfs(signals, cfg), cfg.lpc.lsf_bits) if cfg.lpc.enabled else None
    ckpt = checkpoint_path(out)
    t0 = time.time()
    net, hist = train(cfg, signals, opts, q, checkpoint=ckpt, progress=progress, log=log)
    if int(os.environ.get("RANK", 0)) != 0:  # torchrun: rank 0 writes the model
        return None
    codec = Codec(cfg, net.eval(), q)
    # Huffman codebooks from the codes the hardware (fixed arithmetic) produces on training data
    codec.train_entropy_coders(signals, "fixed" if cfg.network.binary else "float")
    codec.meta = {
        "made_by": made_by,
        "data": [{"file": str(f), "seconds": round(len(s) / sr, 3)} for f, s in zip(files, signals)],
        "data_seconds": round(secs, 2), "options": vars(opts), "history": hist,
        "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"), **(extra_meta or {}),
    }
    codec.save(out, force)
    ckpt.unlink(missing_ok=True)
    return codec
