"""The agent's HTTP client against a small real HTTP server: answers, and the one-line
errors a user sees (what went wrong, at which URL, how to fix it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gridcast.agent.broker import free_port
from gridcast.agent.client import AgentClient, AgentError, find_token

TOKEN = "secret-token-for-the-client-test"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/api/devices":
            self._send(200, b'[{"id": "dev-a"}]')
        elif self.path == "/metrics":
            self._send(200, b"gridcast_devices_online 1.0\n", "text/plain")
        else:
            self._send(404, b'{"error": "no such thing"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b'{"error": "missing or wrong bearer token"}')
            return
        self._send(200, json.dumps({"got": json.loads(body),
                                    "type": self.headers["Content-Type"]}).encode())


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_answers_json_text_and_any_status(server):
    client = AgentClient(server)
    assert client.get("/api/devices") == [{"id": "dev-a"}]
    assert client.request("/metrics").data.startswith("gridcast_devices_online")
    answer = client.request("/nope")
    assert (answer.status, answer.ok, answer.data) == (404, False, {"error": "no such thing"})
    with pytest.raises(AgentError, match="404 no such thing") as err:
        client.get("/nope")
    assert err.value.status == 404 and str(err.value).startswith(f"agent {server.rstrip('/')}:")


def test_post_sends_json_and_the_token(server):
    got = AgentClient(server, TOKEN).post("/api/deployments", {"canary": 2})
    assert got == {"got": {"canary": 2}, "type": "application/json"}


@pytest.mark.parametrize(("token", "hint"), [(None, "no token sent"), ("wrong", "wrong token")])
def test_401_says_which_option_fixes_it(server, token, hint):
    with pytest.raises(AgentError) as err:
        AgentClient(server, token).post("/api/deployments", {})
    text = str(err.value)
    assert err.value.status == 401 and hint in text and "--token or --token-file" in text
    assert "\n" not in text


def test_unreachable_names_the_url_and_how_to_start_the_agent():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AgentError) as err:
        AgentClient(url, timeout_s=2).get("/api/devices")
    assert err.value.status is None
    assert str(err.value).startswith(f"agent {url} is not reachable (")
    assert "start it with `gridcast agent`" in str(err.value)


def test_token_from_argument_environment_or_file(tmp_path, monkeypatch):
    path = tmp_path / "token"
    monkeypatch.delenv("GRIDCAST_TOKEN", raising=False)
    assert find_token(None, str(path)) is None
    path.write_text("from-file\n")
    assert find_token(None, str(path)) == "from-file"
    monkeypatch.setenv("GRIDCAST_TOKEN", "from-env")
    assert find_token(None, str(path)) == "from-env"
    assert find_token("given", str(path)) == "given"
