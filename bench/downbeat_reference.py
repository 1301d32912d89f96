"""Downbeats: gridcast beside other trackers' estimates, with gridcast's own scoring.

Issue 16 asks for downbeat F >= 0.75 on the dev sets. This bench scores folders of
another tracker's estimates (``DIR/<clip id>.beats``, lines ``time_s<TAB>beat_in_bar``;
bench/external/madmom_beats.py writes madmom's) exactly as ``gridcast eval`` scores
gridcast (host/evaluation/evaluate.score), and prints per system:

- ``beat_f``: mean beat F over all clips; ``downbeat_f``: mean downbeat F over the clips
  with annotated downbeats;
- ``meter_right``: clips whose most common bar length (evaluate.bar_length) is the
  annotation's; ``downbeat_zero``: clips whose downbeat F is 0 (a whole-track phase or
  meter error);
- ``best_of``: the mean over clips of the better downbeat F of gridcast and each other
  system (how far apart their failures lie).

    python bench/downbeat_reference.py ../shared/data/beats-real madmom=DIR [NAME=DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.host.analysis import analyzer  # noqa: E402
from gridcast.host.analysis.params import AnalyzerParams  # noqa: E402
from gridcast.host.evaluation import evaluate  # noqa: E402


def scored(clip: evaluate.Clip, beats: np.ndarray, bib: np.ndarray | None) -> dict:
    if clip.beat_in_bar is not None and bib is None:
        bib = np.zeros(len(beats), dtype=int)  # no downbeats given: they score 0
    row = evaluate.score(clip.beats, clip.beat_in_bar, beats, bib)
    row["meter_right"] = (None if clip.beat_in_bar is None or bib is None else
                          evaluate.bar_length(bib) == evaluate.bar_length(clip.beat_in_bar))
    return row


def summary(rows: dict[str, dict], gridcast: dict[str, dict] | None = None) -> dict:
    bars = {k: r for k, r in rows.items() if r["downbeat_f"] is not None}
    out = {"clips": len(rows),
           "beat_f": round(float(np.mean([r["f_measure"] for r in rows.values()])), 3),
           "downbeat_f": round(float(np.mean([r["downbeat_f"] for r in bars.values()])), 3),
           "meter_right": f"{sum(bool(r['meter_right']) for r in bars.values())}/{len(bars)}",
           "downbeat_zero": f"{sum(r['downbeat_f'] == 0 for r in bars.values())}/{len(bars)}"}
    if gridcast is not None:
        out["best_of"] = round(float(np.mean([max(r["downbeat_f"], gridcast[k]["downbeat_f"])
                                              for k, r in bars.items()])), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir")
    parser.add_argument("systems", nargs="*", metavar="NAME=DIR")
    args = parser.parse_args()
    clips = evaluate.load_dataset(args.set_dir)
    gridcast = {}
    for n, clip in enumerate(clips, 1):  # as `gridcast eval` does: the whole analysis
        bm = analyzer.analyze_file(clip.audio_path, AnalyzerParams())
        gridcast[clip.id] = scored(clip, np.asarray(bm.beats), np.asarray(bm.beat_in_bar))
        print(f"\rgridcast {n}/{len(clips)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    result = {"gridcast": summary(gridcast)}
    for spec in args.systems:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"downbeat_reference: {spec!r}: write it as NAME=DIR")
        rows = {}
        for clip in clips:
            path = os.path.join(folder, f"{clip.id}.beats")
            if not os.path.exists(path):
                raise SystemExit(f"downbeat_reference: {path} is missing: run the tracker on "
                                 f"the whole set")
            beats, bib = evaluate.read_annotation(path)
            rows[clip.id] = scored(clip, beats, bib)
        result[name] = summary(rows, gridcast)
    print(json.dumps({"set": os.path.basename(os.path.normpath(args.set_dir)),
                      "systems": result}, indent=1))


if __name__ == "__main__":
    main()
