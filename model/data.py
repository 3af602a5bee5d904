"""Training and test audio: reading, writing, the pocketsphinx test recordings, synthetic speech.

Everything the codec trains or is measured on passes through :func:`load_wav` (float64 in
[-1, 1], mono, at the codec's sample rate) and everything it writes through :func:`write_wav`
(16-bit PCM, written atomically).

Two sources of speech are available without network access:

* :func:`prepare_pocketsphinx` converts the recordings of Debian's ``pocketsphinx-testdata``
  package (CMU, BSD-2) into a fixed train/test split (``out_dir/train``, ``out_dir/test``,
  ``out_dir/SPLIT.md``).  About 45 s of real speech in all.
* :func:`synthesize_speech` makes any amount of extra training speech with ``espeak-ng``,
  ``flite`` and ``festival`` from generated English sentences, voices, speeds and pitches;
  deterministic for a seed.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import CascadeError
from .files import write_file

__all__ = [
    "AudioError", "load_wav", "write_wav", "list_wavs", "resample",
    "POCKETSPHINX_DIR", "POCKETSPHINX_TEST", "prepare_pocketsphinx", "check_raw_pcm",
    "ASTERISK_DIR", "ASTERISK_VOICES", "SPEAKER_SPLIT", "prepare_asterisk", "voice_of",
    "synthesize_speech", "make_sentences", "SYNTH_ENGINES", "check_engines",
]

POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
POCKETSPHINX_COPYRIGHT = Path("/usr/share/doc/pocketsphinx-testdata/copyright")

#: Source files (relative to :data:`POCKETSPHINX_DIR`) held out for testing: every librivox clip
#: (one reader) and every cards clip (one unlabelled speaker, as far as one can hear), so
#: neither voice is on both sides; ``goforward.raw`` as before.  The other .raw clips train.
POCKETSPHINX_TEST = (
    "cards/001.wav", "cards/002.wav", "cards/003.wav", "cards/004.wav", "cards/005.wav",
    "goforward.raw",
    "librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
)

#: Debian's professional wideband prompt recordings (G.722, CC-BY-SA 3.0), by speaker:
#: ``speaker: ((package, folder under ASTERISK_DIR), ...)``.
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
ASTERISK_VOICES = {
    "allison": (("asterisk-core-sounds-en-g722", "en_US_f_Allison"),
                ("asterisk-core-sounds-es-g722", "es_MX_f_Allison")),
    "carlo": (("asterisk-core-sounds-it-g722", "it_IT_m_Carlo"),),
    "june": (("asterisk-core-sounds-fr-g722", "fr_CA_f_June"),),
}

#: Which speaker goes where (``OUT/<split>/<speaker>/``).  June is never trained on: her prompts,
#: sorted by name, alternate between the validation half (every recipe choice is made there) and
#: the test half (every reported figure).  ``cmu`` and ``librivox`` are the pocketsphinx clips.
SPEAKER_SPLIT = {
    "train": ("cmu", "allison", "carlo"),
    "val": ("june",),
    "test": ("june", "cmu", "librivox"),
}

#: Prompts shorter than this, or whose loudest 20 ms is quieter than :data:`MIN_PEAK_DBFS`,
#: are skipped (beeps, clicks, near-silent files).
MIN_PROMPT_SECONDS = 0.8
MIN_PEAK_DBFS = -35.0
_RAW_FILES = ("something.raw", "numbers.raw", "goforward.raw", "tidigits/dhd.2934z.raw")


class AudioError(CascadeError, ValueError):
    """An audio file that cannot be used; the message is one line and names the file."""


# ---------------------------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------------------------

def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample with a polyphase FIR (:func:`scipy.signal.resample_poly`).

    Parameters
    ----------
    x : np.ndarray
        Signal, samples along axis 0.
    sr_in, sr_out : int
        Sample rates in Hz.

    Returns
    -------
    np.ndarray
        float64 signal at ``sr_out`` (``x`` unchanged, as float64, when the rates are equal).
    """
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out:
        return x
    g = math.gcd(int(sr_in), int(sr_out))
    from scipy.signal import resample_poly    # 0.7 s to import: only where a file needs it
    return resample_poly(x, int(sr_out) // g, int(sr_in) // g, axis=0)


def load_wav(path, sample_rate: int = 16000, resample: bool = False) -> np.ndarray:
    """Read a mono audio file as float64 in [-1, 1].

    Parameters
    ----------
    path : str or Path
        Any format libsndfile reads (WAV, FLAC, ...).
    sample_rate : int
        The rate the caller needs (the codec's ``signal.sample_rate``).
    resample : bool
        If False (default) a file at another rate or with several channels is an error.  If True,
        channels are averaged to mono and the rate converted with
        :func:`scipy.signal.resample_poly`.

    Returns
    -------
    np.ndarray
        1-D float64 array, values clipped to [-1, 1] (16-bit PCM is read as ``int / 32768``).

    Raises
    ------
    AudioError
        With a one-line message: missing or unreadable file, not audio, no samples, several
        channels or another sample rate (when ``resample`` is False), non-finite samples.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file")
    try:
        x, sr = sf.read(str(p), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if not os.access(p, os.R_OK):
            raise AudioError(f"{p}: not readable (permission denied)") from None
        raise AudioError(f"{p}: not a readable audio file ({msg})") from None
    except OSError as exc:
        raise AudioError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if x.shape[0] == 0:
        raise AudioError(f"{p}: empty (0 samples)")
    if x.shape[1] != 1:
        if not resample:
            raise AudioError(f"{p}: has {x.shape[1]} channels, need mono "
                             f"(--resample downmixes it)")
        x = x.mean(axis=1, keepdims=True)
    x = x[:, 0]
    if sr != sample_rate:
        if not resample:
            raise AudioError(f"{p}: sample rate {sr} Hz, need {sample_rate} Hz "
                             f"(--resample converts it)")
        x = _resample(x, sr, sample_rate)
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{p}: contains NaN or infinite samples")
    return np.clip(x, -1.0, 1.0)


_resample = resample  # load_wav's parameter shadows the function name


def write_wav(path, x, sr: int = 16000, force: bool = True) -> Path:
    """Write 16-bit PCM WAV atomically through :func:`model.files.write_file` (temporary file in
    the same folder, then link or rename; ``force=False`` never replaces an existing file).

    Parameters
    ----------
    path : str or Path
        Destination; parent folders are created.
    x : array_like
        Samples in [-1, 1], shape ``(n,)`` (mono) or ``(n, channels)``.  Values outside are
        clipped to full scale (``+1.0`` becomes 32767); ``v`` maps to ``round(v * 32768)``, so
        a signal read by :func:`load_wav` is written back bit-exactly.
    sr : int
        Sample rate in Hz.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    AudioError
        If ``x`` has NaN/inf values or more than 2 dimensions.
    """
    p = Path(path)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise AudioError(f"{p}: cannot write an array of shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{p}: refusing to write NaN or infinite samples")
    pcm = np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int16)
    return write_file(p, lambda fh: sf.write(fh, pcm, int(sr), format="WAV", subtype="PCM_16"), force)


def list_wavs(folder) -> list[Path]:
    """All ``*.wav`` files under ``folder`` (recursive, case-insensitive suffix), sorted.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    list of Path
        Empty if the folder does not exist or holds no WAV file.
    """
    f = Path(folder)
    if not f.is_dir():
        return []
    return sorted(q for q in f.rglob("*") if q.is_file() and q.suffix.lower() == ".wav"
                  and not q.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# pocketsphinx test recordings
# ---------------------------------------------------------------------------------------------

def check_raw_pcm(data: bytes, sample_rate: int = 16000) -> dict:
    """Listening-free evidence that headerless bytes are 16-bit little-endian mono speech.

    Speech is a low-pass signal: consecutive samples are strongly correlated and little energy
    lies near Nyquist.  Read with the wrong byte order the same bytes look like white noise
    (lag-1 correlation near 0, a third of the energy above 4 kHz).  At the assumed rate the
    median autocorrelation pitch of loud frames must be a voice pitch (60-400 Hz): read at half
    the true rate it would halve, at twice the rate double.

    Parameters
    ----------
    data : bytes
        File contents.
    sample_rate : int
        Assumed rate.

    Returns
    -------
    dict
        ``r1_le``, ``r1_be`` (lag-1 correlation for each byte order), ``hf_le`` (energy fraction
        above 7/16 of the rate), ``f0_hz`` (median pitch), ``seconds``, ``ok`` (bool).
    """
    if len(data) % 2:
        data = data[:-1]
    out = {}
    for tag, dt in (("le", "<i2"), ("be", ">i2")):
        x = np.frombuffer(data, dt).astype(np.float64)
        x = x - x.mean()
        out[f"r1_{tag}"] = float(np.dot(x[:-1], x[1:]) / max(np.dot(x, x), 1e-12))
        if tag == "le":
            X = np.abs(np.fft.rfft(x)) ** 2
            fr = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
            out["hf_le"] = float(X[fr > 7 * sample_rate / 16].sum() / max(X.sum(), 1e-12))
            n, hop = int(0.04 * sample_rate), int(0.02 * sample_rate)
            lo, hi = sample_rate // 400, sample_rate // 60
            f0 = []
            for i in range(0, len(x) - n, hop):
                fr_ = x[i:i + n] - x[i:i + n].mean()
                if fr_.std() < 0.3 * x.std():
                    continue
                ac = np.correlate(fr_, fr_, "full")[n - 1:]
                k = lo + int(np.argmax(ac[lo:hi]))
                if ac[k] > 0.4 * ac[0]:
                    f0.append(sample_rate / k)
            out["f0_hz"] = float(np.median(f0)) if f0 else float("nan")
            out["seconds"] = len(x) / sample_rate
    out["ok"] = bool(out["r1_le"] > 0.5 and out["r1_le"] > out["r1_be"] + 0.2
                     and out["hf_le"] < 0.01 and 70 <= out["f0_hz"] <= 350)
    return out


def _flat_name(rel: str) -> str:
    # "librivox/sense_..-0920.wav" -> "librivox_sense_..-0920.wav"; "goforward.raw" -> "raw_goforward.wav"
    parts = rel.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    if rel.endswith(".raw"):
        return "raw_" + "_".join(parts[:-1] + [stem]) + ".wav"
    return "_".join(parts[:-1] + [stem]) + ".wav"


def prepare_pocketsphinx(out_dir, source=POCKETSPHINX_DIR) -> dict:
    """Convert the pocketsphinx test recordings into a fixed train/test split.

    Sources: ``cards/*.wav``, ``librivox/*.wav`` and the headerless ``something.raw``,
    ``numbers.raw``, ``goforward.raw``, ``tidigits/dhd.2934z.raw`` (16 kHz 16-bit
    little-endian mono; checked with :func:`check_raw_pcm`, which must pass).  The test split is
    :data:`POCKETSPHINX_TEST`; everything else is train.  Samples are copied unchanged (no
    level normalization, no resampling: all sources are already 16 kHz 16-bit mono).

    Parameters
    ----------
    out_dir : str or Path
        Receives ``train/cmu/*.wav``, ``test/cmu/*.wav``, ``test/librivox/*.wav`` (folders by
        voice, as :data:`SPEAKER_SPLIT`) and ``SPLIT.md``.  Stale WAV files in those folders
        are removed first.
    source : str or Path
        The package's data folder (default ``/usr/share/pocketsphinx/test/data``).

    Returns
    -------
    dict
        ``{"train": [Path], "test": [Path], "split_md": Path, "files": [row]}`` where each row
        is a dict with ``source``, ``dest``, ``split``, ``seconds`` (and ``raw_check`` for .raw
        sources).

    Raises
    ------
    FileNotFoundError
        If ``source`` or an expected recording is missing (install ``pocketsphinx-testdata``).
    AudioError
        If a recording is not 16 kHz mono or a .raw file fails the format check.
    """
    src = Path(source)
    out = Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not found (apt-get install pocketsphinx-testdata)")
    rels = sorted(str(p.relative_to(src)) for p in
                  list((src / "cards").glob("*.wav")) + list((src / "librivox").glob("*.wav")))
    rels += list(_RAW_FILES)
    for t in POCKETSPHINX_TEST:
        if t not in rels or not (src / t).is_file():
            raise FileNotFoundError(f"{src / t}: expected test recording missing")
    for split in ("train", "test"):
        for voice in ("cmu", "librivox"):
            for old in list_wavs(out / split / voice):
                old.unlink()
    rows = []
    for rel in rels:
        p = src / rel
        split = "test" if rel in POCKETSPHINX_TEST else "train"
        row = {"source": rel, "split": split}
        if rel.endswith(".raw"):
            data = p.read_bytes()
            chk = check_raw_pcm(data, 16000)
            if not chk["ok"]:
                raise AudioError(f"{p}: does not look like 16 kHz 16-bit LE mono speech ({chk})")
            x = np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float64) / 32768.0
            row["raw_check"] = chk
        else:
            x = load_wav(p, 16000)
        dest = out / split / ("librivox" if rel.startswith("librivox/") else "cmu") / _flat_name(rel)
        write_wav(dest, x, 16000)
        row["dest"] = dest
        row["seconds"] = len(x) / 16000
        rows.append(row)
    split_md = out / "SPLIT.md"
    _write_split_md(split_md, rows, src)
    return {
        "train": sorted(r["dest"] for r in rows if r["split"] == "train"),
        "test": sorted(r["dest"] for r in rows if r["split"] == "test"),
        "split_md": split_md,
        "files": rows,
    }


def _license_note() -> str:
    try:
        text = POCKETSPHINX_COPYRIGHT.read_text(errors="replace")
    except OSError:
        return "(copyright file not found)"
    # First stanza "Files: *": the copyright holders and the license name.
    block = text.split("\n\n")[1] if "\n\n" in text else text
    lines = []
    for ln in block.splitlines():
        lines.append(ln)
        if ln.startswith("License:"):
            break
    return "\n".join("    " + ln for ln in lines)


def _write_split_md(path: Path, rows: list[dict], src: Path) -> None:
    tot = {s: sum(r["seconds"] for r in rows if r["split"] == s) for s in ("train", "test")}
    L = [
        "# Pocketsphinx speech split",
        "",
        f"Made by `model.data.prepare_pocketsphinx` from `{src}`, Debian package "
        "`pocketsphinx-testdata` (CMU Sphinx test recordings).  All files 16 kHz, 16-bit, mono;",
        "samples copied unchanged (no normalization, no resampling).",
        "",
        "License (from /usr/share/doc/pocketsphinx-testdata/copyright, stanza `Files: *`):",
        "",
        _license_note(),
        "",
        "The recordings are BSD-2 licensed, CMU; redistribution must keep that notice.",
        "",
        f"Train: {sum(r['split'] == 'train' for r in rows)} files, {tot['train']:.2f} s.  "
        f"Test: {sum(r['split'] == 'test' for r in rows)} files, {tot['test']:.2f} s.",
        "",
        "| split | file | source | seconds |",
        "|---|---|---|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["split"] != "test", r["source"])):
        L.append(f"| {r['split']} | {r['dest'].name} | {r['source']} | {r['seconds']:.2f} |")
    L += [
        "",
        "## Speaker overlap",
        "",
        "The split is fixed (not random) and keeps each identifiable voice on one side: all",
        "librivox clips (one reader, Sense and Sensibility ch. 1) and all cards clips (one",
        "unlabelled speaker, as far as one can tell) are test files, in `test/librivox/` and",
        "`test/cmu/`.  The .raw clips have no speaker labels; `goforward.raw` is a test file and",
        "the others train (`train/cmu/`).  The codec's main training speech is not here but in",
        "`ASTERISK.md` (Allison, Carlo; June is the unseen validation and test voice).",
        "",
        "## Headerless .raw files",
        "",
        "Read as 16 kHz, 16-bit signed little-endian, mono (the pocketsphinx default `-samprate",
        "16000`).  Evidence without listening (`model.data.check_raw_pcm`): lag-1 correlation",
        "little-endian vs big-endian (speech is low-pass, wrong byte order is white-noise-like),",
        "energy fraction above 7 kHz, median autocorrelation pitch of loud frames at 16 kHz (a",
        "voice pitch; it would halve or double at a wrong rate).  `goforward.mfc` in the same",
        "package holds 264 cepstral frames at 100 frames/s = 2.64 s, matching the 2.79 s of",
        "`goforward.raw` at 16 kHz (it would be 5.57 s at 8 kHz).",
        "",
        "| file | r1 LE | r1 BE | energy > 7 kHz | median F0 (Hz) | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r.get("raw_check")
        if c:
            L.append(f"| {r['source']} | {c['r1_le']:.3f} | {c['r1_be']:.3f} | "
                     f"{100 * c['hf_le']:.2f} % | {c['f0_hz']:.0f} | {c['seconds']:.2f} |")
    write_file(path, "\n".join(L) + "\n", force=True)      # prepare-data rebuilds its folder


# ---------------------------------------------------------------------------------------------
# asterisk prompt recordings (several speakers)
# ---------------------------------------------------------------------------------------------

def voice_of(path) -> str:
    """The voice a prepared file belongs to: the name of the folder it lies in
    (``data/test/june/x.wav`` -> ``june``)."""
    return Path(path).parent.name


def _decode_g722(sources: list[Path], dests: list[Path]) -> None:
    # one ffmpeg process per batch of files (its start-up, not the decoding, is the cost)
    for i in range(0, len(sources), 64):
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
        for src in sources[i:i + 64]:
            cmd += ["-f", "g722", "-i", str(src)]
        for j, dst in enumerate(dests[i:i + 64]):
            cmd += ["-map", f"{j}:a", "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(dst)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ffmpeg failed on {sources[i]}..: {r.stderr.strip()[:200]}")


def _peak_dbfs(x: np.ndarray, sr: int) -> float:
    n = int(0.02 * sr)
    frames = x[: len(x) // n * n].reshape(-1, n)
    if not len(frames):
        return -200.0
    return float(10 * np.log10(np.max(np.mean(frames ** 2, axis=1)) + 1e-20))


def prepare_asterisk(out_dir, source=ASTERISK_DIR, speakers=None, progress=None) -> dict:
    """Convert Debian's ``asterisk-core-sounds-*-g722`` prompts into folders by speaker.

    Each ``.g722`` prompt (:data:`ASTERISK_VOICES`) is decoded with ffmpeg to 16 kHz 16-bit
    mono; prompts shorter than :data:`MIN_PROMPT_SECONDS` or whose loudest 20 ms is below
    :data:`MIN_PEAK_DBFS` are skipped.  Allison and Carlo go to ``OUT/train/<speaker>/``; June's
    prompts, sorted by their path in the package, alternate between ``OUT/val/june/`` (even
    positions) and ``OUT/test/june/`` (odd), so both halves cover the same kinds of prompt and
    the split never changes (:data:`SPEAKER_SPLIT`).  File names are ``<lang>_<path>.wav``
    (``fr_vm-deleted.wav``, ``en_digits_1.wav``).  Writes ``OUT/ASTERISK.md`` (licence,
    counts, skipped prompts).

    Parameters
    ----------
    out_dir : str or Path
    source : str or Path
        Debian's prompt folder (``/usr/share/asterisk/sounds``).
    speakers : sequence of str, optional
        A subset of :data:`ASTERISK_VOICES` (default all).
    progress : callable, optional
        ``progress(done, total)`` after each batch.

    Returns
    -------
    dict
        ``{"train": [Path], "val": [Path], "test": [Path], "skipped": [str], "md": Path,
        "seconds": {speaker_split: s}}``.

    Raises
    ------
    FileNotFoundError
        If a speaker's folder is missing (the message names the Debian package).
    RuntimeError
        If ffmpeg fails.
    """
    src, out = Path(source), Path(out_dir)
    speakers = list(ASTERISK_VOICES) if speakers is None else list(speakers)
    jobs = []  # (speaker, split, g722 path, dest)
    for spk in speakers:
        found = []
        for package, folder in ASTERISK_VOICES[spk]:
            d = src / folder
            if not d.is_dir():
                raise FileNotFoundError(f"{d}: not found (apt-get install {package})")
            lang = folder.split("_")[0]
            for f in sorted(d.rglob("*.g722")):
                rel = f.relative_to(d).with_suffix("")
                found.append((f, f"{lang}_{'_'.join(rel.parts)}.wav"))
        splits = [s for s, v in SPEAKER_SPLIT.items() if spk in v]
        for split in splits:
            for old in list_wavs(out / split / spk):
                old.unlink()
        for i, (f, name) in enumerate(found):
            split = splits[i % len(splits)]
            jobs.append((spk, split, f, out / split / spk / name))
    for _, _, _, dest in jobs:
        dest.parent.mkdir(parents=True, exist_ok=True)
    res = {"train": [], "val": [], "test": [], "skipped": [], "seconds": {}}
    with tempfile.TemporaryDirectory(prefix="g722_") as tmp:
        tmp = Path(tmp)
        for i in range(0, len(jobs), 256):
            batch = jobs[i:i + 256]
            tmps = [tmp / f"{i + j}.wav" for j in range(len(batch))]
            _decode_g722([j[2] for j in batch], tmps)
            for (spk, split, f, dest), t in zip(batch, tmps):
                x, sr = sf.read(str(t), dtype="float64")
                t.unlink()
                if len(x) < MIN_PROMPT_SECONDS * sr or _peak_dbfs(x, sr) < MIN_PEAK_DBFS:
                    res["skipped"].append(str(f.relative_to(src)))
                    continue
                write_wav(dest, x, sr)
                res[split].append(dest)
                key = f"{split}/{spk}"
                res["seconds"][key] = res["seconds"].get(key, 0.0) + len(x) / sr
            if progress:
                progress(min(i + 256, len(jobs)), len(jobs))
    res["md"] = out / "ASTERISK.md"
    _write_asterisk_md(res["md"], res, speakers)
    return res


def _write_asterisk_md(path: Path, res: dict, speakers) -> None:
    L = ["# Asterisk prompt recordings (by speaker)", "",
         "Made by `cascade prepare-data` (`model.data.prepare_asterisk`) from Debian's",
         "`asterisk-core-sounds-{en,es,it,fr}-g722` packages (`/usr/share/asterisk/sounds`),",
         "decoded with `ffmpeg -f g722 -i F.g722 -ar 16000 F.wav`.", "",
         "Licence: **CC-BY-SA 3.0** (Creative Commons Attribution-ShareAlike 3.0 Unported), as",
         "`/usr/share/doc/asterisk-core-sounds-*-g722/copyright` states.  Recorded by Allison Smith",
         "(en, es), June Wallack (fr) and Carlo (it) for Digium, Inc.; the converted files (not",
         "committed: `data/` is made on each machine) carry the same licence, and anything made",
         "from them that is shared must be shared alike and credit the speakers.", "",
         f"Prompts shorter than {MIN_PROMPT_SECONDS} s or whose loudest 20 ms is below "
         f"{MIN_PEAK_DBFS:.0f} dBFS are skipped ({len(res['skipped'])} files).", "",
         "June is never trained on: her prompts, sorted by path, alternate between the validation",
         "half (`val/june`, where every recipe choice is made) and the test half (`test/june`,",
         "where every reported figure is measured).", "",
         "| folder | files | minutes |", "|---|---:|---:|"]
    for key in sorted(res["seconds"]):
        split, spk = key.split("/")
        n = sum(voice_of(p) == spk for p in res[split])
        L.append(f"| {key} | {n} | {res['seconds'][key] / 60:.1f} |")
    if res["skipped"]:
        L += ["", "Skipped: " + ", ".join(f"`{s}`" for s in res["skipped"])]
    write_file(path, "\n".join(L) + "\n", force=True)      # prepare-data rebuilds its folder


# ---------------------------------------------------------------------------------------------
# synthetic speech
# ---------------------------------------------------------------------------------------------

_NAMES = ["Thomas", "Judith", "Oscar", "Vivian", "George", "Sheila", "Zachary", "Beatrice",
          "Hugo", "Yvonne", "Wendell", "Priya", "Chang", "Ingrid", "Raphael", "Quentin"]
_ADJ = ["quiet", "shiny", "thick", "rough", "yellow", "bright", "cheap", "frozen", "gloomy",
        "huge", "juicy", "narrow", "purple", "smooth", "tough", "vivid", "warm", "zealous",
        "ancient", "brave", "fresh", "orange", "thin", "wet"]
_NOUNS = ["bridge", "shoe", "village", "garage", "chair", "judge", "thumb", "feather", "whistle",
          "oyster", "pleasure", "kettle", "mountain", "book", "violin", "measure", "yacht",
          "zebra", "cloud", "wagon", "fish", "engine", "harbor", "pencil", "treasure", "ox"]
_VERBS = ["watches", "pushes", "carries", "throws", "buys", "finds", "chooses", "borrows",
          "fixes", "grabs", "thanks", "visits", "measures", "joins", "ships", "loves"]
_VERBS_PAST = ["watched", "pushed", "carried", "threw", "bought", "found", "chose", "borrowed",
               "fixed", "grabbed", "thanked", "visited", "measured", "joined", "shipped", "loved"]
_PLACES = ["near the old church", "behind the theater", "across the thick hedge",
           "under the cherry tree", "beside the azure pool", "at the edge of the marsh",
           "through the foggy valley", "inside the youth hostel", "on the sixth floor"]
_TIMES = ["yesterday", "this morning", "every Thursday", "at half past nine", "next June",
          "in the evening", "before the show", "after lunch", "on the fourth of July"]
_Q = ["Why did", "Where did", "When did", "How often did", "Who said that"]
_NUMS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(rng: random.Random) -> str:
    a, n, v = rng.choice(_ADJ), rng.choice(_NOUNS), rng.choice(_VERBS)
    k = rng.randrange(7)
    if k == 0:
        return f"The {a} {n} {v} the {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(_PLACES)}."
    if k == 1:
        return f"{rng.choice(_NAMES)} {rng.choice(_VERBS_PAST)} a {a} {n} {rng.choice(_TIMES)}."
    if k == 2:
        q = rng.choice(_Q)
        if q.startswith("Who"):
            return f"Who said that the {n} was {a}?"
        return f"{q} {rng.choice(_NAMES)} choose the {a} {n}?"
    if k == 3:
        digits = " ".join(rng.choice(_NUMS) for _ in range(rng.randint(3, 7)))
        return f"Please call {rng.choice(_NAMES)} at {digits}."
    if k == 4:
        return (f"{_cap(rng.choice(_TIMES))}, {rng.choice(_NAMES)} and "
                f"{rng.choice(_NAMES)} {rng.choice(_VERBS_PAST)} the {n}, "
                f"but the {rng.choice(_NOUNS)} was too {a}.")
    if k == 5:
        return f"Is it true that every {n} {v} a {a} {rng.choice(_NOUNS)}?"
    return (f"She sells {rng.randint(2, 99)} {a} {n}s {rng.choice(_PLACES)}, "
            f"and nobody knows why.")


def make_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` varied English sentences from templates (statements, questions, digit strings).

    Parameters
    ----------
    count : int
    seed : int

    Returns
    -------
    list of str
        Deterministic for a seed.
    """
    rng = random.Random(seed)
    return [_sentence(rng) for _ in range(count)]


_ESPEAK_VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd"]
_ESPEAK_VARIANTS = ["", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5",
                    "+m6", "+m7", "+klatt", "+klatt2", "+klatt3"]
#: flite's built-in voices: a diphone voice (kal16) and three CMU ARCTIC clustergen voices
#: (awb male Scottish, rms male US, slt female US), all trained on recordings of real speakers.
_FLITE_VOICES = ["kal16", "awb", "rms", "slt"]
#: festival voices from Debian (festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts):
#: two residual-excited LPC diphone voices (male US) and an HTS voice (female US).
_FESTIVAL_VOICES = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]
#: ``synthesize_speech`` engines: the apt package that brings each one.
SYNTH_ENGINES = {"espeak-ng": "espeak-ng", "flite": "flite",
                 "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}


# Each engine draws its voice parameters from the generator, then gives a description and a
# function (text, wav path) -> command line.  (espeak-ng's draws come in the order they did when
# it was the only engine, so a seed still makes the files it made then.)

def _espeak_voice(rng: random.Random):
    voice = rng.choice(_ESPEAK_VOICES) + rng.choice(_ESPEAK_VARIANTS)
    speed, pitch = rng.randint(120, 210), rng.randint(20, 80)
    return (f"espeak-ng:{voice} speed {speed} pitch {pitch}",
            lambda text, wav: ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                               "-w", str(wav), text])


def _flite_voice(rng: random.Random):
    voice, stretch = rng.choice(_FLITE_VOICES), round(rng.uniform(0.8, 1.25), 2)
    return (f"flite:{voice} stretch {stretch}",
            lambda text, wav: ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                               "-t", text, "-o", str(wav)])


def _festival_voice(rng: random.Random):
    voice, stretch = rng.choice(_FESTIVAL_VOICES), round(rng.uniform(0.8, 1.25), 2)

    def command(text, wav):
        txt = Path(wav).with_suffix(".txt")
        txt.write_text(text + "\n")
        return ["text2wave", "-eval", f"(voice_{voice})",
                "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", str(txt), "-o", str(wav)]
    return f"festival:{voice} stretch {stretch}", command


_ENGINE_COMMANDS = {"espeak-ng": _espeak_voice, "flite": _flite_voice,
                    "festival": _festival_voice}
_ENGINE_EXE = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def check_engines(engines) -> list[str]:
    """The engine names as a list; RuntimeError (one line) if one is unknown or not installed."""
    engines = list(engines)
    for e in engines:
        if e not in _ENGINE_COMMANDS:
            raise RuntimeError(f"unknown speech engine {e!r} (known: {', '.join(SYNTH_ENGINES)})")
        if shutil.which(_ENGINE_EXE[e]) is None:
            raise RuntimeError(f"{_ENGINE_EXE[e]} not found (apt-get install {SYNTH_ENGINES[e]})")
    if not engines:
        raise RuntimeError("no speech engine given")
    return engines


def synthesize_speech(out_dir, minutes: float = 10.0, seed: int = 0, sample_rate: int = 16000,
                      engines=("espeak-ng",), speed_perturb: float = 0.0,
                      prefix: str = "synth") -> list[Path]:
    """Make augmentation speech with text-to-speech engines.

    Each file is 1-3 generated sentences (:func:`make_sentences`) spoken by one engine chosen at
    random from ``engines``:

    * ``espeak-ng``: a random English voice (en-us, en-gb, Scottish, RP, Caribbean, Lancaster,
      West Midlands) and variant (female f1-f5, male m1-m7, klatt formant voices), speed
      120-210 words/min, pitch 20-80.  Formant synthesis: varied, but far from real speech.
    * ``flite``: kal16, awb, rms or slt, duration stretch 0.8-1.25.
    * ``festival``: kal_diphone, ked_diphone or cmu_us_slt_arctic_hts, duration stretch
      0.8-1.25.  flite's and festival's voices are made from recordings of real speakers
      (diphone concatenation or statistical parametric), so their spectra are closer to the
      real speech the codec is measured on.

    With ``speed_perturb`` = s > 0, each file is then resampled by a random factor in
    [1 - s, 1 + s] (Kaldi-style speed perturbation: pitch, formants and tempo move together,
    which makes new pseudo-speakers).  Every file is resampled to ``sample_rate`` with
    :func:`scipy.signal.resample_poly` and scaled to a random peak of -12 to -1 dBFS.  Writes
    ``<prefix>_<seed>_<nnnn>.wav`` plus ``MANIFEST_<seed>.tsv`` (file, voice, seconds, text).
    Stops once ``minutes`` of audio are written.  Deterministic for a seed and the engines'
    versions.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created).  Existing ``<prefix>_<seed>_*.wav`` files are replaced.
    minutes : float
        Total duration to produce.
    seed : int
    sample_rate : int
        Output rate (the codec's ``signal.sample_rate``).
    engines : sequence of str
        Keys of :data:`SYNTH_ENGINES`.
    speed_perturb : float
        Relative range of the random speed factor; 0 leaves the speed as spoken.
    prefix : str
        File name prefix.

    Returns
    -------
    list of Path
        The written WAV files, in order.

    Raises
    ------
    RuntimeError
        If an engine is unknown, missing or fails.
    """
    engines = check_engines(engines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{prefix}_{seed}_*.wav"):
        old.unlink()
    rng = random.Random(seed)
    sentences = random.Random(seed + 1_000_003)
    target = minutes * 60.0
    total, paths, manifest = 0.0, [], ["file\tvoice\tseconds\ttext"]
    with tempfile.TemporaryDirectory(prefix="synth_") as tmp:
        tmpwav = Path(tmp) / "s.wav"
        i = 0
        while total < target:
            engine = rng.choice(engines) if len(engines) > 1 else engines[0]
            voice, command = _ENGINE_COMMANDS[engine](rng)
            peak_db = rng.uniform(-12.0, -1.0)
            text = " ".join(_sentence(sentences) for _ in range(rng.randint(1, 3)))
            factor = rng.uniform(1.0 - speed_perturb, 1.0 + speed_perturb) if speed_perturb else 1.0
            tmpwav.unlink(missing_ok=True)
            r = subprocess.run(command(text, tmpwav), capture_output=True, text=True)
            if r.returncode != 0 or not tmpwav.exists():
                raise RuntimeError(f"{engine} failed for voice {voice}: {r.stderr.strip()[:200]}")
            x, sr = sf.read(str(tmpwav), dtype="float64", always_2d=True)
            # speaking `factor` times faster = reading the samples at sr * factor (rounded to
            # 50 Hz, which keeps the polyphase filter short)
            x = resample(x.mean(axis=1), int(round(sr * factor / 50)) * 50, sample_rate)
            if factor != 1.0:
                voice += f" speed x{factor:.3f}"
            nz = np.flatnonzero(np.abs(x) > 1e-3)
            if len(nz) == 0:
                continue
            # keep 50 ms of silence around the speech
            pad = int(0.05 * sample_rate)
            x = x[max(0, nz[0] - pad): nz[-1] + pad]
            x = x / np.max(np.abs(x)) * 10 ** (peak_db / 20)
            p = write_wav(out / f"{prefix}_{seed}_{i:04d}.wav", x, sample_rate)
            sec = len(x) / sample_rate
            manifest.append(f"{p.name}\t{voice}\t{sec:.2f}\t{text}")
            paths.append(p)
            total += sec
            i += 1
    write_file(out / f"MANIFEST_{seed}.tsv", "\n".join(manifest) + "\n", force=True)
    return paths
