"""``gridcast monitor``: the devices table, refreshed live from the agent daemon."""

from __future__ import annotations

import argparse
import time

from gridcast.host.cli import output
from gridcast.host.cli.device_table import device_table
from gridcast.host.cli.options import add_agent_client_arguments, agent_client

HELP = "live terminal table of devices and drift"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_agent_client_arguments(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    client = agent_client(args)
    from rich.live import Live

    with Live(console=output.out, refresh_per_second=4, screen=False) as live:
        try:
            shown = 0
            while True:
                found = client.get("/api/devices")
                assert isinstance(found, list)
                live.update(device_table(found))
                shown += 1
                if args.count and shown >= args.count:
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
    return 0
