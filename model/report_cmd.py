"""``cascade report``: every figure of the codec measured side by side in one run.

Writes to ``--out``:

* ``report.md`` / ``report.json``: rate-quality table of the codec at every K (float and/or fixed
  arithmetic) next to Opus, Speex and G.722 measured on the same files in the same run; the
  fixed-point sweep (activation width vs PESQ-WB, STOI, SNR and per-stage code-bit agreement with
  float); the Huffman saving per stage; the float-weight model's curve when ``--float-model`` is
  given; the commands that reproduce it.
* ``rate_quality.png`` (PESQ-WB and STOI vs kbps) and ``fixed_sweep.png``;
* ``damage.md`` / ``damage.json``: PESQ-WB of damaged streams against the clean decode
  (``model.damage``), beside an earlier layout's ``damage.json`` given with ``--damage-before``;
  ``--damage-only`` writes this section alone.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ReportOptions:
    """What ``cascade report`` measures (the CLI fills it from its arguments; a script may too).

    ``model``/``float_model``: model files (None: the shipped default / no float-weight curve);
    ``test_dir``: the test WAV folder; ``out``: the report folder; ``arith``: "float", "fixed"
    or "both"; ``widths``: activation widths of the fixed-point sweep (a tuple, or "6,8,10");
    ``no_baselines``: skip Opus, Speex and G.722; ``damage_seeds``: seeds of the damage section
    (0: none); ``damage_before``: an earlier layout's damage.json shown beside it; ``command``:
    how the report says it was made."""
    out: str | Path
    test_dir: str | Path = "data/test"
    model: str | Path | None = None
    float_model: str | Path | None = None
    arith: str = "both"
    widths: tuple | str = (6, 8, 10, 12, 16)
    no_baselines: bool = False
    damage_seeds: int = 8
    damage_before: str | Path | None = None
    command: str = "cascade report"


def _codes_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    return [float((x == y).mean()) for x, y in zip(a, b)]


def _stage_agreement(codec, frames) -> list[float]:
    """Per stage: the fixed-point stage and the float stage given the *same* input (the residual
    the fixed cascade leaves), how many code bits agree.  This isolates each stage's arithmetic
    from the divergence that earlier stages' different decisions cause in the cascade."""
    import torch
    from . import golden
    cfg, im = codec.cfg, codec.int_model()
    r = golden.quantize_frames(frames, cfg)
    out = []
    for s, stage in enumerate(im.stages):
        bits = golden.encoder_forward(stage, r, cfg)
        with torch.no_grad():
            fb = codec.net.stages[s].encode(torch.from_numpy(golden.dequantize_frames(r, cfg)).float()).numpy() > 0
        out.append(float((bits == fb).mean()))
        r = golden.sat(r - golden.decoder_forward(stage, bits, cfg), cfg.fixed.act_bits)
    return out


def fixed_sweep(codec, files, widths, progress=None) -> list[dict]:
    """Quality of ``--arith fixed`` for several activation widths, against float (codes as the
    encoder core computes them, without search, so only the arithmetic differs)."""
    from . import dsp
    from .codec import Codec
    from .data import load_wav
    from .evaluation import evaluate_files
    rows = []
    sr = codec.cfg.signal.sample_rate
    signals = [load_wav(f, sr) for f in files]
    analyses = [dsp.analyze(x, codec.cfg, codec.lsf_q) for x in signals]
    float_codes = [codec.encode_frames(an.frames, "float", search=0) for an in analyses]
    for w in widths:
        cfg_w = codec.cfg.replace(fixed={"act_bits": int(w),
                                         "bias_bits": max(codec.cfg.fixed.bias_bits,
                                                          int(w) - codec.cfg.fixed.act_int_bits + 2)})
        cw = Codec(cfg_w, codec.net, codec.lsf_q, codec.codebooks, codec.meta, side=codec.side)
        res = evaluate_files(cw, files, "fixed", None, progress, search=0)
        agree = np.zeros(cfg_w.network.stages)
        agree_stage = np.zeros(cfg_w.network.stages)
        total = 0
        for an, fc in zip(analyses, float_codes):
            xc = cw.encode_frames(an.frames, "fixed", search=0)
            agree += np.array(_codes_agreement(xc, fc)) * len(an.frames)
            agree_stage += np.array(_stage_agreement(cw, an.frames)) * len(an.frames)
            total += len(an.frames)
        rows.append({"act_bits": int(w), "act_frac": cfg_w.fixed.act_frac, **res["mean"],
                     "bit_agreement": float(agree.sum() / total / cfg_w.network.stages),
                     "bit_agreement_per_stage": (agree / total).tolist(),
                     "stage_bit_agreement": float(agree_stage.sum() / total / cfg_w.network.stages),
                     "stage_bit_agreement_per_stage": (agree_stage / total).tolist()})
    return rows


def huffman_savings(codec, files) -> list[dict]:
    from . import dsp
    from .data import load_wav
    sr = codec.cfg.signal.sample_rate
    from .bitstream import SIDE_BLOCK_FRAMES, _side_widths, side_blocks, side_columns
    raw = np.zeros(codec.cfg.network.stages + 1)
    coded = np.zeros(codec.cfg.network.stages + 1)
    widths = _side_widths(codec.cfg)
    pf = codec.cfg.entropy.packet_frames
    for f in files:
        an = dsp.analyze(load_wav(f, sr), codec.cfg, codec.lsf_q)
        for n, c in enumerate(codec.encode_frames(an.frames, "fixed")):
            raw[n] += c.size
            coded[n] += codec.codebooks[n].cost(c) if codec.codebooks else c.size
        side = side_columns(an.lsf_idx, an.gain_idx, an.pitch, codec.cfg)
        raw[-1] += side.shape[0] * int(widths.sum())
        coded[-1] += sum(8 * len(codec.side.encode(side[a + f:a + f + n], widths))
                         for a in range(0, len(side), pf)
                         for f, n in side_blocks(min(pf, len(side) - a), SIDE_BLOCK_FRAMES)) \
            if codec.side else side.shape[0] * int(widths.sum())
    return [{"stage": n + 1 if n < len(raw) - 1 else (
                f"side information (LSF, gain, pitch: compact blocks of {SIDE_BLOCK_FRAMES} frames, "
                "without their checks; robust streams carry it raw, CRC-8 per frame)"),
             "raw_bits": int(r), "huffman_bits": int(c), "saving": float(1 - c / r)}
            for n, (r, c) in enumerate(zip(raw, coded))]


def _sweep_plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    w = [r["act_bits"] for r in rows]
    ax[0].plot(w, [r["pesq_wb"] for r in rows], "o-")
    ax[0].set_xlabel("activation width (bits)")
    ax[0].set_ylabel("PESQ-WB (fixed, all stages)")
    ax[0].grid(alpha=.3)
    ax[1].plot(w, [100 * r["bit_agreement"] for r in rows], "s-")
    ax[1].set_xlabel("activation width (bits)")
    ax[1].set_ylabel("code bits equal to float (%)")
    ax[1].grid(alpha=.3)
    fig.tight_layout()
    from .files import write_file
    write_file(path, lambda f: fig.savefig(f, format="png", dpi=110), force=True)
    plt.close(fig)


def damage_section(codec, a: ReportOptions, progress=None, required: bool = True) -> tuple[list[str], dict]:
    """The *Damage* section: ``model.damage.measure_damage`` on ``DAMAGE_FILES`` under
    ``--test-dir`` with ``--damage-seeds`` seeds, beside ``--damage-before`` (an earlier
    layout's damage.json, measured by the same command).  Returns (Markdown lines, JSON)."""
    from .damage import DAMAGE_FILES, damage_markdown, measure_damage
    arith = "fixed" if a.arith == "both" else a.arith
    files = [Path(a.test_dir) / f for f in DAMAGE_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing and not required:     # a report on other test files: the section says why it is absent
        return ["\n## Damage\n", f"Not measured: {missing[0]} is not in the test folder.\n"], {}
    if missing:
        from .errors import CascadeError
        raise CascadeError(f"damage test file {missing[0]} not found (cascade prepare-data)")
    # both side-information modes of the layout: compact (the default) and robust (--robust)
    res = measure_damage(codec, files, arith, a.damage_seeds, progress, side_mode="compact")
    robust = measure_damage(codec, files, arith, a.damage_seeds, progress, side_mode="robust")
    res = {**res, "robust": robust}
    cols = []
    before = None
    if a.damage_before:
        before = json.loads(Path(a.damage_before).read_text())
        name = f"before: layout v{before['layout_version']}"
        if before.get("side_mode"):
            name += f" {before['side_mode']}"
        cols.append((name, before))
        if before.get("robust"):
            cols.append((f"before: layout v{before['layout_version']} robust", before["robust"]))
    cols.append((f"layout v{res['layout_version']} {res['side_mode']} (default)", res))
    cols.append((f"layout v{robust['layout_version']} {robust['side_mode']} (--robust)", robust))
    md = ["\n## Damage: PESQ-WB against the clean decode\n",
          f"Channel damage after the stream header (`model/damage.py`): a share of all packets with one "
          f"bit flipped in each, or every bit flipped with a probability; {res['seeds']} seeds per row, "
          f"mean ± standard error over seeds of the mean over {len(files)} files ({res['seconds']:.1f} s: "
          + ", ".join(f.name for f in files) + f"), `--arith {arith}`, reference the same stream decoded "
          "clean. Side information: *compact* (from layout v4: delta+Huffman blocks of a few frames, "
          "each with a CRC-8; v3: one such section per packet with a CRC-16; `cascade encode`'s "
          "default) or *robust* (a unit with a CRC-8 per frame; `cascade encode --robust`), "
          "docs/bitstream.md. Frames that lost their side information are concealed as "
          "`Codec.conceal` says (from v4: interpolated between the good frames around them).\n", damage_markdown(cols)]
    return md, {"damage": res, "damage_before": before}


def run_damage_report(a: ReportOptions) -> dict:
    """``cascade report --damage-only``: the *Damage* section alone, OUT/damage.md and .json."""
    from .codec import Codec
    from .files import write_file
    codec = Codec.load(a.model)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    md, res = damage_section(codec, a)
    cmd = a.command
    head = ["# Damage\n", f"Generated by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M')} in "
            f"{time.time() - t0:.0f} s; model {a.model or 'shipped default'} (config `{codec.cfg.config_hash}`).\n"]
    write_file(out / "damage.md", "\n".join(head + md) + "\n", force=True)
    write_file(out / "damage.json", json.dumps({"command": cmd, **res["damage"]}, indent=1, default=float),
               force=True)
    print(f"damage section written to {out}/damage.md", file=sys.stderr)
    return res


def run_report(a: ReportOptions) -> dict:
    from .codec import Codec
    from .evaluation import evaluate_files, search_name, search_variants, wav_files
    from .progress import progress_bars
    from .report import markdown_table, rate_quality_plot
    codec = Codec.load(a.model)
    files = wav_files(a.test_dir)
    out = Path(a.out)
    ariths = ("float", "fixed") if a.arith == "both" else (a.arith,)
    if isinstance(a.widths, str):       # "6,8,10" (the CLI gives a tuple already)
        widths = [int(w) for w in a.widths.split(",") if w.strip()]
    else:
        widths = [int(w) for w in (a.widths or ())]
    for w in widths:   # each width must make a valid config (act_int_bits < w ...) before any work
        codec.cfg.replace(fixed={"act_bits": w, "bias_bits": max(codec.cfg.fixed.bias_bits,
                                                                 w - codec.cfg.fixed.act_int_bits + 2)})
    fm_early = Codec.load(a.float_model) if a.float_model else None
    out.mkdir(parents=True, exist_ok=True)
    N = codec.cfg.network.stages
    t0 = time.time()
    points, sweep, float_pts = [], [], []
    (*core, _), *others = search_variants(codec)
    with progress_bars() as p:
        # the config's search (the encoder core's code); in fixed arithmetic also the
        # software-only full search and no search, with the same decoder
        runs = [(arith, codec, arith) for arith in ariths]
        if "fixed" in ariths:
            runs += [("fixed", cw, "fixed, search 2 x all bits, software" if passes else "fixed, no search")
                     for passes, _, cw in others]
        for arith, cw, tag in runs:
            for k in range(1, N + 1):
                r = evaluate_files(cw, files, arith, k, p)
                points.append({"system": f"cascade ({tag})", "label": f"cascade K={k} {tag}",
                               "stages": k, **r["mean"], "files": len(files)})
        if a.float_model:
            fm = fm_early
            for k in range(1, fm.cfg.network.stages + 1):
                r = evaluate_files(fm, files, "float", k, p)
                float_pts.append({"system": "cascade, float weights", "label": f"float-weight K={k}",
                                  "stages": k, **r["mean"], "files": len(files)})
        if widths and codec.cfg.network.binary:
            sweep = fixed_sweep(codec, files, widths, p)
    baselines = []
    if not a.no_baselines:
        from .report import baseline_points
        baselines = baseline_points(files, progress=True)
    huff = huffman_savings(codec, files)
    all_pts = points + float_pts + baselines
    rate_quality_plot(all_pts, out / "rate_quality.png",
                      title=f"held-out speech ({len(files)} files) — model {codec.cfg.config_hash}")
    if sweep:
        _sweep_plot(sweep, out / "fixed_sweep.png")

    cmd = a.command
    md = ["# Cascade codec report\n",
          f"Generated by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M')} in {time.time() - t0:.0f} s.\n",
          f"Model: {a.model or 'shipped default'} (config `{codec.cfg.config_hash}`), made by "
          f"`{codec.provenance()}`; decoder postfilter num_gamma {codec.cfg.postfilter.num_gamma}.\n",
          f"Test files ({len(files)}, held out from training): " + ", ".join(f.name for f in files) + "\n",
          "Bitrates are actual: file bytes (header, side information and Huffman-coded stages) over "
          "duration; baselines' kbps include their container (payload_kbps without).\n",
          f"Encoder: closed-loop code search {search_name(*core)} (`SearchConfig`), as the "
          "encoder core computes it (*cascade (fixed)* is what the boards send); *search 2 x all "
          "bits, software* is the full search, too slow for the cores in real time; *no search* "
          "is the encoder network's code.  The decoder is the same for all (the decoder core in "
          "fixed arithmetic).\n",
          "## Rate and quality\n", "![rate-quality](rate_quality.png)\n", markdown_table(all_pts)]
    if sweep:
        md += ["\n## Fixed-point sweep (all stages, no code search)\n", "![sweep](fixed_sweep.png)\n",
               "Code bits = float: *cascade* compares the whole fixed encoder with the whole float "
               "encoder (a bit flipped in stage n changes the residual every later stage sees); "
               "*per stage* gives each float stage the same input as its fixed twin (the residual "
               "the fixed cascade leaves), which measures the arithmetic itself.\n",
               "| act bits | frac | kbps | PESQ-WB | STOI | SNR dB | code bits = float, cascade | per stage |",
               "|---|---|---|---|---|---|---|---|"]
        for r in sweep:
            md.append(f"| {r['act_bits']} | {r['act_frac']} | {r['kbps']:.2f} | {r['pesq_wb']:.3f} | "
                      f"{r['stoi']:.3f} | {r['snr_db']:.2f} | {100 * r['bit_agreement']:.2f} % | "
                      f"{100 * r['stage_bit_agreement']:.2f} % |")
    md += ["\n## Huffman coding of the stage codes\n", "| stage | raw bits | Huffman bits | saving |",
           "|---|---|---|---|"]
    for h in huff:
        md.append(f"| {h['stage']} | {h['raw_bits']} | {h['huffman_bits']} | {100 * h['saving']:.2f} % |")
    tr, tc = sum(h["raw_bits"] for h in huff), sum(h["huffman_bits"] for h in huff)
    md.append(f"| all | {tr} | {tc} | {100 * (1 - tc / tr):.2f} % |")
    damage = {}
    if a.damage_seeds:
        dmd, damage = damage_section(codec, a, required=False)
        md += dmd
    from .files import write_file
    write_file(out / "report.md", "\n".join(md) + "\n", force=True)       # the report folder's own files
    result = {"command": cmd, "config_hash": codec.cfg.config_hash, "files": [str(f) for f in files],
              "points": points, "float_weight_points": float_pts, "baselines": baselines,
              "fixed_sweep": sweep, "huffman": huff, **damage}
    write_file(out / "report.json", json.dumps(result, indent=1, default=float), force=True)
    print(f"report written to {out}/report.md", file=sys.stderr)
    return result
