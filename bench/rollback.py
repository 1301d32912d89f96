"""What a seek back after a hand-over costs the devices: the bundle sent again, or a rollback.

    python bench/rollback.py [--devices 3] [--minutes 5] [--repeats 5] [--jitter]

Simulated devices (the firmware in the MicroPython unix port) on a local mosquitto hold
track A, then B (as after the show player's hand-over to the next track). The show
player then needs A again, at once. It can send A again (what it did before), or send
``rollback`` (agent/deploy.py), since each device's store keeps A as its previous bundle.
Each repeat measures both, from the command to the last device's answer, and
``--repeats`` sets how many. With ``--jitter`` the devices reach the broker through
hil/faults.py's proxy, 20 +- 10 ms each way (a busy Wi-Fi), instead of loopback. The
bench prints one JSON object: the bundle's size, and the median and maximum seconds for
each way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridcast.agent import deploy  # noqa: E402
from gridcast.agent.broker import Mosquitto  # noqa: E402
from gridcast.agent.simulation.devices import Simulator  # noqa: E402
from gridcast.agent.transport import open_transport  # noqa: E402
from gridcast.hil.bundles import make_bundle  # noqa: E402
from gridcast.hil.faults import Jitter, MqttJitterProxy  # noqa: E402


async def _measure(broker_url: str, ids: list[str], a: bytes, b: bytes,
                   repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"send_again_s": [], "rollback_s": []}
    async with open_transport(broker_url) as t:
        await t.wait_online(ids, timeout_s=60)
        for bundle, track in ((a, "track-a"), (b, "track-b")):
            results = await deploy.deploy(t, ids, bundle, track, 1)
            assert all(r.ok for r in results), [r.error for r in results]
        for _ in range(repeats):
            # the devices hold B, A before it: A wanted again, sent as a bundle
            started = time.monotonic()
            results = await deploy.deploy(t, ids, a, "track-a", 1)
            times["send_again_s"].append(time.monotonic() - started)
            assert all(r.ok for r in results), [r.error for r in results]
            results = await deploy.deploy(t, ids, b, "track-b", 1)  # B again, A before it
            assert all(r.ok for r in results), [r.error for r in results]
            # the same, by rollback
            started = time.monotonic()
            results = await deploy.rollback(t, ids, expect=("track-a", 1))
            times["rollback_s"].append(time.monotonic() - started)
            assert all(r.ok for r in results), [r.error for r in results]
            results = await deploy.deploy(t, ids, b, "track-b", 1)  # B again, A before it
            assert all(r.ok for r in results), [r.error for r in results]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the tracks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jitter", action="store_true",
                        help="devices behind 20 +- 10 ms of one-way delay")
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    a = make_bundle(key, args.minutes, "track-a", seed=1)
    b = make_bundle(key, args.minutes, "track-b", seed=2)
    with tempfile.TemporaryDirectory() as folder, \
            Mosquitto(folder=os.path.join(folder, "broker")) as broker:
        proxy = (MqttJitterProxy("127.0.0.1", broker.port, Jitter(10, 30), Jitter(10, 30))
                 .start() if args.jitter else None)
        port = proxy.port if proxy else broker.port
        sim = Simulator(args.devices, f"127.0.0.1:{port}", key, os.path.join(folder, "sim"),
                        prefix="rb")
        sim.start()
        try:
            times = asyncio.run(_measure(broker.url, [d.id for d in sim.devices], a, b,
                                         args.repeats))
        finally:
            sim.stop()
            if proxy:
                proxy.stop()
    print(json.dumps({
        "devices": args.devices, "bundle_bytes": len(a), "repeats": args.repeats,
        "jitter": args.jitter,
        **{f"{way}_median": round(statistics.median(v), 4) for way, v in times.items()},
        **{f"{way}_max": round(max(v), 4) for way, v in times.items()},
    }))


if __name__ == "__main__":
    main()
