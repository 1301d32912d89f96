"""gridcast calibrate against a known room: how close is the measured room latency?

Starts a VirtualRoom (jackd, dummy backend) and a RoomLoopback that feeds what PortAudio
plays back into PortAudio's input --delay-ms later (the room's air and microphone: there
is no microphone on this machine), then runs the calibration --runs times and compares
each measured room latency with the delay that was put in.

    python bench/calibrate.py [--runs 10] [--delay-ms 23] [--period 1024] [--repeats 5]

Prints one JSON object: each run's room latency and error (ms), the largest |error|, the
spread of the repeats within each run, PortAudio's output/input latency, seconds per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent.audio.loopback import RoomLoopback  # noqa: E402
from gridcast.agent.audio.room import VirtualRoom  # noqa: E402
from gridcast.agent.calibration import CalibrationError, measure_room  # noqa: E402


def run(runs: int, delay_ms: float, period: int, repeats: int, max_latency_ms: float) -> dict:
    results, failures = [], []
    with VirtualRoom(period_frames=period) as room, RoomLoopback(room.name, delay_ms) as loop:
        for _ in range(runs):
            started = time.monotonic()
            try:
                result = measure_room(room.output_device, room.output_device, repeats=repeats,
                                      max_latency_ms=max_latency_ms)
            except CalibrationError as exc:  # counted, and the run goes on
                failures.append(str(exc))
                continue
            results.append((result, time.monotonic() - started))
        delay_frames = loop.delay_frames
    errors = [r.room_latency_ms - delay_ms for r, _ in results]
    first = results[0][0]
    return {
        "delay_ms": delay_ms, "period_frames": period, "repeats": repeats,
        "loopback_frames": delay_frames,
        "room_latency_ms": [round(r.room_latency_ms, 4) for r, _ in results],
        "error_ms": [round(e, 4) for e in errors],
        "max_abs_error_ms": round(max(abs(e) for e in errors), 4),
        "repeat_spread_ms": [round(r.spread_ms, 4) for r, _ in results],
        "output_latency_ms": round(first.output_latency_ms, 3),
        "input_latency_ms": round(first.input_latency_ms, 3),
        "round_trip_ms": round(first.round_trip_ms, 3),
        "xruns": sum(r.input_xruns + r.output_xruns for r, _ in results),
        "seconds_per_run": round(sum(s for _, s in results) / len(results), 2),
        "failed_runs": failures,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--delay-ms", type=float, default=23.0)
    parser.add_argument("--period", type=int, default=1024, help="JACK buffer, frames")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-latency-ms", type=float, default=200.0)
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.delay_ms, args.period, args.repeats,
                         args.max_latency_ms)))


if __name__ == "__main__":
    main()
