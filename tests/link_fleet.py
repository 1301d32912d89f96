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
"beat_index", "true_time_us"}`` (the simulator stamps frames with CLOCK_REALTIME).
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
    """|LED frame - the peer's beat| over every device, and beats a device missed."""
    first_sent = next((r["at_us"] for r in session.follow if r["kind"] == "sent"
                       and r["beats"]), None)
    left = next((r["at_us"] for r in session.peer if r["kind"] == "peer_left"), None)
    if first_sent is None or left is None:
        return {"led_beats": 0}
    beats = [r for r in session.peer if r["kind"] == "beat"
             and first_sent + _FIRST_MESSAGE_US <= r["at_us"] <= left]
    frames: dict[str, list[int]] = {}
    for r in session.follow:
        if r["kind"] == "led":
            frames.setdefault(r["device"], []).append(r["true_time_us"])
    errors_ms: list[float] = []
    per_device = {}
    for device, times in sorted(frames.items()):
        times.sort()
        device_errors, missed = [], 0
        for beat in beats:
            half_beat_us = 30e6 / beat["bpm"]
            i = bisect.bisect_left(times, beat["at_us"])
            near = [t for t in times[max(0, i - 1):i + 1] if abs(t - beat["at_us"]) < half_beat_us]
            if not near:
                missed += 1
                continue
            nearest = min(near, key=lambda t: abs(t - beat["at_us"]))
            device_errors.append(abs(nearest - beat["at_us"]) / 1000)
        errors_ms += device_errors
        per_device[device] = {"beats": len(device_errors), "missed": missed,
                              "p99_abs_ms": round(percentile(device_errors, 99), 3)
                              if device_errors else None}
    return {
        "devices": len(frames),
        "led_beats": len(errors_ms),
        "led_missed": sum(d["missed"] for d in per_device.values()),
        "led_p50_abs_ms": round(statistics.median(errors_ms), 3) if errors_ms else None,
        "led_p99_abs_ms": round(percentile(errors_ms, 99), 3) if errors_ms else None,
        "led_max_abs_ms": round(max(errors_ms), 3) if errors_ms else None,
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
            if not Path(dev.led_log).exists():
                continue
            for line in Path(dev.led_log).read_text().splitlines():
                if line.strip():
                    frame = json.loads(line)
                    out.write(json.dumps({"kind": "led", "device": dev.id,
                                          "beat_index": frame["beat_index"],
                                          "true_time_us": frame["true_time_us"]}) + "\n")


if __name__ == "__main__":
    main()
