"""Sound on the agent's clock, measured in the virtual room: are clicks heard when scheduled?

One run: start a VirtualRoom (jackd, dummy backend), open an AudioOutput on it, start a
RoomRecorder on what it plays, play a click train (at --source-rate, resampled to the
room's rate) scheduled on the agent timeline, then find every click in the capture and
compare the time it was heard with the time it was scheduled for.

--clock-ppm models a sound card whose clock runs off its nominal rate: the room runs at
rate·(1 + ppm) while the output prepares samples for the nominal rate, so only the
output's drift measurement can keep the clicks on time. --load N runs N busy processes
meanwhile (a loaded machine). --stall-ms 27,30,33 stops the room's jackd (SIGSTOP) for
those durations, --stall-every seconds apart from 10 s into the play: a stop that
outlasts a cycle's slack makes the dummy driver re-anchor its cycles (an xrun), so frames
shift against time by however long it overran, and the output's clock model must see
it. Clicks heard within 10 s of an xrun are judged apart (the room's own clock rings).

    python bench/audio_room.py [--seconds 60] [--source-rate 44100] [--clock-ppm 0] [--load 0]
                               [--stall-ms 27,30,33 --stall-every 15]

Prints one JSON object: click error p50/p99/max (µs, heard − scheduled), xruns, the first
sound's latency from the play() call, the output callback's CPU per minute of audio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent.audio.capture import RoomRecorder  # noqa: E402
from gridcast.agent.audio.clicks import click_train, find_onsets, match_onsets  # noqa: E402
from gridcast.agent.audio.output import AudioOutput  # noqa: E402
from gridcast.agent.audio.room import VirtualRoom  # noqa: E402
from gridcast.agent.clock import now_us  # noqa: E402


def busy(stop) -> None:
    """Burn one core until told to stop (the --load processes)."""
    while not stop.is_set():
        sum(range(10_000))


def stall(pid: int, stalls_ms: list[float], every_s: float, started: float) -> None:
    """Stop process ``pid`` for each of ``stalls_ms``, the first 10 s after ``started``
    (time.monotonic), then every ``every_s``."""
    for k, stop_ms in enumerate(stalls_ms):
        time.sleep(max(0.0, started + 10.0 + k * every_s - time.monotonic()))
        os.kill(pid, signal.SIGSTOP)
        time.sleep(stop_ms / 1e3)
        os.kill(pid, signal.SIGCONT)


def run(seconds: float, source_rate: int, room_rate: int, clock_ppm: float, every_s: float,
        period: int, lead_ms: float | None, stalls_ms: list[float] | None = None,
        stall_every_s: float = 15.0) -> dict:
    device_rate = round(room_rate * (1.0 + clock_ppm * 1e-6))
    onsets_s = np.arange(0.0, seconds - 0.05, every_s)  # a click on the very first sample
    signal, indices = click_train(source_rate, onsets_s, seconds)
    with VirtualRoom(rate_hz=device_rate, period_frames=period) as room:
        output = AudioOutput(room.output_device, assume_rate_hz=room_rate)
        opening = time.perf_counter()
        with output:
            open_ms = (time.perf_counter() - opening) * 1e3
            recorder = RoomRecorder(room.name, max_seconds=seconds + 5.0).start()
            cpu_before = time.process_time()
            start = now_us() + lead_ms * 1e3 if lead_ms is not None else None
            start_us = output.play(signal, source_rate, start_us=start)
            if stalls_ms and room.pid is not None:
                stall(room.pid, stalls_ms, stall_every_s, time.monotonic())
            output.wait_done(seconds + 10.0)
            capture = recorder.stop()
            cpu_process = time.process_time() - cpu_before
            report = output.report()
    heard = capture.heard_us(find_onsets(capture.samples, capture.rate_hz))
    expected = start_us + indices / source_rate * 1e6
    errors, missing, extra = match_onsets(heard, expected)
    # Clicks heard while JACK's timing settles after an xrun are judged apart.
    settled = capture.settled(expected)
    settled_errors, _, _ = match_onsets(heard, expected[settled])
    audio_min = report.frames / report.rate_hz / 60.0
    sounding = np.flatnonzero(capture.samples)
    first_heard = float(capture.heard_us(sounding[0])) if sounding.size else None
    magnitude = np.abs(errors) if errors.size else np.zeros(1)
    return {
        "seconds": seconds, "source_rate_hz": source_rate, "room_rate_hz": device_rate,
        "assumed_rate_hz": room_rate, "period_frames": period, "clicks": len(expected),
        "missing": missing, "extra": extra,
        "error_us_p50": float(np.percentile(errors, 50)) if errors.size else None,
        "abs_error_us_p50": float(np.percentile(magnitude, 50)),
        "abs_error_us_p99": float(np.percentile(magnitude, 99)),
        "abs_error_us_max": float(magnitude.max()),
        "clicks_unsettled": int((~settled).sum()),
        "settled_abs_error_us_p99": float(np.percentile(np.abs(settled_errors), 99))
        if settled_errors.size else None,
        "settled_abs_error_us_max": float(np.abs(settled_errors).max())
        if settled_errors.size else None,
        "error_us_first_5": [round(float(e), 1) for e in errors[:5]],
        "error_us_last_5": [round(float(e), 1) for e in errors[-5:]],
        "error_us_every_10th": [round(float(e), 1) for e in errors[::10]],
        "drift_ppm_measured": round(report.drift_ppm, 2),
        "drift_ppm_true": round((device_rate / room_rate - 1.0) * 1e6, 2),
        "stalls_ms": stalls_ms or [], "timeline_shifts": report.timeline_shifts,
        "xruns_output": report.xruns, "xruns_jack": capture.xruns,
        "xrun_after_play_ms": [round((t - report.play_called_us) / 1e3, 1) for t in capture.xrun_us]
        if report.play_called_us else [],
        "dropped_buffers": capture.dropped_buffers, "recorder_gaps": len(capture.gaps()),
        "callback_errors": report.callback_errors,
        "dac_latency_ms": round(report.dac_latency_ms, 3),
        "first_sound_latency_ms": round(report.first_sound_latency_ms or -1.0, 2),
        "first_sound_heard_after_play_ms": round((first_heard - report.play_called_us) / 1e3, 2)
        if first_heard is not None and report.play_called_us is not None else None,
        "stream_open_ms": round(open_ms, 1),
        "callback_cpu_s_per_audio_min": round(report.callback_cpu_s / audio_min, 3),
        "callback_cpu_percent_of_core": round(100 * report.callback_cpu_s / (audio_min * 60), 2),
        "process_cpu_percent_of_core": round(100 * cpu_process / (audio_min * 60), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--source-rate", type=int, default=44100)
    parser.add_argument("--rate", type=int, default=48000, help="the room's nominal rate")
    parser.add_argument("--period", type=int, default=256, help="JACK period, frames")
    parser.add_argument("--clock-ppm", type=float, default=0.0)
    parser.add_argument("--every", type=float, default=0.25, help="click spacing, s")
    parser.add_argument("--lead-ms", type=float, default=None,
                        help="schedule the start this far after play() (default: output's)")
    parser.add_argument("--load", type=int, default=0, help="busy processes meanwhile")
    parser.add_argument("--stall-ms", default="",
                        help="stop the room's jackd this long, comma-separated, e.g. 27,30,33")
    parser.add_argument("--stall-every", type=float, default=15.0,
                        help="seconds between the stops (the first 10 s into the play)")
    args = parser.parse_args()
    try:
        stalls_ms = [float(part) for part in args.stall_ms.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--stall-ms {args.stall_ms!r}: give milliseconds separated by commas, "
                     "e.g. 27,30,33")
    stop = mp.Event()
    loaders = [mp.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for loader in loaders:
        loader.start()
    try:
        result = run(args.seconds, args.source_rate, args.rate, args.clock_ppm, args.every,
                     args.period, args.lead_ms, stalls_ms, args.stall_every)
    finally:
        stop.set()
        for loader in loaders:
            loader.join()
    result["load_processes"] = args.load
    print(json.dumps(result))


if __name__ == "__main__":
    main()
