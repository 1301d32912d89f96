"""``gridcast devices``: the fleet and its drift, as the agent daemon sees it."""

from __future__ import annotations

import argparse

from gridcast.host.cli import output
from gridcast.host.cli.device_table import device_table
from gridcast.host.cli.options import add_agent_client_arguments, agent_client

HELP = "list devices and their drift (asks the agent)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_agent_client_arguments(p)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    client = agent_client(args)
    found = client.get("/api/devices")
    assert isinstance(found, list)
    if args.json:
        output.print_json(found)
    else:
        output.out.print(device_table(found))
    return 0
