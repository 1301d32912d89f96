"""Phrase and section figures on composed tracks with known structure.

    .venv/bin/python bench/structure.py                    # held-out seeds 1000-1019
    .venv/bin/python bench/structure.py --seeds 0:30       # the tuning seeds
    .venv/bin/python bench/structure.py --clips ../shared/data/beats-real/audio  # no labels

Tracks come from gridcast.host.training.structure_corpus (seed n is the same
everywhere). Each is analyzed by the whole analyzer (beats, downbeats, then
structure), as `gridcast analyze` does. Prints one JSON object:

- phrase_f: F-measure of the phrase starts, a hit within one beat (mir_eval's
  onset matching), pooled over the tracks (every hit, miss and false start
  counted once); the start of the track (the first phrase) is left out on both
  sides, it says nothing about phrase finding;
- phrase_f_true_downbeats: the same with the true beats and downbeats given to
  the structure analysis (its own share of the error);
- section_role_accuracy: the fraction of the time, over the composed part of
  each track, where the role found is the true one (drop and chorus count as
  one role: the composer has no chorus);
- downbeat_f: the analyzer's downbeats on the same tracks (mir_eval, 70 ms);
- per track: seed, BPM, phrase F, role accuracy.

With --clips, one line per audio file: its sections with role and bars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import mir_eval
import numpy as np
from threadpoolctl import threadpool_limits

from gridcast.host.analysis import analyzer, features, structure
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.training import structure_corpus as corpus

SAME_ROLE = {"chorus": "drop"}


def boundary_counts(ref: np.ndarray, est: np.ndarray, window_s: float,
                    start_s: float) -> tuple[int, int, int]:
    """(hits, reference boundaries, estimated boundaries) after ``start_s``."""
    ref, est = ref[ref > start_s], est[est > start_s]
    if not len(ref) or not len(est):
        return 0, len(ref), len(est)
    hits = len(mir_eval.util.match_events(ref, est, window_s))
    return hits, len(ref), len(est)


def f_measure(hits: int, n_ref: int, n_est: int) -> float:
    return 2 * hits / (n_ref + n_est) if n_ref + n_est else 1.0


def role_accuracy(truth: list[tuple[float, float, str]], found: list, step_s: float = 0.1
                  ) -> float:
    t = np.arange(truth[0][0], truth[-1][1], step_s)
    want = np.empty(len(t), dtype=object)
    for a, b, role in truth:
        want[(t >= a) & (t < b)] = role
    got = np.full(len(t), "none", dtype=object)
    for sec in found:
        got[(t >= sec.start_s) & (t < sec.end_s)] = SAME_ROLE.get(sec.role, sec.role)
    return float(np.mean(want == got))


def score_seed(seed: int) -> dict:
    track = corpus.compose(seed)
    started = time.process_time()
    with threadpool_limits(limits=1):
        feats = features.extract_array(track.audio, corpus.SAMPLE_RATE)
        bm = analyzer.analyze_features(feats, AnalyzerParams())
        oracle = structure.analyze(feats, track.beats_s, track.beat_in_bar)
    cpu_s = time.process_time() - started
    beat_s = 60.0 / track.bpm
    start = float(track.phrases_s[0]) + beat_s
    counts = boundary_counts(track.phrases_s, bm.phrases, beat_s, start)
    oracle_counts = boundary_counts(track.phrases_s, oracle.phrases_s, beat_s, start)
    down_ref = track.beats_s[track.beat_in_bar == 1]
    return {"seed": seed, "bpm": round(track.bpm, 1), "minutes": track.duration_s / 60,
            "counts": counts, "oracle_counts": oracle_counts,
            "phrase_f": round(f_measure(*counts), 3),
            "role_accuracy": round(role_accuracy(track.sections, bm.sections), 3),
            "oracle_role_accuracy": role_accuracy(track.sections, oracle.sections),
            "downbeat_f": mir_eval.beat.f_measure(down_ref, bm.downbeats),
            "cpu_s": cpu_s,
            "roles": " ".join(f"{s.role}:{s.end_s - s.start_s:.0f}s" for s in bm.sections)}


def composed(seeds: range, jobs: int) -> dict:
    with ProcessPoolExecutor(jobs) as pool:
        rows = list(pool.map(score_seed, seeds))
    total = np.sum([r["counts"] for r in rows], axis=0)
    oracle = np.sum([r["oracle_counts"] for r in rows], axis=0)
    minutes = sum(r["minutes"] for r in rows)
    return {
        "tracks": len(rows), "seeds": f"{seeds.start}:{seeds.stop}",
        "phrase_f": round(f_measure(*total), 3),
        "phrase_precision": round(total[0] / max(1, total[2]), 3),
        "phrase_recall": round(total[0] / max(1, total[1]), 3),
        "phrase_f_true_downbeats": round(f_measure(*oracle), 3),
        "section_role_accuracy": round(float(np.mean([r["role_accuracy"] for r in rows])), 3),
        "section_role_accuracy_true_downbeats": round(float(np.mean(
            [r["oracle_role_accuracy"] for r in rows])), 3),
        "downbeat_f": round(float(np.mean([r["downbeat_f"] for r in rows])), 3),
        "audio_minutes": round(minutes, 1),
        "analysis_cpu_s_per_minute": round(sum(r["cpu_s"] for r in rows) / minutes, 2),
        "per_track": [{k: r[k] for k in ("seed", "bpm", "phrase_f", "role_accuracy", "roles")}
                      for r in rows],
    }


def describe_clip(path: str) -> dict:
    bm = analyzer.analyze_file(path)
    bar_s = 60.0 / bm.tempo_bpm * max(1, bm.meter) if bm.tempo_bpm else 0.0
    return {"clip": os.path.basename(path), "seconds": bm.duration_s,
            "bars": int(np.sum(bm.beat_in_bar == 1)),
            "phrase_bars": [round(float(d) / bar_s) for d in np.diff(bm.phrases)] if bar_s else [],
            "sections": [f"{s.role} {s.start_s:.1f}-{s.end_s:.1f}s e{s.energy:.2f}"
                         for s in bm.sections]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1000:1020", help="A:B, composed tracks A..B-1")
    parser.add_argument("--clips", help="a folder of audio: describe, no scores")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.clips:
        names = sorted(n for n in os.listdir(args.clips)
                       if n.endswith((".flac", ".wav", ".mp3", ".ogg")))
        for name in names:
            print(json.dumps(describe_clip(os.path.join(args.clips, name))))
        return 0
    a, b = (int(x) for x in args.seeds.split(":"))
    print(json.dumps(composed(range(a, b), args.jobs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
