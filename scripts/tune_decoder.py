"""Which host-side decoder settings suit the unseen voice?  A paired sweep, on the validation voice.

Encodes every WAV file of DIR once with MODEL (``--arith fixed``, the model's code search: the
streams the encoder core sends), decodes each with K stages, and synthesizes it once with the
model's own host-side config and once per variant, each variant changing one field of a host-only
section (``model.config.HOST_SECTIONS``: postfilter, noise_fill; they are not in the stream and
not in the hardware, so a choice here needs no retraining and no new bitstream).  Prints each
variant's mean PESQ-WB and its paired difference against the model's config (mean +- standard
error over the files).

    python scripts/tune_decoder.py MODEL DIR K section.field=v1,v2,... [section.field=...]
    # e.g. model/default/model.pt build/val-third 9 postfilter.pitch_gain=0.6,0.8,0.9

Use validation files only (``build/val-third``: every third prompt of ``data/val/june``).
"""
import json
import sys
import warnings

import numpy as np

from model import dsp
from model.codec import Codec
from model.data import load_wav
from model.evaluation import wav_files
from model.metrics import MetricWarning, pesq_wb


def main(argv):
    model, folder, k = argv[0], argv[1], int(argv[2])
    codec = Codec.load(model)
    cfg = codec.cfg
    variants = [("model", cfg)]
    for spec in argv[3:]:
        key, values = spec.split("=")
        section, name = key.split(".")
        for v in values.split(","):
            variants.append((f"{key}={v}", cfg.replace(**{section: {name: float(v)}})))
    sr = cfg.signal.sample_rate
    scores = {name: [] for name, _ in variants}
    files = wav_files(folder)
    for i, f in enumerate(files):
        x = load_wav(f, sr)
        fr = codec.encode(x, "fixed")
        y = codec.decode_frames(fr.codes[:k], "fixed")
        for name, c in variants:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetricWarning)
                scores[name].append(pesq_wb(x, dsp.synthesize(y, fr.lsf_idx, fr.gain_idx, fr.num_samples, c,
                                                              codec.lsf_q, k, fr.pitch)))
        print(f"\r{i + 1}/{len(files)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    base = np.array(scores["model"])
    ok = np.isfinite(base)
    rows = []
    for name, _ in variants:
        s = np.array(scores[name])
        d = (s - base)[ok]
        rows.append({"variant": name, "pesq_wb": round(float(np.mean(s[ok])), 4),
                     "diff": round(float(d.mean()), 4),
                     "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4) if len(d) > 1 else None})
        print(f"{name:40s} {rows[-1]['pesq_wb']:.3f}  {rows[-1]['diff']:+.3f} +- {rows[-1]['se'] or 0:.3f}")
    print(json.dumps({"model": model, "folder": folder, "stages": k, "files": int(ok.sum()), "rows": rows}))


if __name__ == "__main__":
    main(sys.argv[1:])
