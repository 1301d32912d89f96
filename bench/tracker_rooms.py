"""The C tracker's beat F on annotated sets, dry and heard through rooms (a design tool).

Each clip is resampled to 44.1 kHz, put after 3 s of silence (as bench/live.py --replay
does), and tracked by a fresh C tracker (gridcast.native.track_signal): dry, and through
each room of ``ROOMS`` (host/evaluation/room_acoustics.py). Prints per set and room the
mean mir_eval F-measure (70 ms, first 5 s trimmed) and the p90 of |beat − annotated beat|
for matched beats after 5 s.

    .venv/bin/python bench/tracker_rooms.py ../shared/data/beats-rendered ../shared/data/beats-real
    GC_DEFINES=LOG_GAIN=300.0f .venv/bin/python native/build_ffi.py   # a variant, then run
    .venv/bin/python native/build_ffi.py                               # the default back

docs/live.md ("A microphone in a room") has the figures for the onset constants.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from math import gcd

import numpy as np

RATE = 44_100
LEAD_S = 3.0
MATCH_S = 0.07
# name: (reverb_s, drr_db, crowd_snr_db), or None for the line signal
ROOMS: dict[str, tuple[float, float, float | None] | None] = {
    "dry": None, "club": (0.8, 0.0, None), "club+crowd20": (0.8, 0.0, 20.0),
    "hall": (1.6, -3.0, None)}


def score_clip(task: tuple[str, str, int]) -> dict[str, tuple[float, list[float]]]:
    """F and the signed errors of matched beats after 5 s, per room, for one clip."""
    import mir_eval
    from scipy.signal import resample_poly

    from gridcast.host.analysis import audio
    from gridcast.host.evaluation.room_acoustics import RoomAcoustics
    from gridcast.native import track_signal

    set_dir, path, index = task
    clip_id = os.path.basename(path).rsplit(".", 1)[0]
    with open(os.path.join(set_dir, "annotations", f"{clip_id}.beats")) as f:
        ref = np.array([float(line.split()[0]) for line in f if line.strip()])
    info = audio.probe(path)
    signal = np.concatenate(list(audio.iter_mono_blocks(info))).astype(np.float64)
    if info.sample_rate != RATE:
        g = gcd(RATE, info.sample_rate)
        signal = resample_poly(signal, RATE // g, info.sample_rate // g)
    lead = np.zeros(int(LEAD_S * RATE), np.float32)
    later = ref[ref >= 5.0]
    out = {}
    for name, room in ROOMS.items():
        heard = (signal.astype(np.float32) if room is None
                 else RoomAcoustics(*room).apply(signal, RATE, index))
        beats = track_signal(np.concatenate([lead, heard]), RATE).beats_s - LEAD_S
        f = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref),
                                    mir_eval.beat.trim_beats(beats), MATCH_S)
        errors = []
        if later.size:
            for b in beats[beats >= 5.0]:
                nearest = later[np.argmin(np.abs(later - b))]
                if abs(nearest - b) < MATCH_S:
                    errors.append(float(b - nearest))
        out[name] = (float(f), errors)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="folders with audio/ and annotations/")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    for set_dir in args.sets:
        paths = sorted(p for p in glob.glob(os.path.join(set_dir, "audio", "*"))
                       if not p.endswith(".json"))
        if not paths:
            parser.error(f"{set_dir}: no audio/ files (expected audio/<id>.flac and "
                         "annotations/<id>.beats)")
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(score_clip, [(set_dir, p, k) for k, p in enumerate(paths)]))
        cells = []
        for name in ROOMS:
            f = np.mean([r[name][0] for r in results])
            errors = np.abs(np.concatenate([r[name][1] for r in results])) * 1000
            p90 = np.percentile(errors, 90) if errors.size else float("nan")
            cells.append(f"{name} F {f:.4f} p90 {p90:.1f} ms")
        print(f"{os.path.basename(set_dir.rstrip('/'))} ({len(paths)}): " + " | ".join(cells),
              flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
