"""``gridcast flash``: MicroPython (optional, esptool) and the gridcast firmware (mpremote)."""

from __future__ import annotations

import argparse
import shutil

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from gridcast.agent import flashing
from gridcast.host import console
from gridcast.protocol import keys
from gridcast.protocol.errors import GridcastError
from gridcast.protocol.topics import valid_device_id


def run(args: argparse.Namespace) -> int:
    if not valid_device_id(args.device_id):
        raise GridcastError(f"--device-id {args.device_id!r}: use 1-32 of A-Z a-z 0-9 _ -")
    key = keys.load(args.key_file)
    if args.image:
        console.info(f"writing MicroPython {args.image} to {args.port} with esptool")
        flashing.write_image(args.port, args.image, on_line=lambda t: None)
    folder = flashing.stage(args.board, args.device_id, key, args.broker or "",
                            args.led_count, args.led_pin)
    try:
        expected = flashing.manifest(folder)
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console.err, transient=True,
                      disable=not console.err.is_terminal) as bar:
            task = bar.add_task(f"copying to {args.port}", total=len(expected))
            flashing.copy(args.port, folder, on_file=lambda _t: bar.advance(task))
        bad = flashing.verify(args.port, expected)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if bad:
        raise GridcastError(f"{args.port}: {len(bad)} files differ after copying "
                            f"(first: {bad[0]}); flash again")
    console.info(f"{args.port}: {len(expected)} files written and verified; device "
                 f"{args.device_id!r}, key {keys.key_id(key)}"
                 + (f", broker {args.broker}" if args.broker else ", serial only"))
    return 0
