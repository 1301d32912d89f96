"""gridcast's side of a Link session with simulated devices: |LED beat - Link beat|.

Run by tests/link_run.py (``run_session(..., devices=N)``, ``bench/link.py --devices N``)
inside the loopback-only namespace, as one process that holds everything gridcast
would run at a show:

- a mosquitto broker on the namespace's 127.0.0.1, and ``--devices`` simulated
  devices (the real firmware in the MicroPython unix port; clocks skewed 0, +100 and
  -100 ppm), kept in sync by the agent's clock-sync responder;
- after ``--warmup-s`` (clock sync converges), LinkBeatSource joins the session and the
  live sender sends the devices the coming beats over MQTT, until the peer has left
  and the coast is over.

It writes the same records as the ``follow`` program (start, state, sent), then every
LED frame each device showed for a live beat: ``{"kind": "led", "device",
"beat_index", "true_time_us", "late_us"}`` (the simulator stamps frames with
CLOCK_REALTIME; ``late_us`` is how long after the tick the firmware aimed at the frame
showed, what this machine's scheduler held the device up: docs/firmware.md).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import TextIO

from gridcast.agent.simulation.led_report import HELD_UP_US, read_led_log, timing_problems
from tests.link_run import FollowRecorder, Session, percentile

# The first message needs this long to reach the devices: earlier beats are not counted.
_FIRST_MESSAGE_US = 100_000


async def _follow(args: argparse.Namespace, broker_url: str, ids: list[str],
                  out: TextIO) -> None:
    from gridcast.agent.clock import now_us
    from gridcast.agent.live_sender import send_update
    from gridcast.agent.sync_responder import SyncResponder
    from gridcast.agent.transport import open_transport

    def emit(**record: object) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    async with open_transport(broker_url) as transport:
        responder = SyncResponder(transport)
        responder.start()
        await transport.wait_online(ids, timeout_s=60)
        await asyncio.sleep(args.warmup_s)
        recorder = FollowRecorder(args.quantum, args.coast_s, args.horizon_ms, emit)
        end = time.monotonic() + args.seconds + args.coast_s + 15
        while time.monotonic() < end and not recorder.done(args.seconds):
            update = recorder.step(now_us())
            if update is not None:
                await send_update(transport, ids, update)
            await asyncio.sleep(args.poll_ms / 1000)
        await send_update(transport, ids, recorder.sender.cancel())
        recorder.close(now_us())
        await asyncio.sleep(1.0)  # the last frames are written
        await responder.stop()


def analyse_leds(session: Session) -> dict:
    """|LED frame - the peer's beat| over every device, and beats a device missed; and
    the same split as the hil tests: each frame's aim (its error less the delay the host
    added) and the frames held up, judged by ``led_report.timing_problems`` at 1 ms."""
    first_sent = next((r["at_us"] for r in session.follow if r["kind"] == "sent"
                       and r["beats"]), None)
    left = next((r["at_us"] for r in session.peer if r["kind"] == "peer_left"), None)
    if first_sent is None or left is None:
        return {"led_beats": 0}
    beats = [r for r in session.peer if r["kind"] == "beat"
             and first_sent + _FIRST_MESSAGE_US <= r["at_us"] <= left]
    frames: dict[str, list[tuple[int, int | None]]] = {}
    for r in session.follow:
        if r["kind"] == "led":
            frames.setdefault(r["device"], []).append((r["true_time_us"], r.get("late_us")))
    errors_ms: list[float] = []
    signed_us: list[int] = []  # every matched frame's error, and its delay
    delays_us: list[int | None] = []
    per_device = {}
    for device, shown in sorted(frames.items()):
        shown.sort(key=lambda frame: frame[0])
        times = [t for t, _ in shown]
        device_errors, device_aims, missed = [], [], 0
        for beat in beats:
            half_beat_us = 30e6 / beat["bpm"]
            i = bisect.bisect_left(times, beat["at_us"])
            near = [j for j in range(max(0, i - 1), min(i + 1, len(times)))
                    if abs(times[j] - beat["at_us"]) < half_beat_us]
            if not near:
                missed += 1
                continue
            j = min(near, key=lambda j: abs(times[j] - beat["at_us"]))
            error, late = times[j] - beat["at_us"], shown[j][1]
            device_errors.append(abs(error) / 1000)
            signed_us.append(error)
            delays_us.append(late)
            if late is not None:
                device_aims.append(abs(error - late) / 1000)
        errors_ms += device_errors
        per_device[device] = {"beats": len(device_errors), "missed": missed,
                              "p99_abs_ms": round(percentile(device_errors, 99), 3)
                              if device_errors else None,
                              "aim_p99_abs_ms": round(percentile(device_aims, 99), 3)
                              if device_aims else None}
    known = [(e, d) for e, d in zip(signed_us, delays_us, strict=True) if d is not None]
    aims_ms = [abs(e - d) / 1000 for e, d in known]
    return {
        "devices": len(frames),
        "led_beats": len(errors_ms),
        "led_missed": sum(d["missed"] for d in per_device.values()),
        "led_p50_abs_ms": round(statistics.median(errors_ms), 3) if errors_ms else None,
        "led_p99_abs_ms": round(percentile(errors_ms, 99), 3) if errors_ms else None,
        "led_max_abs_ms": round(max(errors_ms), 3) if errors_ms else None,
        # what clock sync and the schedule put each frame at, apart from the host's stalls
        "led_aim_p99_abs_ms": round(percentile(aims_ms, 99), 3) if aims_ms else None,
        "led_held_up_beats": sum(d > HELD_UP_US for _, d in known),
        "led_delay_max_ms": round(max(d for _, d in known) / 1000, 3) if known else None,
        "led_timing_problems": timing_problems(signed_us, delays_us, 1.0) if signed_us else [],
        "per_device": per_device,
    }


def main() -> None:
    from gridcast.agent.broker import Mosquitto
    from gridcast.agent.simulation.devices import Simulator

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, required=True, help="the peer's time")
    parser.add_argument("--quantum", type=int, default=4)
    parser.add_argument("--coast-s", type=float, default=2.0)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--horizon-ms", type=float, default=2000.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, open(args.out, "w") as out, \
            Mosquitto(folder=str(Path(folder) / "broker")) as broker:
        sim = Simulator(args.devices, f"127.0.0.1:{broker.port}", secrets.token_bytes(32),
                        str(Path(folder) / "sim"), skews_ppm=[0, 100, -100], prefix="link")
        sim.start()
        try:
            asyncio.run(_follow(args, broker.url, [d.id for d in sim.devices], out))
        finally:
            sim.stop()
        for dev in sim.devices:
            for frame in read_led_log(dev.led_log):
                out.write(json.dumps({"kind": "led", "device": dev.id,
                                      "beat_index": frame["beat_index"],
                                      "true_time_us": frame["true_time_us"],
                                      "late_us": frame.get("late_us")}) + "\n")


if __name__ == "__main__":
    main()
