"""``gridcast agent``: the long-running daemon (core + HTTP/WebSocket API), with JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time

from aiohttp import web

from gridcast.agent.api import Api
from gridcast.agent.config import AgentConfig
from gridcast.agent.core import AgentCore

log = logging.getLogger("gridcast.agent")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: easy to ship, grep and parse."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def resolve_token(config: AgentConfig, token_file: str) -> str:
    """The configured token, else the one in token_file, else a new one written there (0600):
    local CLI commands read it, so writes work out of the box on this machine."""
    if config.token:
        return config.token
    if os.path.exists(token_file):
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
        if token:
            return token
    token = secrets.token_hex(16)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("wrote a new API token to %s", token_file)
    return token


async def serve(config: AgentConfig, token_file: str = "gridcast-agent.token",
                stop: asyncio.Event | None = None,
                started: asyncio.Event | None = None,
                core: AgentCore | None = None) -> None:
    """Run the daemon until ``stop`` is set (or SIGINT/SIGTERM). ``core``: one built by
    the caller (embedding, tests), else one from ``config``."""
    token = resolve_token(config, token_file)
    core = core or AgentCore(config)
    await core.start(retry=True)
    api = Api(core, token)
    from gridcast.agent import https

    try:
        tls = https.server_context(config)  # HTTPS beyond localhost (agent/https.py)
    except https.HttpsError as exc:
        await core.stop()
        raise OSError(str(exc)) from exc
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.bind, config.port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await core.stop()
        await runner.cleanup()
        raise OSError(f"cannot listen on {config.bind}:{config.port} ({exc.strerror})") from exc
    log.info("agent listening on %s://%s:%d (dashboard at /, metrics at /metrics)",
             "https" if tls else "http", config.bind, config.port)
    from gridcast.agent import broker_log

    log_path = broker_log.path_for(config)  # devices that fail TLS reach only the broker
    watcher = broker_log.BrokerLogWatcher(log_path).start() if log_path else None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if started:
        started.set()
    await stop.wait()
    log.info("stopping")
    started_stop = time.monotonic()
    await runner.cleanup()
    if watcher is not None:
        watcher.stop()
    await core.stop()
    core.store.close()
    log.info("stopped in %.1f s", time.monotonic() - started_stop)
