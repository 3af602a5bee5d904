"""What each `cascade` command costs to start, next to opusenc + opusdec on the same file.

Wall-clock seconds of each command as a user runs it (a fresh process, median of ``--repeat``
runs), on one speech file: ``--help``, ``info`` of a stream, ``truncate``, a refused bad input
(a stereo WAV), ``encode`` and ``decode`` with the shipped model; and, as the baseline measured
in the same run, ``python -c 'import torch'`` and ``opusenc`` + ``opusdec`` at 24 kbit/s.

    python scripts/startup_times.py data/test/cmu/raw_goforward.wav --out docs/report/startup.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], ok=(0,)) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if r.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode()[-300:]}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wav")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cascade = [sys.executable, "-m", "model.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cas, back = tmp / "x.cas", tmp / "x.wav"
        stereo = tmp / "stereo.wav"
        with wave.open(str(stereo), "wb") as w:
            w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0" * 6400)
        subprocess.run(cascade + ["encode", a.wav, str(cas), "--force"], check=True, cwd=ROOT, capture_output=True)
        with wave.open(a.wav) as w:
            seconds = w.getnframes() / w.getframerate()
        jobs = {
            "cascade --help": (cascade + ["--help"], (0,)),
            "cascade info X.cas": (cascade + ["info", str(cas)], (0,)),
            "cascade truncate X.cas --stages 5": (cascade + ["truncate", str(cas), str(tmp / "t.cas"),
                                                            "--stages", "5", "--force"], (0,)),
            "cascade encode (refused: stereo WAV)": (cascade + ["encode", str(stereo), str(tmp / "s.cas")], (1,)),
            "cascade encode X.wav X.cas": (cascade + ["encode", a.wav, str(cas), "--force"], (0,)),
            "cascade decode X.cas X.wav": (cascade + ["decode", str(cas), str(back), "--force"], (0,)),
            "python -c 'import torch'": ([sys.executable, "-c", "import torch"], (0,)),
        }
        if shutil.which("opusenc") and shutil.which("opusdec"):
            jobs["opusenc --bitrate 24"] = (["opusenc", "--quiet", "--bitrate", "24", a.wav, str(tmp / "o.opus")], (0,))
            jobs["opusdec --rate 16000"] = (["opusdec", "--quiet", "--rate", "16000", str(tmp / "o.opus"),
                                             str(tmp / "o.wav")], (0,))
        rows = {}
        for name, (cmd, ok) in jobs.items():
            runs = [timed(cmd, ok) for _ in range(a.repeat)]
            rows[name] = {"median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs]}
            print(f"{name}: {rows[name]['median_s']} s", file=sys.stderr)
    out = {"file": a.wav, "seconds": round(seconds, 2), "repeat": a.repeat, "commands": rows}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
