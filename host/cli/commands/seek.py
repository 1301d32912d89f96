"""``gridcast seek``: jump to a position in the playing track at an agent-clock instant."""

from __future__ import annotations

import argparse
import asyncio
import time

from gridcast.host.cli.options import add_target_arguments, signer, start_time_us

HELP = "jump to a position in the playing track"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("position", type=float, help="seconds into the track")
    add_target_arguments(p)
    p.add_argument("--at", help="when: Unix seconds or +SECONDS (default: in 0.5 s)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_seek(args))


async def _seek(args: argparse.Namespace) -> int:
    from gridcast.agent import playback
    from gridcast.agent.transport import open_transport

    at = start_time_us(args.at) or int((time.time() + 0.5) * 1e6)
    async with open_transport(args.broker, signer=signer(args)) as transport:
        await playback.seek(transport, args.to or None, int(args.position * 1e6), at)
    return 0
