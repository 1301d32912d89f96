"""Ableton Link: how well gridcast's predicted beats match a second peer's, over a long run.

    python bench/link.py [--seconds 600] [--bpm 120] [--every 60] [--devices 3]

Runs gridcast's LinkBeatSource and a second Link peer inside a network namespace that
holds only a loopback interface (tests/netns.py; needs root; Link never runs in this
machine's own namespace). The peer changes tempo every ``--every`` seconds (120 ->
124 -> 118 -> 126 ... bpm, as a DJ nudging the tempo), at most one change for runs
shorter than that, then leaves. gridcast's side runs the live sender too; for each
of the peer's beats the bench takes the live_beats message the devices held 30 ms
before it (tests/link_run.py) and prints one JSON object:

    beats                       peer beats compared
    peer_beats                  beats the peer played while gridcast was in the session
    p50_abs_ms, p99_abs_ms      |predicted - peer's own beat time|, CLOCK_REALTIME
    max_abs_ms
    join_s                      from enabling Link to the first beat gridcast gives
    tempo_change_follow_beats   worst, over the changes, of beats still off by > 1 ms
                                after a change (0: followed from the next beat)
    bar_mismatches              beats whose place in the bar differs from the peer's
    numbering_breaks            consecutive beats that did not get consecutive numbers
    session_losses              times gridcast went coasting while the peer was still there
    messages                    live_beats messages sent (refills, corrections)
    follower_cpu_percent        CPU of the gridcast side (Link's threads included),
                                percent of one core

With ``--devices N`` the live_beats go over MQTT to N simulated devices (the real
firmware in MicroPython; tests/link_fleet.py), and the LED frames they show are
compared with the peer's beats too:

    led_beats, led_missed       frames matched to a peer beat (all devices), beats missed
    led_p50_abs_ms, led_p99_abs_ms, led_max_abs_ms   |LED frame - peer's beat|
    led_aim_p99_abs_ms          the same without the delay this machine's scheduler added
                                (the frame's late_us: docs/firmware.md), what clock sync
                                and the schedule put the frame at
    led_held_up_beats, led_delay_max_ms   frames held up > 1 ms, the longest delay
    led_timing_problems         led_report.timing_problems at 1 ms, as the hil tests judge
    per_device                  beats, missed, p99 and aim p99 per device
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
from tests.link_fleet import analyse_leds  # noqa: E402
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
    parser.add_argument("--devices", type=int, default=0,
                        help="also send the beats to this many simulated devices and "
                             "measure their LED frames")
    parser.add_argument("--warmup-s", type=float, default=40.0,
                        help="device clock sync before gridcast joins (with --devices)")
    parser.add_argument("--raw", help="also write both programs' records to this JSON file")
    args = parser.parse_args()
    plan = tempo_plan(args.seconds, args.bpm, args.every)
    session = run_session(args.seconds, bpm=args.bpm, tempo_changes=plan, quantum=args.quantum,
                          devices=args.devices, warmup_s=args.warmup_s)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({"peer": session.peer, "follow": session.follow}, f)
    figures = analyse(session)
    leds = analyse_leds(session) if args.devices else {}
    print(json.dumps({
        "beats": figures["beats"],
        "peer_beats": figures["peer_beats"],
        "p50_abs_ms": figures["p50_abs_ms"],
        "p99_abs_ms": figures["p99_abs_ms"],
        "join_s": figures["join_s"],
        "tempo_change_follow_beats": figures["tempo_change_follow_beats"],
        "max_abs_ms": figures["max_abs_ms"],
        "bar_mismatches": figures["bar_mismatches"],
        "numbering_breaks": figures["numbering_breaks"],
        "session_losses": figures["session_losses"],
        "messages": figures["messages"],
        "follower_cpu_percent": figures["follower_cpu_percent"],
        "tempo_changes": plan,
        "seconds": args.seconds,
        **leds,
    }))


if __name__ == "__main__":
    main()
