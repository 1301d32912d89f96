"""Option values several commands share, turned into what the code needs.

``--broker mqtt://HOST:PORT``, ``--at`` (a start time), and the daemon's address and
token (``--agent``, ``--token``, ``--token-file``). Errors name the option and say what
to give instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from gridcast.protocol.errors import GridcastError

TOKEN_FILE = "gridcast-agent.token"
DEFAULT_AGENT_URL = "http://127.0.0.1:8750"


def broker_host_port(url: str) -> tuple[str, int]:
    """``mqtt://HOST:PORT`` -> (host, port); the port defaults to 1883."""
    parsed = urlparse(url)
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise GridcastError(f"--broker {url!r}: expected mqtt://HOST:PORT")
    return parsed.hostname, parsed.port or 1883


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
    p.add_argument("--agent", default=DEFAULT_AGENT_URL, help="the daemon's URL")
    p.add_argument("--token", help="API token (default: $GRIDCAST_TOKEN or --token-file)")
    p.add_argument("--token-file", default=TOKEN_FILE)


def token(args: argparse.Namespace) -> str | None:
    """The API token: --token, else $GRIDCAST_TOKEN, else the --token-file's content."""
    if getattr(args, "token", None):
        return str(args.token)
    if os.environ.get("GRIDCAST_TOKEN"):
        return os.environ["GRIDCAST_TOKEN"]
    path = getattr(args, "token_file", TOKEN_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return None


def api_request(args: argparse.Namespace, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> object:
    """One call to the daemon; GridcastError with its message when it says no."""
    url = args.agent.rstrip("/") + path
    headers = {"Content-Type": content_type} if body is not None else {}
    api_token = token(args)
    if api_token:
        headers["Authorization"] = f"Bearer {api_token}"
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise GridcastError(f"agent {args.agent}: {exc.code} {message}") from exc
    except urllib.error.URLError as exc:
        raise GridcastError(f"agent {args.agent} is not reachable ({exc.reason}); is "
                            "`gridcast agent` running?") from exc
