"""How the C tracker's tunable constants move accuracy and lock time (a design tool).

Each setting rebuilds the Python extension in place with ``GC_DEFINES`` (the
``#ifndef`` constants in native/src) and scores it in a fresh process on the
development sets: beat F-measure, and lock time measured from the start of every
clip and again from 4.3 s and 9.1 s into it. Lock time sits on a cluster of clips
that lock in 1.5-3.5 s, so one start per clip moves its median by a second between
neighbouring settings; three starts (120 locks instead of 40) and the two halves of
the set (even / odd clips) show whether a change holds. The default build is
restored at the end.

    python bench/native_params.py --grid                # the neighbourhood of the defaults
    python bench/native_params.py --random 200 --seed 7 # random settings around them
    python bench/native_params.py --define PRIOR_BPM=110.0f,PEAK_OVER_MEAN=4.0f

Needs ../shared/data/beats-rendered (and ../shared/data/beats) beside the clone.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "data")
STARTS_S = (0.0, 4.3, 9.1)
# name: (low, high) for the random search; the defaults are in native/src
SPACE = {
    "PRIOR_BPM": (100.0, 135.0),
    "PRIOR_SIGMA_OCT": (0.6, 1.5),
    "PRIOR_WEIGHT_PER_S": (2.0, 30.0),
    "TRANSITION_LAMBDA": (20.0, 150.0),
    "PEAK_OVER_MEAN": (2.5, 6.0),
    "P_BEAT": (0.7, 0.97),
    "P_HALF": (0.2, 0.6),
    "P_NONE": (0.03, 0.2),
    "TERNARY_PRIOR": (0.2, 1.0),
    "BASELINE_S": (0.1, 0.5),
}
GRID = {"PRIOR_BPM": (120.0, 125.0, 130.0), "PRIOR_SIGMA_OCT": (0.95, 1.05, 1.15),
        "PEAK_OVER_MEAN": (3.0, 3.25)}


def _score_clip(args: tuple[str, str]) -> tuple[float, list[float], float | None]:
    import mir_eval
    import soundfile as sf

    from gridcast.host.live.realtime import lock_time_s, relock_time_s
    from gridcast.native import track_signal

    audio_path, ann_path = args
    ref = np.loadtxt(ann_path, ndmin=2)[:, 0]
    x, sr = sf.read(audio_path, dtype="float32", always_2d=True)
    x = np.ascontiguousarray(x.mean(axis=1))
    f, locks, relock = 0.0, [], None
    for start in STARTS_S:
        i = int(start * sr)
        est = track_signal(np.ascontiguousarray(x[i:]), sr).beats_s
        # from the start: every annotated beat, as `gridcast eval --causal` counts;
        # from later starts: the beats after the stream begins
        later = ref if start == 0.0 else ref[ref >= start + 0.3] - i / sr
        if start == 0.0:
            f = float(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref),
                                              mir_eval.beat.trim_beats(est)))
            relock = relock_time_s(ref, est, len(x) / sr)
        locks.append(lock_time_s(later, est, (len(x) - i) / sr))
    return f, locks, relock


def worker(extra: str | None) -> None:
    """Score the extension as built now; print one JSON object."""
    from gridcast.host.library.batch import is_audio

    out = {}
    folders = {"beats-rendered": os.path.join(SHARED, "beats-rendered"),
               "beats": os.path.join(SHARED, "beats")}
    if extra:
        folders["extra"] = extra
    for name, folder in folders.items():
        pattern = os.path.join(folder, "audio", "*")
        # audio only: a beat map someone wrote next to the audio is not a clip
        jobs = [(p, os.path.join(folder, "annotations",
                                 os.path.splitext(os.path.basename(p))[0] + ".beats"))
                for p in sorted(glob.glob(pattern)) if is_audio(p)]
        with ProcessPoolExecutor(2) as ex:
            out[name] = list(ex.map(_score_clip, jobs))
    print(json.dumps(out))


def build(defines: dict[str, float]) -> None:
    text = ",".join(f"{k}={v:.4f}f" for k, v in defines.items())
    subprocess.run([sys.executable, os.path.join(ROOT, "native", "build_ffi.py")],
                   env={**os.environ, "GC_DEFINES": text}, check=True, capture_output=True)


def evaluate(defines: dict[str, float], extra: str | None = None) -> dict:
    build(defines)
    extra_args = ["--extra", extra] if extra else []
    run = subprocess.run([sys.executable, __file__, "--worker", *extra_args],
                         check=True, capture_output=True, text=True)
    res = json.loads(run.stdout)
    rendered = res["beats-rendered"]
    locks = np.array([r[1] for r in rendered])
    row = {
        "defines": defines,
        "f": round(float(np.mean([r[0] for r in rendered])), 4),
        "lock_mean": round(float(locks[:, 0].mean()), 2),
        "lock_median": round(float(np.median(locks[:, 0])), 2),
        "lock_median_by_start": [round(float(v), 2) for v in np.median(locks, axis=0)],
        "lock_mean_all_starts": round(float(locks.mean()), 2),
        "lock_median_halves": [round(float(np.median(locks[h::2, 0])), 2) for h in (0, 1)],
        "real_f": round(float(np.mean([r[0] for r in res["beats"]])), 4),
        "relock_s": [r[2] for r in rendered if r[2] is not None],
    }
    if "extra" in res:
        extra_locks = np.array([r[1] for r in res["extra"]])
        row["extra_f"] = round(float(np.mean([r[0] for r in res["extra"]])), 4)
        row["extra_lock_mean"] = round(float(extra_locks[:, 0].mean()), 2)
        row["extra_lock_median"] = round(float(np.median(extra_locks[:, 0])), 2)
    return row


def settings(args: argparse.Namespace) -> list[dict[str, float]]:
    if args.define:
        pairs = (d.split("=") for d in args.define.split(","))
        return [{k: float(v.rstrip("f")) for k, v in pairs}]
    if args.grid:
        grid = itertools.product(*GRID.values())
        return [dict(zip(GRID, values, strict=True)) for values in grid]
    rng = random.Random(args.seed)
    out: list[dict[str, float]] = [{}]
    for _ in range(args.random):
        names = rng.sample(sorted(SPACE), rng.randint(1, 4))
        out.append({n: round(rng.uniform(*SPACE[n]), 4) for n in names})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--grid", action="store_true", help="the grid around the defaults")
    ap.add_argument("--random", type=int, default=0, help="this many random settings")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--define", help="one setting: NAME=VALUE,...")
    ap.add_argument("--json", action="store_true", help="one JSON line per setting")
    ap.add_argument("--extra", help="also score this corpus folder (audio/, annotations/), "
                                    "for example a composed validation corpus")
    args = ap.parse_args()
    if args.worker:
        worker(args.extra)
        return
    if not os.path.isdir(os.path.join(SHARED, "beats-rendered")):
        sys.exit(f"bench/native_params.py: {SHARED}/beats-rendered not found (the development set)")
    try:
        for defines in settings(args):
            row = evaluate(defines, args.extra)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"F {row['f']:.3f}  lock mean {row['lock_mean']:5.2f}  median "
                      f"{row['lock_median']:4.2f}  by start {row['lock_median_by_start']}  "
                      f"halves {row['lock_median_halves']}  real F {row['real_f']:.3f}  "
                      f"relock {row['relock_s']}  "
                      + (f"extra F {row['extra_f']:.3f} lock {row['extra_lock_mean']:.2f} / "
                         f"{row['extra_lock_median']:.2f}  " if "extra_f" in row else "")
                      + f"{defines or 'defaults'}", flush=True)
    finally:
        build({})  # the default build again


if __name__ == "__main__":
    main()
