"""``gridcast light-offset``: show or set a device's light offset (kept by the agent, held by
the device; docs/protocol.md section 9)."""

from __future__ import annotations

import argparse
import urllib.parse

from gridcast.host.cli import output
from gridcast.host.cli.options import add_agent_client_arguments, agent_client
from gridcast.protocol.errors import GridcastError

HELP = "show or set a device's light offset in ms (a long LED chain, a projector's delay)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", help="the device id")
    p.add_argument("ms", nargs="?", type=float,
                   help="the offset in ms: how long after the LED write the light is seen "
                   "(positive: the device lights that much earlier); omit to show it")
    p.add_argument("--clear", action="store_true",
                   help="stop keeping an offset for the device (it keeps what it holds)")
    add_agent_client_arguments(p)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.clear and args.ms is not None:
        raise GridcastError("give an offset in ms or --clear, not both")
    client = agent_client(args)
    path = f"/api/devices/{urllib.parse.quote(args.device, safe='')}/light_offset"
    if args.ms is None and not args.clear:
        state = client.get(path)
    else:
        state = client.post(path, {"light_offset_ms": None if args.clear else args.ms})
    if args.json:
        output.print_json(state)
        return 0
    kept = state["light_offset_ms"]
    held = state["reported_light_offset_ms"]
    line = (f"{state['device']}: kept {'none' if kept is None else f'{kept:g} ms'}, "
            f"device reports {'nothing yet' if held is None else f'{held:g} ms'}")
    if "sent" in state:
        line += ("; sent" if state["sent"] else
                 "; sent when the device is online" if kept is not None and kept != held
                 else "")
    output.info(line)
    return 0
