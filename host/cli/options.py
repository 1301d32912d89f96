"""Option values several commands share, turned into what the code needs.

``--broker mqtt://HOST:PORT``, ``--at`` (a start time), and the daemon's address and
token (``--agent``, ``--token``, ``--token-file``). Errors name the option and say what
to give instead.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING

from gridcast.agent.client import DEFAULT_URL, TOKEN_FILE, AgentClient, find_token
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.command_signer import CommandSigner

KEY_FILE_ENV = "GRIDCAST_KEY_FILE"  # agent/command_signer.py reads the same variable


def broker_host_port(url: str) -> tuple[str, int]:
    """``mqtt://HOST:PORT`` (port 1883 by default) or ``mqtts://HOST:PORT?ca=CA_FILE`` (8883)
    -> (host, port); a clear line for anything else."""
    from gridcast.agent import broker_url

    address = broker_url.parse(url, option="--broker")
    return address.host, address.port


def add_target_arguments(p: argparse.ArgumentParser, key_file: bool = True) -> None:
    """``--broker`` (required) and ``--to ID...``: which devices a playback command reaches;
    with ``key_file``, ``--key-file``: the site key that seals the commands."""
    p.add_argument("--broker", required=True,
                   help="mqtt://HOST:PORT, or mqtts://HOST:PORT?ca=CA_FILE (provisioned)")
    p.add_argument("--to", nargs="+", metavar="ID", help="devices (default: all)")
    if key_file:
        p.add_argument("--key-file", default=os.environ.get(KEY_FILE_ENV),
                       help="the site key (gridcast keygen): seals the commands, which "
                       "provisioned devices require, and signs the bundles of audio inputs "
                       f"(default ${KEY_FILE_ENV})")


def signer(args: argparse.Namespace) -> CommandSigner | None:
    """The command signer of ``--key-file`` (None without one: commands go out unsealed,
    which only devices that were never provisioned take)."""
    from gridcast.agent.command_signer import CommandSigner
    from gridcast.protocol import keys

    path = getattr(args, "key_file", None)
    return CommandSigner(keys.load(path)) if path else None


def start_time_us(text: str | None) -> int | None:
    """``--at``: Unix seconds, or ``+SECONDS`` from now -> Unix microseconds (None: not given)."""
    if text is None:
        return None
    try:
        if text.startswith("+"):
            return int((time.time() + float(text[1:])) * 1e6)
        return int(float(text) * 1e6)
    except ValueError as exc:
        raise GridcastError(f"--at {text!r}: give Unix seconds or +SECONDS from now") from exc


def add_agent_client_arguments(p: argparse.ArgumentParser) -> None:
    """``--agent URL``, ``--token``, ``--token-file``: how a command reaches the daemon."""
    p.add_argument("--agent", default=DEFAULT_URL, help="the daemon's URL")
    p.add_argument("--token", help="API token (default: $GRIDCAST_TOKEN or --token-file)")
    p.add_argument("--token-file", default=TOKEN_FILE)


def agent_client(args: argparse.Namespace) -> AgentClient:
    """The daemon at --agent, with the token from --token, $GRIDCAST_TOKEN or --token-file."""
    return AgentClient(args.agent, find_token(getattr(args, "token", None),
                                              getattr(args, "token_file", TOKEN_FILE)))
