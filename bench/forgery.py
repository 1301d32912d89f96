"""Forgery target (issue 17): 10,000 forged, replayed, reordered, altered or held-back
commands and sync answers against three simulated devices that are playing.

    .venv/bin/python bench/forgery.py [--count 10000] [--interval-ms 10] [--warmup 60]
                                      [--baseline 20] [--json]

A real mosquitto on loopback; three devices (the real firmware in the MicroPython unix
port) configured as ``gridcast provision`` configures them (a ``command_key``: only
sealed commands are taken) connect through MqttTamperProxy (hil/faults.py), which
forwards what the broker sends them and injects the forgeries of hil/forger.py, one
per device every ``--interval-ms``, eleven kinds in turn. The agent seals with the site
key, answers sync, deploys, lets the clocks settle for ``--warmup`` seconds, starts the
show, lets it play ``--baseline`` seconds unattacked, then sends a sealed no-op rate
every 0.25 s (the attacker's material) until the proxy has sent ``--count``.

Reported per device: what was injected, by kind; what the device counted as refused
(its telemetry), by reason; the beats it showed, any gap in their numbers, and the true
LED error (against the agent's real commands, seen by a broker witness the forgeries
never reach) at p50 / p99 / max, before and under the attack (the same run: a machine
loaded by others shows in both); its light offset, show and boot count afterwards.
Targets: 100 % refused, no state change, true LED error <= 1 ms. Exit status 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile

from gridcast.agent.broker import Mosquitto
from gridcast.hil.forgery_scenario import run_forgery


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--interval-ms", type=float, default=10.0,
                   help="per device, between two forgeries")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of clock sync first")
    p.add_argument("--baseline", type=float, default=20.0,
                   help="seconds of the show before the attack starts")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    # The show lasts the attack (3 devices, one forgery each per interval) and more.
    attack_s = args.count / 3 * args.interval_ms / 1000
    with tempfile.TemporaryDirectory(prefix="gridcast-forgery-") as tmp, \
            Mosquitto(folder=os.path.join(tmp, "broker")) as broker:
        result = run_forgery(broker.port, secrets.token_bytes(32), tmp, args.count,
                             args.interval_ms / 1000, args.warmup,
                             minutes=(attack_s + args.baseline + 40) / 60,
                             baseline_s=args.baseline)
    ok = result["injected"] >= args.count and result["refused"] == result["injected"]
    for dev in result["devices"]:
        ok = ok and dev["refused_reasons"] == dev["expected_reasons"] and \
            not dev["beat_gaps"] and dev["light_offset_us"] == 0 and dev["boots"] == 1 and \
            dev["under_attack"]["p99_ms"] is not None and dev["under_attack"]["p99_ms"] <= 1.0
    result["targets_met"] = ok
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['injected']} forgeries in {result['attack_s']} s, "
              f"{result['refused']} refused ({result['refused_pct']} %)")
        for dev in result["devices"]:
            print(f"{dev['id']}: injected {dev['injected']} {dev['by_kind']}")
            print(f"  refused by reason {dev['refused_reasons']}; {dev['beats']} beats, gaps "
                  f"{dev['beat_gaps']}; light offset {dev['light_offset_us']} us, "
                  f"{dev['active_track']} v{dev['bundle_version']}, boots {dev['boots']}")
            for stretch in ("before_attack", "under_attack"):
                e = dev[stretch]
                print(f"  true LED error {stretch.replace('_', ' ')}: {e['beats']} beats, "
                      f"p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms, max {e['max_ms']} ms")
        print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
