"""The one client of the agent daemon's HTTP API (the CLI, the tests and the benches).

Blocking (urllib), one call at a time: what commands and scripts need. The token is
sent as ``Authorization: Bearer``; the API wants it for writes, and for reads when
the daemon is not on loopback (docs/agent.md).

    client = AgentClient("http://127.0.0.1:8750", token)
    devices = client.get("/api/devices")            # the JSON answer, or AgentError
    answer = client.request("/api/deployments", b"{}")  # any status: answer.status, .data

Errors are ``AgentError`` (a GridcastError): one line naming the daemon's URL, what
went wrong and how to fix it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from gridcast.protocol.errors import GridcastError

DEFAULT_URL = "http://127.0.0.1:8750"
TOKEN_FILE = "gridcast-agent.token"  # where `gridcast agent` keeps a token it made
TIMEOUT_S = 10.0


class AgentError(GridcastError):
    """The daemon could not be reached (``status`` None) or said no (its HTTP status)."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: the status, and the body as JSON (or text when it is not JSON)."""

    status: int
    data: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def find_token(token: str | None = None, token_file: str = TOKEN_FILE) -> str | None:
    """The API token to send: ``token`` if given, else $GRIDCAST_TOKEN, else the content of
    ``token_file`` when it exists (the daemon writes one there), else None."""
    if token:
        return token
    if os.environ.get("GRIDCAST_TOKEN"):
        return os.environ["GRIDCAST_TOKEN"]
    if os.path.exists(token_file):
        with open(token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    return None


class AgentClient:
    """Calls to one daemon at ``url`` (scheme, host and port), with ``token`` if given."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        """The headers every call sends: the token, and the body's type when there is one."""
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> Answer:
        """GET ``path`` (with its query), or POST ``body``; any HTTP status comes back as
        an Answer. AgentError only when the daemon cannot be reached."""
        req = urllib.request.Request(
            self.url + path, data=body,
            headers=self.headers(content_type if body is not None else None),
            method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return Answer(resp.status, _decode(resp.read()))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, _decode(exc.read()))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise AgentError(self.url, f"agent {self.url} is not reachable ({reason}); is the "
                             "agent running? start it with `gridcast agent`") from exc

    def call(self, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> Any:
        """The JSON answer of a call that must succeed; AgentError saying why otherwise."""
        answer = self.request(path, body, content_type)
        if answer.ok:
            return answer.data
        message = answer.data.get("error") if isinstance(answer.data, dict) else None
        text = f"agent {self.url}: {answer.status} {message or _reason(answer.status)}"
        if answer.status == 401:
            text += ("; wrong token: pass --token or --token-file (or set $GRIDCAST_TOKEN)"
                     if self.token else "; no token sent: pass --token or --token-file "
                     "(or set $GRIDCAST_TOKEN)")
        raise AgentError(self.url, text, answer.status)

    def get(self, path: str) -> Any:
        """GET ``path``: its JSON answer."""
        return self.call(path)

    def post(self, path: str, data: object, content_type: str | None = None) -> Any:
        """POST ``data`` (bytes as they are, anything else as JSON): the JSON answer."""
        if isinstance(data, bytes):
            return self.call(path, data, content_type or "application/octet-stream")
        return self.call(path, json.dumps(data).encode(), content_type or "application/json")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
