"""Rate limits: a flooding device is throttled without costing the others a batch, and the
API answers 429 with what to change (agent/rate_limit.py; bench/flood.py has the figures)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gridcast.agent import config as agent_config
from gridcast.agent.broker import free_port
from gridcast.agent.collector import Collector
from gridcast.agent.rate_limit import ApiRateLimiter, IngestLimiter, metric_families
from gridcast.agent.store import SqliteStore
from gridcast.protocol import messages, topics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_device_over_its_rate_is_dropped_reported_and_calms_down(caplog):
    clock = FakeClock()
    limiter = IngestLimiter(10.0, 5, quiet_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, "gridcast.rate_limit"):
        assert [limiter.admit("flood") for _ in range(7)] == [True] * 5 + [False] * 2
        assert limiter.admit("calm")  # another device has its own bucket
        clock.now += 0.15  # one and a half tokens back
        assert [limiter.admit("flood") for _ in range(3)] == [True, False, False]
    assert limiter.status("flood") == {"throttled": True, "dropped": 4}
    assert limiter.status("calm") == {"throttled": False, "dropped": 0}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "flood" in warnings[0] and "ingest_rate_per_device" in warnings[0]
    clock.now += 10.0
    assert limiter.admit("flood")
    assert limiter.status("flood") == {"throttled": False, "dropped": 4}
    families = {f.name: f for f in metric_families(limiter, None)}  # type: ignore[attr-defined]
    dropped = families["gridcast_ingest_dropped_messages"].samples
    assert [(s.labels["device"], s.value) for s in dropped] == [("flood", 4.0)]


def test_rate_settings_come_from_the_file_and_the_environment(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text('[agent]\ningest_rate_per_device = 20\n'
                    'api_tokens = {ci = "c1234567890abcdef"}\napi_token_rates = {ci = 0}\n')
    cfg = agent_config.load(str(conf), {"GRIDCAST_API_TOKEN_RATES": "ci=0,anonymous=5"})
    assert cfg.ingest_rate_per_device == 20.0 and cfg.ingest_burst_per_device == 10_000
    assert cfg.api_tokens == {"ci": "c1234567890abcdef"}
    assert cfg.api_token_rates == {"ci": 0.0, "anonymous": 5.0}
    with pytest.raises(agent_config.ConfigError, match=r"api_tokens\.ci"):
        agent_config.load(None, {"GRIDCAST_API_TOKENS": "ci=short"})


def test_the_api_answers_429_with_retry_after_per_token_and_names_the_setting():
    clock = FakeClock()
    limiter = ApiRateLimiter({"default": "d" * 32, "bench": "b" * 32}, rate_per_s=2.0, burst=3,
                             token_rates={"bench": 0.0}, clock=clock)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def run() -> None:
        app = web.Application(middlewares=[limiter.middleware()])
        app.router.add_get("/x", ok)
        async with TestClient(TestServer(app)) as client:
            async def status(token: str | None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with client.get("/x", headers=headers) as resp:
                    return resp.status

            assert [await status("d" * 32) for _ in range(4)] == [200, 200, 200, 429]
            assert [await status("b" * 32) for _ in range(50)] == [200] * 50  # rate 0: none
            assert [await status(None) for _ in range(4)] == [200, 200, 200, 429]  # own bucket
            async with client.get("/x", headers={"Authorization": "Bearer " + "d" * 32}) as resp:
                body = await resp.json()
                assert resp.status == 429 and resp.headers["Retry-After"] == "1"
                assert body["token"] == "default" and body["setting"] == "api_rate_per_s"
                assert "api_rate_per_s" in body["error"] and 0 < body["retry_after_s"] <= 0.5
            clock.now += 0.5  # one request's worth
            assert [await status("d" * 32) for _ in range(2)] == [200, 429]

    asyncio.run(run())
    assert limiter.refused == {"default": 3, "anonymous": 1}


def test_a_flooding_device_through_mosquitto_costs_the_others_no_batch(mosquitto, tmp_path):
    """One device publishes 5,000 messages (at up to 10,000 a second; in this one process
    the publisher shares the GIL with the collector) while five others send a batch every
    50 ms: every batch of the five is stored, the flooder only what
    its bucket allows, and it is reported as throttled."""
    store = SqliteStore(str(tmp_path / "a.db"))
    limiter = IngestLimiter(50.0, 100)
    collector = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-flood",
                          limiter=limiter)
    collector.start()
    clients = []
    for name in ("flooder", "devices"):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        clients.append(c)
    flooder, devices = clients
    flood_sent = [0]

    def flood() -> None:
        started = time.monotonic()
        while flood_sent[0] < 5000:  # 100 messages every 10 ms at most
            for i in range(100):
                payload = messages.encode("telemetry", seq=flood_sent[0] + i, drift_us=[5], boot=1)
                flooder.publish(topics.device_topic("flooder", topics.TELEMETRY), payload, qos=1)
            flood_sent[0] += 100
            time.sleep(max(0.0, started + flood_sent[0] / 10_000 - time.monotonic()))

    thread = threading.Thread(target=flood)
    thread.start()
    t0 = time.monotonic()
    infos = []
    seq = 0
    while thread.is_alive():  # a batch a device every 50 ms while the flood goes on
        for d in range(5):
            infos.append(devices.publish(
                topics.device_topic(f"dev-{d}", topics.TELEMETRY),
                messages.encode("telemetry", seq=seq, drift_us=[seq, -seq], boot=1), qos=1))
        seq += 1
        time.sleep(0.05)
    thread.join()
    for info in infos:
        info.wait_for_publish(5)
    flood_s = time.monotonic() - t0
    deadline = time.monotonic() + 10
    while collector.stats.received < flood_sent[0] + 5 * seq and time.monotonic() < deadline:
        time.sleep(0.05)
    collector.stop()
    for c in clients:
        c.loop_stop()
        c.disconnect()
    for d in range(5):
        assert store.batch_seqs(f"dev-{d}") == list(range(seq)), f"dev-{d} lost batches"
        assert limiter.status(f"dev-{d}") == {"throttled": False, "dropped": 0}
    assert seq >= 5 and flood_sent[0] / flood_s > 1000, "no flood, or no one beside it"
    status = limiter.status("flooder")
    admitted = limiter.snapshot()["flooder"]["admitted"]
    assert len(store.batch_seqs("flooder")) == admitted and status["throttled"]
    assert admitted <= 100 + 50 * (flood_s + 10) and status["dropped"] >= flood_sent[0] - admitted
    assert collector.stats.rate_dropped == status["dropped"]


def test_the_daemon_reports_a_throttled_device_and_limits_each_token(mosquitto, tmp_path):
    """Through the real daemon: the flooding device's row says throttled and how many of its
    messages were dropped; the default token is limited, a named token with rate 0 is not."""
    from tests.mqtt_publisher import publish_all, publisher
    from tests.test_agent_api import TOKEN, Daemon, request
    from tests.test_agent_collector import wait_until

    desk = "desk-token-0123456789abcdef"
    cfg = agent_config.AgentConfig(
        broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db", port=free_port(),
        token=TOKEN, ingest_rate_per_device=5.0, ingest_burst_per_device=10,
        api_rate_per_s=1.0, api_burst=3, api_tokens={"desk": desk},
        api_token_rates={"desk": 0.0}).check()
    with Daemon(cfg, str(tmp_path / "token")) as daemon:
        pub = publisher(mosquitto)
        publish_all(pub, [(topics.device_topic(d, topics.STATUS),
                           messages.encode("status", state="online", fw_version=1,
                                           active_track="", bundle_version=0))
                          for d in ("calm", "noisy")], retain=True)
        publish_all(pub, [(topics.device_topic("noisy", topics.TELEMETRY),
                           messages.encode("telemetry", seq=s, drift_us=[1], boot=1))
                          for s in range(200)])
        publish_all(pub, [(topics.device_topic("chatty", topics.SYNC_REQ),  # the transport's
                           messages.encode("sync_req", seq=s, t1_us=s)) for s in range(100)])

        def rows() -> dict:
            return {d["id"]: d for d in request(daemon.url + "/api/devices", token=desk)[1]}

        wait_until(lambda: rows().get("noisy", {}).get("throttled") is True)
        noisy, calm = rows()["noisy"], rows()["calm"]
        # 201 messages (a status, 200 batches): 10 at once, then 5 a second
        assert 170 <= noisy["dropped"] <= 191 and not calm["throttled"] and calm["dropped"] == 0
        assert [request(daemon.url + "/api/devices", token=TOKEN)[0]
                for _ in range(4)] == [200, 200, 200, 429]
        status, body = request(daemon.url + "/api/deployments", b"{}", token=desk)
        assert status == 404 and "unknown bundle" in body["error"]  # past the token check
        status, body = request(daemon.url + "/api/devices", token=TOKEN)
        assert status == 429 and body["token"] == "default" and "api_rate_per_s" in body["error"]
        _, text = request(daemon.url + "/metrics", token=desk)
        assert 'gridcast_ingest_dropped_messages_total{device="noisy"}' in text
        dropped = re.search(r'dropped_messages_total\{device="chatty"\} (\S+)', text)
        assert dropped and float(dropped.group(1)) >= 80  # sync requests: 10 at once, 5/s
        assert 'gridcast_api_rate_limited_total{token="default"} 2.0' in text


def test_link_telemetry_over_the_rate_is_acknowledged_and_not_stored(tmp_path):
    """Telemetry from serial/BLE links (``submit``) passes the same per-device bucket; a
    dropped batch is acknowledged at once (nothing waits for it)."""
    from gridcast.agent.collector import telemetry_batch

    store = SqliteStore(str(tmp_path / "a.db"))
    collector = Collector(store, None, limiter=IngestLimiter(0.001, 3))
    acks: list[int] = []
    for seq in range(5):  # before the writer starts: what is acknowledged now was dropped
        msg = messages.decode(messages.encode("telemetry", seq=seq, drift_us=[seq], boot=1))
        collector.submit(telemetry_batch("serial-dev", msg, 1), lambda s=seq: acks.append(s))
    assert acks == [3, 4]
    collector.start()
    collector.stop()
    assert store.batch_seqs("serial-dev") == [0, 1, 2] and sorted(acks) == [0, 1, 2, 3, 4]
    assert collector.stats.rate_dropped == 2


def _thrown_off(site, victim_connect, client_ids: list[str]) -> bool:
    """Whether device tls-01's login, connecting with any of ``client_ids``, disconnects
    the victim (an MqttConnection made by ``victim_connect``) on the provisioned ``site``,
    which this starts and stops."""
    import os

    site.start()
    victim = None
    intruders: list[mqtt.Client] = []
    try:
        victim = victim_connect(site)
        for client_id in client_ids:
            intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
            intruder.tls_set(ca_certs=os.path.join(site.dir, "ca.crt"))
            intruder.username_pw_set(site.device.user, site.device.password)
            intruder.connect("127.0.0.1", site.port)
            intruder.loop_start()
            intruders.append(intruder)
        # mosquitto drops the older client as it accepts the newer CONNECT: within
        # milliseconds. Two seconds of watching is long enough to see it.
        deadline = time.monotonic() + 2.0
        while victim.connected and victim.connects == 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        return not (victim.connected and victim.connects == 1)
    finally:
        for intruder in intruders:
            intruder.loop_stop()
        if victim is not None:
            victim.stop()
        site.stop()


def test_a_device_login_cannot_throw_the_agent_off_a_provisioned_broker():
    """A device's password, used with every client id the device can know of the agent
    (its host name and API port are no secret), does not disconnect the agent: the agent's
    id ends in a tag derived from its own password (agent/core.py default_client_id)."""
    import socket

    from gridcast.agent.core import default_client_id
    from gridcast.agent.mqtt import MqttConnection
    from tests.test_tls import Site

    config = agent_config.AgentConfig(port=8750)

    def agent(site) -> MqttConnection:
        config.broker_password = site.agent.password
        conn = MqttConnection.from_url(site.prov.agent_url() or "", username="gridcast-agent",
                                       password=site.agent.password,
                                       client_id=default_client_id(config))
        conn.subscribe("gridcast/v1/dev/+/status", handler=lambda m: None)
        conn.start(timeout_s=3)
        return conn

    guesses = [f"gridcast-agent-{socket.gethostname()}-8750", "gridcast-agent",
               default_client_id(agent_config.AgentConfig(port=8750, broker_password="k"))]
    assert not _thrown_off(Site(), agent, guesses), "a device login threw the agent off"
    # the tag is stable (the persistent session survives a restart) and the password's own
    one = default_client_id(agent_config.AgentConfig(port=8750, broker_password="p1"))
    assert one == default_client_id(agent_config.AgentConfig(port=8750, broker_password="p1"))
    assert one != default_client_id(agent_config.AgentConfig(port=8750, broker_password="p2"))
    assert one.startswith(guesses[0] + "-")


def test_a_device_login_cannot_throw_another_device_off():
    """A device's login is bound to its own client id (mosquitto's dynamic-security plugin,
    agent/dynsec.py): tls-01's password cannot connect as tls-02, so mosquitto never gets
    to throw tls-02 off (docs/security.md, client-id takeover)."""
    from gridcast.agent.mqtt import MqttConnection
    from tests.test_tls import Site

    site = Site()
    other = site.prov.provision("tls-02", key=b"k" * 32)

    def device(site) -> MqttConnection:
        conn = MqttConnection.from_url(site.prov.agent_url() or "", username=other.user,
                                       password=other.password, client_id="tls-02")
        conn.subscribe("gridcast/v1/dev/tls-02/cmd", handler=lambda m: None)
        conn.start(timeout_s=3)
        return conn

    assert not _thrown_off(site, device, ["tls-02"]), "one device login threw another off"


def test_the_ingest_limiter_forgets_idle_devices_first_and_stays_bounded(monkeypatch):
    from gridcast.agent import rate_limit

    monkeypatch.setattr(rate_limit, "MAX_TRACKED", 20)
    clock = FakeClock()
    limiter = IngestLimiter(1.0, 2, clock=clock)
    for _ in range(3):
        limiter.admit("flood")  # one dropped: it has something to report
    for i in range(18):
        limiter.admit(f"old-{i}")
    clock.now += 10.0  # every bucket full again: the old ones are idle
    limiter.admit("new-0")
    limiter.admit("new-1")  # the 21st id: the idle ones go, the flooder stays
    assert sorted(limiter.devices) == ["flood", "new-0", "new-1"]
    assert limiter.status("flood") == {"throttled": False, "dropped": 1}  # 10 s quiet
    for i in range(2, 200):  # many new ids (the broker's ACL normally forbids this)
        limiter.admit(f"new-{i}")
        assert len(limiter.devices) <= 20


def test_messages_other_than_telemetry_have_their_own_small_burst():
    """A status costs the registry a database write in the network thread: only telemetry
    may come in a large burst (a backlog held by the broker)."""
    limiter = IngestLimiter(10.0, 50, other_burst=3, clock=FakeClock())
    assert [limiter.admit_other("d") for _ in range(4)] == [True, True, True, False]
    assert all(limiter.admit("d") for _ in range(50)) and not limiter.admit("d")
    assert limiter.status("d") == {"throttled": True, "dropped": 2}
