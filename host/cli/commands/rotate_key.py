"""``gridcast rotate-key``: roll a new site key out to the devices with no dark moment
(docs/protocol.md section 11).

Without ``--retire`` the devices take the new key beside the old one and every sender
may go on with either: replace the agent's ``key_file`` (and GRIDCAST_KEY_FILE) with
the new key, restart it, then run again with ``--retire`` to make the devices drop the
old key.
"""

from __future__ import annotations

import argparse
import asyncio

from gridcast.host.cli import output
from gridcast.host.cli.options import add_target_arguments

HELP = "install a new site key on the devices beside the old one, then retire the old"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p, key_file=False)
    p.add_argument("--key-file", required=True, help="the site key the devices hold now")
    p.add_argument("--new-key-file", required=True, help="the next site key (gridcast keygen)")
    p.add_argument("--retire", action="store_true",
                   help="then make the devices drop every key but the new one")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds each step may take (default 10)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_rotate(args))


async def _rotate(args: argparse.Namespace) -> int:
    from gridcast.agent import key_rotation
    from gridcast.agent.command_signer import CommandSigner
    from gridcast.agent.transport import open_transport
    from gridcast.protocol import keys

    old, new = keys.load(args.key_file), keys.load(args.new_key_file)
    async with open_transport(args.broker, signer=CommandSigner(old)) as transport:
        ids = list(args.to or await transport.discover())
        if not ids:
            output.info("no device online: nothing to rotate")
            return 1
        await transport.wait_online(ids, timeout_s=args.timeout)
        done = await key_rotation.rotate(transport, ids, new, retire=args.retire,
                                         timeout_s=args.timeout)
    output.info(f"site key {keys.key_id(new)} installed on {len(ids)} devices in "
                f"{done.installed_s:.2f} s" + (f", the old key retired in {done.retired_s:.2f} s"
                                                if args.retire else
                                                "; they accept both keys until --retire"))
    return 0
