"""``gridcast stop``: stop playing, now or at an instant of the agent's clock."""

from __future__ import annotations

import argparse
import asyncio

from gridcast.host.cli.options import add_target_arguments, signer, start_time_us

HELP = "stop playing"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("--at", help="Unix seconds or +SECONDS (default: now)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_stop(args))


async def _stop(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.transport import open_transport

    async with open_transport(args.broker, signer=signer(args)) as transport:
        await playback.stop(transport, args.to or None, start_time_us(args.at) or 0)
    return 0
