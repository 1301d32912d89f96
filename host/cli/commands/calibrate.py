"""``gridcast calibrate``: measure the room's latency with a microphone and store it in the
agent's config (``room_latency_ms``, which the player adds to PortAudio's DAC time)."""

from __future__ import annotations

import argparse

HELP = "measure the room latency (speaker to microphone) and store it in the agent config"
DEFAULT_CONFIG = "gridcast-agent.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", help="output device (sounddevice index or name; default: the "
                   "system default)")
    p.add_argument("--input", help="input device: the microphone, where the audience is "
                   "(default: the system default)")
    p.add_argument("--repeats", type=int, default=5,
                   help="click bursts to measure; they must agree (default 5)")
    p.add_argument("--tolerance-ms", type=float, default=1.0,
                   help="largest spread of the repeats that is accepted (default 1.0)")
    p.add_argument("--max-latency-ms", type=float, default=500.0,
                   help="the longest room latency searched for (default 500)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"the agent's TOML config to store room_latency_ms in (its [agent] "
                   f"table; created if missing; default {DEFAULT_CONFIG})")
    p.add_argument("--dry-run", action="store_true", help="measure only, store nothing")
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")


def _device(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def run(args: argparse.Namespace) -> int:
    from gridcast.agent.calibration import measure_room, store_room_latency
    from gridcast.host.cli import output

    result = measure_room(_device(args.output), _device(args.input), repeats=args.repeats,
                          tolerance_ms=args.tolerance_ms, max_latency_ms=args.max_latency_ms)
    stored = None if args.dry_run else args.config
    if stored:
        store_room_latency(stored, result)
    if args.json:
        output.print_json({**result.to_dict(), "stored_in": stored})
        return 0
    repeats = ", ".join(f"{v:.3f}" for v in result.repeats_ms)
    output.info(f"output {result.output_device!r}, input {result.input_device!r}, "
                f"{result.rate_hz} Hz")
    output.info(f"round trip {result.round_trip_ms:.3f} ms = PortAudio output "
                f"{result.output_latency_ms:.3f} + room {result.room_latency_ms:.3f} + "
                f"PortAudio input {result.input_latency_ms:.3f}")
    output.info(f"room latency per repeat: {repeats} ms (spread {result.spread_ms:.3f} ms)")
    where = (f"stored in {stored} ([agent] room_latency_ms; the daemon's player applies it: "
             f"gridcast agent --config {stored})" if stored else "not stored (--dry-run)")
    output.info(f"room latency {result.room_latency_ms:.3f} ms: {where}")
    return 0
