"""Ableton Link: how well gridcast's predicted beats match a second peer's, over a long run.

    python bench/link.py [--seconds 600] [--bpm 120] [--every 60]

Runs gridcast's LinkBeatSource and a second Link peer inside a network namespace that
holds only a loopback interface (tests/netns.py; needs root; Link never runs in this
machine's own namespace). The peer changes tempo every ``--every`` seconds (120 ->
124 -> 118 -> 126 ... bpm, as a DJ nudging the tempo), at most one change for runs
shorter than that, then leaves. For each of the peer's beats the bench takes the
prediction gridcast held 30 ms before it (tests/link_run.py) and prints one JSON
object:

    beats                       peer beats compared
    p50_abs_ms, p99_abs_ms      |predicted - peer's own beat time|, CLOCK_REALTIME
    max_abs_ms
    join_s                      from enabling Link to the first beat gridcast gives
    tempo_change_follow_beats   worst, over the changes, of beats still off by > 1 ms
                                after a change (0: followed from the next beat)
    bar_mismatches              beats whose place in the bar differs from the peer's
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
from tests.link_run import analyse, run_session  # noqa: E402

NUDGES_BPM = (4.0, -2.0, 6.0, -4.0)  # relative to --bpm, in turn


def tempo_plan(seconds: float, bpm: float, every_s: float) -> str:
    """``S:BPM,...`` for the peer: a change every ``every_s``, or one half-way."""
    times = [every_s * k for k in range(1, int(seconds // every_s) + 1)
             if every_s * k < seconds - 5]
    if not times:
        times = [seconds / 2]
    return ",".join(f"{at:g}:{bpm + NUDGES_BPM[i % len(NUDGES_BPM)]:g}"
                    for i, at in enumerate(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the peer plays")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between tempo changes")
    parser.add_argument("--quantum", type=int, default=4)
    args = parser.parse_args()
    plan = tempo_plan(args.seconds, args.bpm, args.every)
    figures = analyse(run_session(args.seconds, bpm=args.bpm, tempo_changes=plan,
                                  quantum=args.quantum))
    print(json.dumps({
        "beats": figures["beats"],
        "p50_abs_ms": figures["p50_abs_ms"],
        "p99_abs_ms": figures["p99_abs_ms"],
        "join_s": figures["join_s"],
        "tempo_change_follow_beats": figures["tempo_change_follow_beats"],
        "max_abs_ms": figures["max_abs_ms"],
        "bar_mismatches": figures["bar_mismatches"],
        "tempo_changes": plan,
        "seconds": args.seconds,
    }))


if __name__ == "__main__":
    main()
