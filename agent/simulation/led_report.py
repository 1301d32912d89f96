"""The simulated devices' report: true beat error from LED logs, against the agent's commands.

For every beat a device showed (its LED log: beat index, true time), the
expected instant is start_us (the play command in force, read off the broker)
plus that beat's time in the device's active bundle. The error is the
difference; p50/p99 are of its absolute value. Anyone can recompute it from
the merged JSON-lines log and the bundle.

Each beat's line also says how late the frame showed after the tick the firmware aimed
it at (``late_us``). The error minus that is the aim: where the device's clock sync and
schedule put the beat, which a stalled process cannot move. The delay is the host's
(a simulator process not running, a paused VM; an interrupt on a board). Tests and the
demo judge the two apart (``timing_problems``, docs/firmware.md): every aim within the
bound, and few beats held up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from gridcast.agent import drift_stats
from gridcast.agent.simulation.broker_witness import BrokerWitness
from gridcast.agent.simulation.devices import SimDevice, Simulator
from gridcast.host.atomic_file import write_atomically
from gridcast.protocol import bundle_reader
from gridcast.protocol.errors import ProtocolError

# A beat frame shown this long after its due tick was held up on its way out.
HELD_UP_US = 1000
MAX_HELD_UP_SHARE = 0.05  # of the beats, over all devices judged together
MAX_DELAY_P50_US = 200  # the usual delay from the due tick to the frame (a spin's last read)


def timing_problems(errors_us: Sequence[float] | np.ndarray,
                    delays: Sequence[int | None] | np.ndarray, max_error_ms: float) -> list[str]:
    """What is wrong with these beats' timing (empty: nothing), judged as docs/firmware.md
    says: the p99 of |error - delay| (the aim) within ``max_error_ms``; at most
    ``MAX_HELD_UP_SHARE`` of the beats held up over ``HELD_UP_US``, and the median delay
    under ``MAX_DELAY_P50_US`` (a firmware that shows every beat late fails here)."""
    errors = np.asarray(errors_us, dtype=np.float64)
    if not errors.size:
        return ["no beats to judge"]
    if any(d is None for d in delays) or len(delays) != errors.size:
        return [f"{sum(d is None for d in delays)} of {len(delays)} LED lines say nothing of "
                f"their delay (late_us) for {errors.size} errors: the firmware predates it"]
    late = np.asarray(delays, dtype=np.float64)
    problems = []
    aim_p99_ms = float(np.percentile(np.abs(errors - late), 99)) / 1000
    if aim_p99_ms > max_error_ms:
        problems.append(f"aim p99 {aim_p99_ms:.3f} ms over {max_error_ms} ms")
    held = int((late > HELD_UP_US).sum())
    if held > MAX_HELD_UP_SHARE * errors.size:
        problems.append(f"{held} of {errors.size} beats held up over {HELD_UP_US / 1000:g} ms "
                        f"(at most {MAX_HELD_UP_SHARE:.0%})")
    delay_p50 = float(np.percentile(late, 50))
    if delay_p50 > MAX_DELAY_P50_US:
        problems.append(f"median delay {delay_p50 / 1000:.3f} ms over "
                        f"{MAX_DELAY_P50_US / 1000:g} ms")
    return problems


def bundle_beats(path: str) -> tuple[str, list[int]]:
    """('track vN', beat times in us) of a stored bundle ('', []) if there is none."""
    if not os.path.exists(path):
        return "", []
    try:
        with open(path, "rb") as f:
            info = bundle_reader.inspect(f, os.path.getsize(path))
            cursor = bundle_reader.BeatCursor(f, info)
            times = [cursor.next_time_us() for _ in range(info.beat_count)]
    except ProtocolError:
        return "", []
    return f"{info.track_id} v{info.bundle_version}", [t for t in times if t is not None]


def read_led_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a power cut
    return out


def _line_errors(sim_dev: SimDevice, witness: BrokerWitness | None, lines: list[dict],
                 beats: list[int]) -> list[int | None]:
    """Each LED line's true error (us), None where it cannot be scored."""
    per_line: list[int | None] = []
    for line in lines:
        idx = line.get("beat_index")
        start = witness.start_for(sim_dev.id, line["true_time_us"]) if witness else None
        if start is None or not isinstance(idx, int) or not 0 <= idx < len(beats):
            per_line.append(None)  # e.g. a beat fired after a stop the device had not got yet
            continue
        per_line.append(line["true_time_us"] - (start + beats[idx]))
    return per_line


def scored_beats(devices: Sequence[SimDevice], witness: BrokerWitness | None
                 ) -> tuple[list[int], list[int | None]]:
    """(true error, delay) in us of every beat of the devices that can be scored, pooled
    for ``timing_problems`` (it judges a fleet's beats together)."""
    errors: list[int] = []
    delays: list[int | None] = []
    for sim_dev in devices:
        _, beats = bundle_beats(os.path.join(sim_dev.folder, "bundles", "active.gcb"))
        lines = read_led_log(sim_dev.led_log)
        for e, line in zip(_line_errors(sim_dev, witness, lines, beats), lines, strict=True):
            if e is not None:
                errors.append(e)
                delays.append(line.get("late_us"))
    return errors, delays


def device_report(sim_dev: SimDevice, witness: BrokerWitness | None) -> tuple[dict, list[dict]]:
    """One device's figures (errors in ms) and its LED log lines. Without a witness no
    beat can be scored (nothing says which play command was in force)."""
    label, beats = bundle_beats(os.path.join(sim_dev.folder, "bundles", "active.gcb"))
    lines = read_led_log(sim_dev.led_log)
    per_line = _line_errors(sim_dev, witness, lines, beats)
    errors = [e for e in per_line if e is not None]
    delays = [line["late_us"] for e, line in zip(per_line, lines, strict=True)
              if e is not None and line.get("late_us") is not None]
    aims = [e - line["late_us"] for e, line in zip(per_line, lines, strict=True)
            if e is not None and line.get("late_us") is not None]
    frames = 0
    try:
        with open(os.path.join(sim_dev.folder, "frames.count")) as f:
            frames = int(f.read() or 0)
    except (OSError, ValueError):
        pass
    tele = witness.telemetry.get(sim_dev.id) if witness else None
    drift_us = tele.drift_us if tele else []
    # The device reports one drift sample per beat it fired, in firing order, each once
    # the clock estimate has hindsight (firmware/telemetry.py): the samples so far are the
    # first beats, and its claims can be checked beat by beat against the bench's
    # measurement. More samples than beats cannot be paired.
    gaps = []
    if tele and len(tele.drift_us) <= len(lines):
        gaps = [abs(d - e) for d, e in zip(tele.drift_us, per_line[:len(tele.drift_us)],
                                           strict=True)
                if e is not None]
    report = {
        "id": sim_dev.id,
        "active_bundle": label or None,
        "frames": frames,
        "beats": len(lines),
        "beats_scored": len(errors),
        **drift_stats.summary_ms(errors, "true_error"),
        "true_error_mean_ms": round(float(np.mean(errors)) / 1000, 4) if errors else None,
        # the error without the host's delay, and that delay (timing_problems)
        **drift_stats.summary_ms(aims, "aim_error"),
        "delay_p50_ms": drift_stats.percentile_ms(delays, 50),
        "delay_max_ms": drift_stats.percentile_ms(delays, 100),
        "held_up_beats": sum(d > HELD_UP_US for d in delays),
        "drift_p50_ms": drift_stats.percentile_ms(drift_us, 50),
        "drift_p99_ms": drift_stats.percentile_ms(drift_us, 99),
        "drift_vs_true_p99_ms": drift_stats.percentile_ms(gaps, 99),
        "drift_vs_true_max_ms": drift_stats.percentile_ms(gaps, 100),
        "telemetry_batches": len(tele.batches) if tele else 0,
        "telemetry_lost": tele.lost if tele else 0,
        "telemetry_duplicates": tele.duplicates if tele else 0,
        "drift_samples": len(drift_us),
        "skew_ppm": sim_dev.skew_ppm,
        "boots": sim_dev.boots,
    }
    return report, lines


def write_report(sim: Simulator, witness: BrokerWitness | None, path: str) -> dict:
    """Every device's report into ``path`` (JSON, replaced atomically), and the devices' LED
    logs merged into one JSON-lines file in the state folder."""
    merged = os.path.join(sim.state_dir, "leds.jsonl")
    devices = []
    with open(merged, "w") as out:
        for dev in sim.devices:
            rep, lines = device_report(dev, witness)
            devices.append(rep)
            for line in lines:
                out.write(json.dumps(line) + "\n")
    report = {"devices": devices, "led_log": merged, "state_dir": sim.state_dir}
    write_atomically(path, json.dumps(report, indent=1) + "\n")
    return report
