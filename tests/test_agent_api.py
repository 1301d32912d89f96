"""The agent daemon over HTTP and WebSocket: a real mosquitto, the real server, fake devices
publishing status and telemetry with paho (the firmware's own telemetry is tested in hil/)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from gridcast.agent import config as agent_config
from gridcast.agent.broker import free_port
from gridcast.agent.client import AgentClient
from gridcast.agent.daemon import serve
from gridcast.protocol import keys, messages, topics
from tests.mqtt_publisher import publish_all, publisher
from tests.test_agent_collector import wait_until

TOKEN = "t0ken-for-the-tests-0123456789"


class Daemon:
    def __init__(self, cfg: agent_config.AgentConfig, token_file: str) -> None:
        self.cfg = cfg
        self.url = f"http://127.0.0.1:{cfg.port}"
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(token_file,), daemon=True)

    def _run(self, token_file: str) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            started = asyncio.Event()
            task = asyncio.ensure_future(serve(self.cfg, token_file, self.stop_event, started))
            await started.wait()
            self.ready.set()
            await task

        self.loop.run_until_complete(main())

    def __enter__(self) -> Daemon:
        self.thread.start()
        assert self.ready.wait(20), "daemon did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


def request(url: str, body: bytes | None = None, token: str | None = None,
            content_type: str = "application/json") -> tuple[int, Any]:
    """(status, JSON or text) of one call to the daemon, whatever the status."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    answer = AgentClient(base, token).request(url[len(base):], body, content_type)
    return answer.status, answer.data


@pytest.fixture
def key_path(tmp_path) -> str:
    path = str(tmp_path / "site.key")
    keys.generate(path)
    return path


@pytest.fixture
def daemon(mosquitto, tmp_path, key_path):
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN, key_file=key_path,
                                   bundle_dir=str(tmp_path / "bundles")).check()
    with Daemon(cfg, str(tmp_path / "token")) as d:
        # The daemon serves before the broker has acknowledged its subscriptions (it keeps
        # trying in the background); what a test publishes before then would be lost.
        wait_until(lambda: request(d.url + "/health")[1]["broker"])
        yield d


def fake_devices(mosquitto, ids: list[str], drift_us: int = 150):
    pub = publisher(mosquitto)
    items = [(topics.device_topic(d, topics.STATUS),
              messages.encode("status", state="online", fw_version=1, active_track="song",
                              bundle_version=1)) for d in ids]
    publish_all(pub, items, retain=True)
    publish_all(pub, [(topics.device_topic(d, topics.TELEMETRY),
                       messages.encode("telemetry", seq=s, drift_us=[drift_us, -drift_us // 2],
                                       boot=1)) for d in ids for s in range(20)])
    return pub


def test_health_metrics_and_devices(daemon, mosquitto):
    fake_devices(mosquitto, ["dev-a", "dev-b"])
    wait_until(lambda: len(request(daemon.url + "/api/devices")[1]) == 2
               and all(d["samples_60s"] == 40 for d in request(daemon.url + "/api/devices")[1]))
    status, health = request(daemon.url + "/health")
    assert status == 200 and health["broker"] and health["database"]
    assert health["collectors"][0]["stored_batches"] == 40
    _, devices = request(daemon.url + "/api/devices")
    assert devices[0]["id"] == "dev-a" and devices[0]["online"]
    assert devices[0]["drift_p99_ms"] == pytest.approx(0.15, abs=0.002)
    assert devices[0]["active_track"] == "song" and devices[0]["lost"] == 0
    status, one = request(daemon.url + "/api/devices/dev-b")
    assert status == 200 and one["id"] == "dev-b"
    status, missing = request(daemon.url + "/api/devices/nope")
    assert status == 404 and "unknown device" in missing["error"]
    status, text = request(daemon.url + "/metrics")
    assert "gridcast_devices_online 2.0" in text
    assert 'gridcast_device_drift_p99_ms{device="dev-a"} 0.15' in text
    status, batches = request(daemon.url + "/api/telemetry?device=dev-a&limit=5")
    assert status == 200 and [b["seq"] for b in batches] == [0, 1, 2, 3, 4]
    status, bad = request(daemon.url + "/api/telemetry?device=dev-a&limit=x")
    assert status == 400 and "integer" in bad["error"]


def test_metrics_render_the_device_rows_once_per_summary_and_counters_on_each_scrape():
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from gridcast.agent import metrics

    row = {"id": "dev-a", "online": True, "drift_p50_ms": 0.1, "drift_p99_ms": 0.15,
           "lost": 2, "alert": False}
    api: Any = SimpleNamespace(summary={"dev-a": row}, requests=1, sockets=set(),
                               rate_limit=None, core=SimpleNamespace(collectors=[], ingest=None))
    exposition = metrics.Exposition(api)
    text = exposition.render()[0].decode()
    assert 'gridcast_device_drift_p99_ms{device="dev-a"} 0.15' in text
    assert "gridcast_api_requests_total 1.0" in text
    # the same text as one registry holding every family (the format did not change)
    registry = CollectorRegistry()
    registry.register(metrics._DeviceMetrics(api.summary))
    registry.register(metrics._AgentMetrics(api))
    assert text.encode() == generate_latest(registry)
    api.requests = 5
    row["drift_p99_ms"] = 9.0  # the API replaces its summary, never edits it: not re-read
    text = exposition.render()[0].decode()
    assert "gridcast_api_requests_total 5.0" in text and '{device="dev-a"} 0.15' in text
    api.summary = {"dev-a": {**row, "drift_p99_ms": 0.2},
                   "dev-b": {**row, "id": "dev-b", "online": False}}  # the next refresh
    text = exposition.render()[0].decode()
    assert 'gridcast_device_drift_p99_ms{device="dev-a"} 0.2' in text
    assert "gridcast_devices_online 1.0" in text and '{device="dev-b"} 2.0' in text


def test_writes_need_the_token(daemon):
    status, body = request(daemon.url + "/api/deployments", b"{}")
    assert status == 401 and "bearer token" in body["error"]
    status, body = request(daemon.url + "/api/deployments", b"{}", token="wrong" * 5)
    assert status == 401
    status, body = request(daemon.url + "/api/deployments", b"not json", token=TOKEN)
    assert status == 400 and "JSON" in body["error"]
    status, body = request(daemon.url + "/api/deployments", b'{"bundle": "00"}', token=TOKEN)
    assert status == 404 and "unknown bundle" in body["error"]


def test_bundles_are_verified_before_they_are_kept(daemon, key_path, tmp_path):
    from gridcast.hil.bundles import make_bundle

    key = keys.load(key_path)
    data = make_bundle(key, 0.5, track="song")
    status, body = request(daemon.url + "/api/bundles", data, TOKEN, "application/octet-stream")
    assert status == 201 and body["track_id"] == "song"
    assert os.path.exists(tmp_path / "bundles" / f"{body['sha256']}.gcb")
    tampered = bytearray(data)
    tampered[-40] ^= 1
    status, body = request(daemon.url + "/api/bundles", bytes(tampered), TOKEN,
                           "application/octet-stream")
    assert status == 422 and "rejected" in body["error"]
    other = make_bundle(b"k" * 32, 0.5, track="song")
    status, body = request(daemon.url + "/api/bundles", other, TOKEN, "application/octet-stream")
    assert status == 422 and "key" in body["error"]
    _, listed = request(daemon.url + "/api/bundles")
    assert [b["track_id"] for b in listed] == ["song"]


def test_websocket_streams_live_telemetry(daemon, mosquitto):
    async def scenario() -> list[dict]:
        got: list[dict] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
                daemon.url.replace("http", "ws") + "/ws") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            fake_devices(mosquitto, ["dev-w"], drift_us=420)
            async with asyncio.timeout(15):
                while not any(m.get("device_id") == "dev-w" and m["type"] == "telemetry"
                              for m in got):
                    got.append(await ws.receive_json())
        return got

    messages_seen = asyncio.run(scenario())
    tele = [m for m in messages_seen if m["type"] == "telemetry"]
    assert tele[0]["drift_us"] == [420, -210]


def test_non_local_bind_requires_a_token_for_everything(mosquitto, tmp_path):
    with pytest.raises(agent_config.ConfigError, match="not localhost"):
        agent_config.AgentConfig(bind="0.0.0.0").check()
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/b.db",
                                   bind="0.0.0.0", port=free_port(), token=TOKEN,
                                   insecure_http=True).check()  # HTTPS: tests/test_tls.py
    with Daemon(cfg, str(tmp_path / "token")):
        base = f"http://127.0.0.1:{cfg.port}"
        assert request(base + "/api/devices")[0] == 401
        assert request(base + "/api/devices", token=TOKEN)[0] == 200
        assert request(base + f"/api/devices?token={TOKEN}")[0] == 200
        assert request(base + "/health")[0] == 200


def test_the_daemon_serves_while_the_broker_is_down_and_says_so(tmp_path):
    cfg = agent_config.AgentConfig(broker=f"mqtt://127.0.0.1:{free_port()}",
                                   database=f"sqlite://{tmp_path}/c.db", port=free_port())
    with Daemon(cfg, str(tmp_path / "token")) as d:
        status, health = request(d.url + "/health")
        assert status == 503 and health["broker"] is False and health["status"] == "degraded"
        assert request(d.url + "/api/devices") == (200, [])
    token = (tmp_path / "token").read_text().strip()
    assert len(token) == 32 and oct(os.stat(tmp_path / "token").st_mode)[-3:] == "600"


def test_config_file_and_environment(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nbroker = "mqtt://10.0.0.2:1884"\nport = 9000\n')
    cfg = agent_config.load(str(path), {"GRIDCAST_PORT": "9100", "GRIDCAST_DATABASE": "x.db"})
    assert cfg.broker_host_port == ("10.0.0.2", 1884) and cfg.port == 9100
    assert cfg.database == "x.db"
    path.write_text('[agent]\nbrokr = "x"\n')
    with pytest.raises(agent_config.ConfigError, match="unknown setting 'brokr'"):
        agent_config.load(str(path), {})
    path.write_text("[agent\n")
    with pytest.raises(agent_config.ConfigError, match="not valid TOML"):
        agent_config.load(str(path), {})
    with pytest.raises(agent_config.ConfigError, match="expected int"):
        agent_config.load(None, {"GRIDCAST_PORT": "eighty"})
    with pytest.raises(agent_config.ConfigError, match="mqtt://"):
        agent_config.load(None, {"GRIDCAST_BROKER": "http://x"})


CHROMIUM = shutil.which("chromium")


class HeadlessChromium:
    """Debian's Chromium, headless, driven over the DevTools protocol (a WebSocket), so
    that a test can wait for what the page shows instead of guessing how long it takes."""

    def __init__(self, profile: str) -> None:
        assert CHROMIUM, "chromium is missing (Debian: apt-get install chromium; scripts/setup)"
        self.port = free_port()
        # Chromium keeps its singleton socket in a folder under TMPDIR and leaves it
        # behind when stopped, so it gets a folder of its own, removed on close (short:
        # a socket's path must fit in 108 bytes, which the test's tmp_path may not).
        self.tmp = tempfile.mkdtemp(prefix="gc-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             f"--remote-debugging-port={self.port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self.tmp})

    async def page(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                        targets = [t for t in await r.json() if t["type"] == "page"]
                    if targets:
                        return await session.ws_connect(targets[0]["webSocketDebuggerUrl"],
                                                        max_msg_size=0)
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == self.next_id:
                return msg.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not await self.evaluate(expression):
                await asyncio.sleep(0.1)


def test_dashboard_renders_devices_and_live_plots_in_headless_chromium(daemon, mosquitto,
                                                                      tmp_path):
    pub = fake_devices(mosquitto, ["dev-x", "dev-y"])
    wait_until(lambda: len(request(daemon.url + "/api/devices")[1]) == 2)
    stop = threading.Event()

    def keep_sending() -> None:  # live telemetry while the page is open
        s = 100
        while not stop.is_set():
            publish_all(pub, [(topics.device_topic("dev-x", topics.TELEMETRY),
                               messages.encode("telemetry", seq=s, drift_us=[300], boot=1))])
            s += 1
            stop.wait(0.1)

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    browser = HeadlessChromium(str(tmp_path / "chrome"))

    async def scenario() -> tuple[str, bytes]:
        async with aiohttp.ClientSession() as session:
            cdp = Cdp(await browser.page(session))
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=daemon.url + "/")
            await cdp.wait_for("document.getElementById('row-dev-x') !== null && "
                               "document.getElementById('row-dev-y') !== null")
            # a live plot appears once WebSocket telemetry for dev-x has arrived
            await cdp.wait_for("document.getElementById('plot-dev-x') !== null")
            await cdp.wait_for("document.getElementById('status').textContent === 'live'")
            status = await cdp.evaluate("document.getElementById('status').textContent")
            shot = await cdp.call("Page.captureScreenshot", format="png")
            import base64

            return status, base64.b64decode(shot["data"])

    try:
        status, png = asyncio.run(scenario())
    finally:
        stop.set()
        sender.join()
        browser.close()
    assert status == "live"
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    (tmp_path / "dashboard.png").write_bytes(png)


def test_devices_monitor_and_report_commands(daemon, mosquitto, tmp_path, capsys):
    from gridcast.host import cli

    fake_devices(mosquitto, ["dev-m", "dev-n"], drift_us=250)
    wait_until(lambda: all(d["samples_60s"] == 40 for d in request(daemon.url +
                                                                   "/api/devices")[1])
               and len(request(daemon.url + "/api/devices")[1]) == 2)
    assert cli.main(["devices", "--agent", daemon.url]) == 0
    table = capsys.readouterr().out
    assert "dev-m" in table and "0.250" in table
    assert cli.main(["monitor", "--agent", daemon.url, "--count", "2", "--interval", "0.1"]) == 0
    assert "dev-n" in capsys.readouterr().out
    assert cli.main(["devices", "--agent", "http://127.0.0.1:1"]) == 1
    assert "not reachable" in capsys.readouterr().err
    # the report reads the database directly (the daemon keeps it open: WAL allows that)
    wait_until(lambda: bool(request(daemon.url + "/api/devices/dev-m/drift")[1]))
    png = tmp_path / "drift.png"
    assert cli.main(["report", "--database", daemon.cfg.database, "--png", str(png),
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in report["devices"]}
    assert rows["dev-m"]["samples"] == 40 and rows["dev-m"]["drift_p99_ms"] == 0.25
    assert rows["dev-m"]["seconds"] >= 1 and rows["dev-m"]["lost"] == 0
    assert png.stat().st_size > 10_000
