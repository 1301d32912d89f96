"""``gridcast agent``: run the daemon (collector, registry, API, dashboard) until stopped."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from gridcast.host.cli.options import TOKEN_FILE
from gridcast.protocol.errors import GridcastError

HELP = "run the agent daemon: collector, registry, API, dashboard"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file ([agent] table; docs/agent.md); GRIDCAST_* "
                   "variables override it")
    p.add_argument("--token-file", default=TOKEN_FILE,
                   help="where the API token is kept when the config sets none")


def run(args: argparse.Namespace) -> int:
    from gridcast.agent import config as agent_config
    from gridcast.agent.daemon import serve, setup_logging

    cfg = agent_config.load(args.config)
    setup_logging(cfg.log_level)
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    try:
        import uvloop  # a faster event loop: about twice the requests per second

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(serve(cfg, args.token_file))
    except OSError as exc:
        raise GridcastError(str(exc)) from exc
    return 0
