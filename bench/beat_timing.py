"""Beat timing against annotations: gridcast's trackers beside any other tracker's beats.

Issue 15 asks the live LEDs for |LED beat − annotated beat| median <= 10 ms and p90
<= 25 ms. This bench separates what in that error is the tracker, what is the
annotations' convention, and what is the clip: for each system, on one set,

- ``signed_median_ms``, ``abs_median_ms``, ``abs_p90_ms``: every annotated beat at
  t >= 5 s against the nearest estimated beat, kept when within 70 ms (``matched``);
- ``clip_bias_sd_ms``: the spread (sd) of the per-clip signed medians;
- ``centred_*``: the same errors with each clip's own median removed (what is left
  when every clip's bias is known: the spread within clips);
- ``centred_lag1_r_median``: the median over clips of the correlation between the
  centred errors of consecutive annotated beats (both matched): near 1, beats are off in
  runs (a drifting tempo, a phase the tracker holds wrong), which a grid over the last
  beats could follow; near 0, each beat's own timing, which nothing before it predicts;
- ``set_offset_*``: the estimates moved by one constant (the set's signed median),
  matched again (what one calibration for the whole set could give);
- ``after_lock_*``: only annotated beats after the system locked (the live bench's
  convention), ``lock_s_median`` (host/live/realtime.lock_time_s) and ``f``
  (mir_eval beat F, first 5 s trimmed).

Systems: ``gridcast_offline`` (the analyzer) and ``gridcast_causal`` (the C tracker
fed hop by hop, host/live/realtime.track_file), plus any folder of another tracker's
beats given with ``--external NAME=DIR`` (``DIR/<clip id>.beats``, one time in seconds
per line; bench/external/madmom_beats.py writes madmom's). Two predictions show what a
system that predicts each beat from the ones before it could reach:

- ``annotations_predicted``: each annotated beat predicted from the PREDICT_FROM
  annotated beats before it (a least-squares line through them, one step on): how
  regular the annotations are, the error of a predictor that knew every earlier beat
  exactly as the annotators marked it;
- ``gridcast_offline_predicted``: each of the analyzer's beats predicted the same way
  from the analyzer's PREDICT_FROM_BEATS beats before it (beats on their onsets, from
  the whole track): prediction from beats placed as precisely as the audio allows.

    python bench/beat_timing.py ../shared/data/beats-real [--external madmom_dbn=DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import mir_eval
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.host.analysis import analyzer  # noqa: E402
from gridcast.host.analysis.params import AnalyzerParams  # noqa: E402
from gridcast.host.evaluation.evaluate import load_dataset  # noqa: E402
from gridcast.host.live import realtime  # noqa: E402

SKIP_S = 5.0  # mir_eval's convention: the first 5 s are not scored
MATCH_S = 0.070
PREDICT_FROM = 3  # annotated beats behind each prediction
PREDICT_FROM_BEATS = 16  # the analyzer's beats behind each prediction


def errors_ms(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Nearest estimate − annotated beat (ms) for each annotated beat matched within 70 ms."""
    error = realtime.nearest_error_s(ref, est)
    return error[np.abs(error) < MATCH_S] * 1e3


def _spread(errors: np.ndarray, prefix: str) -> dict:
    if not errors.size:
        return {f"{prefix}abs_median_ms": None, f"{prefix}abs_p90_ms": None}
    return {f"{prefix}abs_median_ms": round(float(np.median(np.abs(errors))), 1),
            f"{prefix}abs_p90_ms": round(float(np.percentile(np.abs(errors), 90)), 1)}


def lag1_r(ref: np.ndarray, est: np.ndarray) -> float | None:
    """Correlation of consecutive annotated beats' centred errors (None: too few pairs)."""
    error = realtime.nearest_error_s(ref, est) * 1e3
    error = np.where(np.abs(error) < MATCH_S * 1e3, error, np.nan)
    if np.isnan(error).all():
        return None
    centred = error - np.nanmedian(error)
    a, b = centred[:-1], centred[1:]
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < 6 or np.std(a[both]) == 0 or np.std(b[both]) == 0:
        return None
    return float(np.corrcoef(a[both], b[both])[0, 1])


def figures(clips: list, beats: dict[str, np.ndarray]) -> dict:
    """One system's figures over the clips it has beats for (see the module doc)."""
    scored = [(np.asarray(c.beats), np.sort(beats[c.id])) for c in clips if c.id in beats]
    per_clip, after_lock, fs, locks = [], [], [], []
    for ref_all, est in scored:
        per_clip.append(errors_ms(ref_all[ref_all >= SKIP_S], est))
        fs.append(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref_all),
                                          mir_eval.beat.trim_beats(est)))
        duration = float(ref_all[-1]) + 1.0 if ref_all.size else 0.0
        lock = realtime.lock_time_s(ref_all, est, duration)
        locks.append(lock)
        locked_at = (ref_all[0] if ref_all.size else 0.0) + lock
        after_lock.append(errors_ms(ref_all[ref_all >= max(SKIP_S, locked_at)], est))
    every = np.concatenate(per_clip or [np.zeros(0)])
    medians = [float(np.median(e)) for e in per_clip if e.size]
    centred = np.concatenate([e - np.median(e) for e in per_clip if e.size] or [np.zeros(0)])
    lag1 = [r for r in (lag1_r(ref_all[ref_all >= SKIP_S], est) for ref_all, est in scored)
            if r is not None]
    offset_s = float(np.median(every)) / 1e3 if every.size else 0.0
    shifted = np.concatenate([errors_ms(ref_all[ref_all >= SKIP_S], est - offset_s)
                              for ref_all, est in scored] or [np.zeros(0)])
    return {"clips": len(scored), "matched": int(every.size),
            "annotated": sum(int((ref_all >= SKIP_S).sum()) for ref_all, _ in scored),
            "signed_median_ms": round(float(np.median(every)), 1) if every.size else None,
            **_spread(every, ""),
            "clip_bias_sd_ms": round(float(np.std(medians)), 1) if medians else None,
            **_spread(centred, "centred_"),
            "centred_lag1_r_median": round(float(np.median(lag1)), 2) if lag1 else None,
            **_spread(shifted, "set_offset_"),
            "set_offset_ms": round(offset_s * 1e3, 1),
            **_spread(np.concatenate(after_lock or [np.zeros(0)]), "after_lock_"),
            "lock_s_median": round(float(np.median(locks)), 2) if locks else None,
            "f": round(float(np.mean(fs)), 3) if fs else None}


def predicted(times: np.ndarray, n: int) -> np.ndarray:
    """Each beat from the fourth on, predicted from the (up to) n before it by a
    least-squares line one step on. The line starts after a gap more than 15 % off the
    median of the last eight intervals (a tempo change or a dropped beat); with fewer than
    three beats in it, the last beat plus that median stands in."""
    times = np.asarray(times, dtype=float)
    out = []
    for k in range(3, len(times)):
        period = float(np.median(np.diff(times[max(0, k - 8):k])))
        first = k - 1
        while first > max(0, k - n) and abs((times[first] - times[first - 1]) / period - 1) <= 0.15:
            first -= 1
        run = times[first:k]
        if len(run) < 3:
            out.append(times[k - 1] + period)
            continue
        slope, intercept = np.polyfit(np.arange(len(run)), run, 1)
        out.append(slope * len(run) + intercept)
    return np.asarray(out)


def gridcast_beats(clips: list) -> dict[str, dict[str, np.ndarray]]:
    offline, causal = {}, {}
    for n, clip in enumerate(clips, 1):
        offline[clip.id] = np.asarray(analyzer.analyze_file(clip.audio_path,
                                                            AnalyzerParams()).beats, dtype=float)
        causal[clip.id] = np.asarray(realtime.track_file(clip.audio_path).times_s, dtype=float)
        print(f"\r{n}/{len(clips)} {clip.id:<40}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {"gridcast_offline": offline, "gridcast_causal": causal,
            "annotations_predicted": {c.id: predicted(c.beats, PREDICT_FROM) for c in clips},
            "gridcast_offline_predicted": {k: predicted(b, PREDICT_FROM_BEATS)
                                           for k, b in offline.items()}}


def external_beats(folder: str, clips: list) -> dict[str, np.ndarray]:
    out = {}
    for clip in clips:
        path = os.path.join(folder, f"{clip.id}.beats")
        if os.path.exists(path):
            out[clip.id] = np.atleast_1d(np.loadtxt(path, ndmin=1, usecols=0))
    if not out:
        raise SystemExit(f"beat_timing: {folder} holds no <clip id>.beats file for this set")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir")
    parser.add_argument("--external", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clips = load_dataset(args.set_dir)
    systems = gridcast_beats(clips)
    for spec in args.external:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"beat_timing: --external {spec!r}: write it as NAME=DIR")
        systems[name] = external_beats(folder, clips)
    result = {name: figures(clips, beats) for name, beats in systems.items()}
    if args.json:
        print(json.dumps({"set": os.path.basename(os.path.normpath(args.set_dir)),
                          "systems": result}, indent=1))
        return
    keys = ["signed_median_ms", "abs_median_ms", "abs_p90_ms", "clip_bias_sd_ms",
            "centred_abs_p90_ms", "centred_lag1_r_median", "set_offset_abs_p90_ms",
            "after_lock_abs_median_ms", "after_lock_abs_p90_ms", "lock_s_median", "f"]
    print(f"{'system':<20}" + "".join(f"{k[:14]:>15}" for k in keys))
    for name, row in result.items():
        print(f"{name:<20}" + "".join(f"{row[k]!s:>15}" for k in keys))


if __name__ == "__main__":
    main()
