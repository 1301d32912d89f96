"""gridcast calibrate against a known room: how close is the measured room latency?

Starts a VirtualRoom (jackd, dummy backend) and a RoomLoopback that feeds what PortAudio
plays back into PortAudio's input --delay-ms later (the room's air and microphone: there
is no microphone on this machine), then runs the calibration --runs times and compares
each measured room latency with the delay that was put in.

    python bench/calibrate.py [--runs 10] [--delay-ms 23] [--period 1024] [--repeats 5]
    python bench/calibrate.py --runs 14 --freeze-ms 40 --freeze-every-s 1.5   # VM stalls

Prints one JSON object: each run's room latency and error (ms), the largest |error|, the
spread of the repeats within each run, PortAudio's output/input latency, seconds per run,
and the runs refused (``failed_runs``; ``refused_skipped`` counts those refused because
the devices skipped). ``--freeze-ms`` freezes the room's JACK server (SIGSTOP, then
SIGCONT: hil/faults.py) that long, every ``--freeze-every-s`` on average (0.5-1.5 times
it, seeded), while the calibrations run: a VM stall as the audio lives it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent.audio.loopback import RoomLoopback  # noqa: E402
from gridcast.agent.audio.room import VirtualRoom  # noqa: E402
from gridcast.agent.calibration import CalibrationError, measure_room  # noqa: E402
from gridcast.hil.faults import stall_process  # noqa: E402


def freezer(pid: int, freeze_ms: float, every_s: float, done: threading.Event) -> None:
    """Freeze ``pid`` for ``freeze_ms`` at seeded random intervals until ``done``."""
    rng = random.Random(1)
    while not done.wait(every_s * rng.uniform(0.5, 1.5)):
        stall_process(pid, freeze_ms).join()


def run(runs: int, delay_ms: float, period: int, repeats: int, max_latency_ms: float,
        freeze_ms: float = 0.0, freeze_every_s: float = 1.5) -> dict:
    results, failures = [], []
    done = threading.Event()
    with VirtualRoom(period_frames=period) as room, RoomLoopback(room.name, delay_ms) as loop:
        if freeze_ms > 0:
            assert room.pid is not None
            threading.Thread(target=freezer, args=(room.pid, freeze_ms, freeze_every_s, done),
                             daemon=True).start()
        for _ in range(runs):
            started = time.monotonic()
            try:
                result = measure_room(room.output_device, room.output_device, repeats=repeats,
                                      max_latency_ms=max_latency_ms)
            except CalibrationError as exc:  # counted, and the run goes on
                failures.append(str(exc))
                continue
            results.append((result, time.monotonic() - started))
        done.set()
        delay_frames = loop.delay_frames
    errors = [r.room_latency_ms - delay_ms for r, _ in results]
    out = {
        "delay_ms": delay_ms, "period_frames": period, "repeats": repeats,
        "freeze_ms": freeze_ms, "loopback_frames": delay_frames,
        "failed_runs": failures,
        "refused_skipped": sum("skipped" in f for f in failures),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if not results:
        return out
    first = results[0][0]
    return {
        **out,
        "room_latency_ms": [round(r.room_latency_ms, 4) for r, _ in results],
        "error_ms": [round(e, 4) for e in errors],
        "max_abs_error_ms": round(max(abs(e) for e in errors), 4),
        "repeat_spread_ms": [round(r.spread_ms, 4) for r, _ in results],
        "output_latency_ms": round(first.output_latency_ms, 3),
        "input_latency_ms": round(first.input_latency_ms, 3),
        "round_trip_ms": round(first.round_trip_ms, 3),
        "seconds_per_run": round(sum(s for _, s in results) / len(results), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--delay-ms", type=float, default=23.0)
    parser.add_argument("--period", type=int, default=1024, help="JACK buffer, frames")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-latency-ms", type=float, default=200.0)
    parser.add_argument("--freeze-ms", type=float, default=0.0,
                        help="freeze the room's server this long, again and again (0: never)")
    parser.add_argument("--freeze-every-s", type=float, default=1.5)
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.delay_ms, args.period, args.repeats,
                         args.max_latency_ms, args.freeze_ms, args.freeze_every_s)))


if __name__ == "__main__":
    main()
