"""``gridcast flash``: MicroPython (optional, esptool) and the gridcast firmware (mpremote)."""

from __future__ import annotations

import argparse
import shutil

from gridcast.host.cli import output
from gridcast.protocol import keys
from gridcast.protocol.errors import GridcastError
from gridcast.protocol.topics import valid_device_id

HELP = "put MicroPython (optional) and the gridcast firmware on a board"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial port of the board (or a pty)")
    p.add_argument("--image", help="MicroPython .bin to write first (esptool)")
    p.add_argument("--board", default="esp32s3", choices=("esp32s3", "sim"))
    p.add_argument("--device-id", help="the device's name in topics")
    p.add_argument("--key-file", help="bundle key the device will trust")
    p.add_argument("--config", help="a config.json from `gridcast provision` (id, key, "
                   "broker credentials) instead of --device-id / --key-file / --broker")
    p.add_argument("--broker", help="HOST:PORT of the MQTT broker (default: serial only)")
    p.add_argument("--led-count", type=int, default=16)
    p.add_argument("--led-pin", type=int, default=48)


def _provisioned(args: argparse.Namespace) -> tuple[str, bytes, str]:
    """(device id, key, config text) from --config (gridcast provision's output)."""
    from gridcast.firmware import config as device_config
    from gridcast.protocol.errors import ProtocolError

    try:
        with open(args.config, encoding="utf-8") as f:
            text = f.read()
        cfg = device_config.parse(text)
    except OSError as exc:
        raise GridcastError(f"--config {args.config}: cannot read ({exc.strerror})") from exc
    except ProtocolError as exc:
        raise GridcastError(f"--config {args.config}: {exc}") from exc
    return cfg["device_id"], cfg["key"], text


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from gridcast.agent import flashing

    config_text = None
    if args.config:
        args.device_id, key, config_text = _provisioned(args)
        args.broker = args.broker or ""
    else:
        if not args.device_id or not args.key_file:
            raise GridcastError("give --device-id and --key-file, or --config FILE from "
                                "gridcast provision")
        key = keys.load(args.key_file)
    if not valid_device_id(args.device_id):
        raise GridcastError(f"--device-id {args.device_id!r}: use 1-32 of A-Z a-z 0-9 _ -")
    if args.image:
        output.info(f"writing MicroPython {args.image} to {args.port} with esptool")
        flashing.write_image(args.port, args.image, on_line=lambda t: None)
    folder = flashing.stage(args.board, args.device_id, key, args.broker or "",
                            args.led_count, args.led_pin, config_text)
    try:
        expected = flashing.manifest(folder)
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=output.err, transient=True,
                      disable=not output.err.is_terminal) as bar:
            task = bar.add_task(f"copying to {args.port}", total=len(expected))
            flashing.copy(args.port, folder, on_file=lambda _t: bar.advance(task))
        bad = flashing.verify(args.port, expected)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if bad:
        raise GridcastError(f"{args.port}: {len(bad)} files differ after copying "
                            f"(first: {bad[0]}); flash again")
    output.info(f"{args.port}: {len(expected)} files written and verified; device "
                f"{args.device_id!r}, key {keys.key_id(key)}"
                + (f", broker {args.broker}" if args.broker else ", serial only"))
    return 0
