"""Simulated devices that require sealed commands, as provisioned ones do, and what the
scenarios on them check (docs/protocol.md 11)."""

from __future__ import annotations

import itertools
import json

from gridcast.agent import device_files
from gridcast.agent.simulation.devices import Simulator
from gridcast.agent.simulation.led_report import read_led_log
from gridcast.protocol import command_auth

AUTH_REASONS = (3, 7, 8, 15, 22, 23, 24, 25)  # what a refused forgery is counted as


def sealed_simulator(n: int, broker: str, site_key: bytes, state_dir: str,
                     **options: object) -> Simulator:
    """``n`` devices (not started) whose config.json holds a ``command_key`` derived from
    ``site_key``, as ``gridcast provision`` writes it: they take only sealed commands.
    ``broker``: HOST:PORT, or a URL (``mqtts://HOST:PORT?ca=FILE``: over TLS)."""
    sim = Simulator(n, broker, site_key, state_dir, **options)  # type: ignore[arg-type]
    for dev in sim.devices:
        cfg = json.loads(device_files.config_json(dev.id, site_key, dev.broker, sim.led_count,
                                                  serial=False, ca_pem=dev.ca_pem))
        cfg["command_key"] = command_auth.device_key(site_key, dev.id).hex()
        dev.config_text = json.dumps(cfg)
    return sim


def beat_gaps(led_log: str, since_true_us: int = 0) -> list[tuple[int, int]]:
    """(beat shown, next beat shown) wherever the LED log does not go on to the next beat
    number: a beat skipped, or the map moved (a seek, a new play). For a scenario with one
    play, every beat shown once and in order gives []."""
    idx = [line["beat_index"] for line in read_led_log(led_log)
           if line.get("beat_index") is not None and line["true_time_us"] >= since_true_us]
    return [(a, b) for a, b in itertools.pairwise(idx) if b != a + 1]
