"""agent/mqtt.py against a real mosquitto: handlers and async iteration, ready only after
the SUBACK, manual acks per subscription, refusals that say why, reconnect and resubscribe,
and one connection per agent process counted at the broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from gridcast.agent import config as agent_config
from gridcast.agent.broker import Mosquitto, free_port
from gridcast.agent.clock import now_us
from gridcast.agent.mqtt import MqttConnection, MqttError, MqttMessage, filters_overlap
from gridcast.hil.faults import Jitter, MqttJitterProxy
from tests.mqtt_publisher import publish_all, publisher
from tests.test_agent_api import TOKEN, Daemon, fake_devices, request
from tests.test_agent_collector import wait_until


class Inbox:
    """A handler that keeps what it is given, and in which thread."""

    def __init__(self) -> None:
        self.messages: list[MqttMessage] = []
        self.threads: set[str] = set()

    def __call__(self, m: MqttMessage) -> None:
        self.threads.add(threading.current_thread().name)
        self.messages.append(m)

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


def test_handlers_get_topic_payload_and_receive_time(mosquitto):
    conn = MqttConnection("127.0.0.1", mosquitto.port)
    inbox = Inbox()
    conn.subscribe("t/+/a", 1, inbox)
    conn.subscribe("t/+/a", 0, other := Inbox())  # the same filter twice: both get it
    conn.start()
    try:
        assert conn.ready
        before = now_us()
        publish_all(publisher(mosquitto), [("t/x/a", b"one"), ("t/y/a", b"two"),
                                           ("t/x/b", b"not subscribed")])
        wait_until(lambda: len(inbox.messages) == 2 and len(other.messages) == 2)
        assert inbox.payloads == [b"one", b"two"] == other.payloads
        assert [m.topic for m in inbox.messages] == ["t/x/a", "t/y/a"]
        assert all(before <= m.received_us <= now_us() for m in inbox.messages)
        assert threading.current_thread().name not in inbox.threads  # paho's network thread
    finally:
        conn.stop()
    assert not conn.ready


def test_async_iteration(mosquitto):
    async def scenario() -> list[bytes]:
        conn = MqttConnection("127.0.0.1", mosquitto.port)
        sub = conn.subscribe("it/#", 1)
        await conn.start_async()
        publish_all(publisher(mosquitto), [("it/1", b"a"), ("it/2/x", b"b")])
        got = []
        async with asyncio.timeout(10):
            async for m in sub:
                got.append(m.payload)
                if len(got) == 2:
                    break
        await asyncio.to_thread(conn.stop)
        return got

    assert asyncio.run(scenario()) == [b"a", b"b"]


def test_ready_only_once_the_broker_acknowledged_every_subscription(mosquitto):
    """Packets reach the broker 300 ms late: a message published the moment start()
    returns must find every subscription in place."""
    proxy = MqttJitterProxy("127.0.0.1", mosquitto.port, Jitter(300, 300), Jitter(0, 0)).start()
    conn = MqttConnection("127.0.0.1", proxy.port)
    inboxes = [Inbox() for _ in range(3)]
    for i, inbox in enumerate(inboxes):
        conn.subscribe(f"slow/{i}", 1, inbox)
    try:
        conn.start()
        publish_all(publisher(mosquitto), [(f"slow/{i}", b"x") for i in range(3)])
        wait_until(lambda: all(inbox.messages for inbox in inboxes))
        # a subscription added later: not ready until its own SUBACK
        late = Inbox()
        conn.subscribe("slow/late", 1, late)
        assert not conn.ready
        assert conn.wait_ready(5)
        publish_all(publisher(mosquitto), [("slow/late", b"y")])
        wait_until(lambda: late.payloads == [b"y"])
    finally:
        conn.stop()
        proxy.stop()


def test_manual_ack_is_per_subscription_and_unacked_messages_come_again(mosquitto):
    """Two subscriptions on one persistent session: the automatic one is acknowledged by the
    layer, the manual one only when its handler says so. After a restart, the broker
    delivers again exactly what was not acknowledged."""
    def connect(auto: Inbox, manual: Inbox) -> MqttConnection:
        conn = MqttConnection("127.0.0.1", mosquitto.port, client_id="ack-test",
                              clean_session=False)
        conn.subscribe("auto/+", 1, auto)
        conn.subscribe("manual/+", 1, manual, manual_ack=True)
        conn.start()
        return conn

    auto, manual = Inbox(), Inbox()
    conn = connect(auto, manual)
    publish_all(publisher(mosquitto), [("auto/1", b"a1"), ("manual/1", b"m1"),
                                       ("manual/2", b"m2")])
    wait_until(lambda: len(auto.messages) == 1 and len(manual.messages) == 2)
    assert auto.messages[0].ack() is None  # a no-op there: the layer acknowledged it
    manual.messages[0].ack()  # m1 is safe; m2 is not
    time.sleep(0.3)  # the PUBACK is on its way before the disconnect (same socket, in order)
    conn.stop()
    auto2, manual2 = Inbox(), Inbox()
    conn = connect(auto2, manual2)
    try:
        wait_until(lambda: manual2.payloads == [b"m2"])
        time.sleep(0.5)  # anything else redelivered would be here by now
        assert auto2.messages == [] and manual2.payloads == [b"m2"]
    finally:
        conn.stop()


def test_overlapping_filters_are_refused_on_one_connection():
    conn = MqttConnection("127.0.0.1", 1)
    conn.subscribe("gridcast/v1/dev/+/telemetry", 1, Inbox())
    with pytest.raises(MqttError, match="overlaps"):
        conn.subscribe("$share/g/gridcast/v1/dev/+/telemetry", 1, Inbox())
    with pytest.raises(MqttError, match="overlaps"):
        conn.subscribe("gridcast/#", 1, Inbox())
    conn.subscribe("gridcast/v1/dev/+/status", 1, Inbox())  # disjoint: fine
    conn.subscribe("gridcast/v1/dev/+/telemetry", 0, Inbox())  # the same filter: fine
    with pytest.raises(MqttError, match="one subscription per filter"):
        conn.subscribe("gridcast/v1/dev/+/status", 1, Inbox(), manual_ack=True)
        conn.subscribe("gridcast/v1/dev/+/status", 1, Inbox(), manual_ack=True)
    assert filters_overlap("a/+/c", "a/b/#") and not filters_overlap("a/b", "a/b/c")


def test_an_unreachable_broker_is_named():
    port = free_port()
    with pytest.raises(MqttError, match=f"cannot reach the broker at mqtt://127.0.0.1:{port}"):
        MqttConnection("127.0.0.1", port).start(timeout_s=2)


def _passwd(folder: str, user: str, password: str) -> str:
    path = os.path.join(folder, "passwd")
    subprocess.run(["mosquitto_passwd", "-b", "-c", path, user, password], check=True,
                   capture_output=True)
    os.chmod(path, 0o644)
    return path


def test_refused_credentials_say_why(tmp_path):
    folder = str(tmp_path / "broker")
    os.makedirs(folder)
    passwd = _passwd(folder, "agent", "right")
    with Mosquitto(folder=folder, anonymous=False,
                   extra_conf=f"password_file {passwd}\n") as broker:
        wrong = MqttConnection("127.0.0.1", broker.port, username="agent", password="wrong")
        with pytest.raises(MqttError, match=r"refused the connection.*user name and password"):
            wrong.start(timeout_s=5)
        right = MqttConnection("127.0.0.1", broker.port, username="agent", password="right")
        right.start(timeout_s=5)
        right.stop()


class RefusingProxy:
    """Between a client and mosquitto, answers every SUBSCRIBE with failure (0x80), as a
    broker with an ACL on subscriptions, or without shared subscriptions, does. (This
    mosquitto grants every subscription and applies its ACL on delivery.)"""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                broker = socket.create_connection(("127.0.0.1", self.broker_port))
                threading.Thread(target=self._up, args=(client, broker), daemon=True).start()
                threading.Thread(target=self._down, args=(broker, client), daemon=True).start()

    @staticmethod
    def _up(client: socket.socket, broker: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                broker.sendall(data)

    @staticmethod
    def _down(broker: socket.socket, client: socket.socket) -> None:
        from gridcast.hil.faults import _recv_packet

        with contextlib.suppress(OSError, ConnectionError):
            while True:
                packet = bytearray(_recv_packet(broker))
                if packet[0] & 0xF0 == 0x90:  # SUBACK: header, length, packet id, codes
                    body = 2 + (packet[1] & 0x80 and 1) + 2  # (short packets: 1 length byte)
                    packet[body:] = b"\x80" * (len(packet) - body)
                client.sendall(bytes(packet))

    def close(self) -> None:
        self.server.close()


def test_a_refused_subscription_says_which_topic_and_why(mosquitto):
    proxy = RefusingProxy(mosquitto.port)
    conn = MqttConnection("127.0.0.1", proxy.port)
    conn.subscribe("$share/g/gridcast/v1/dev/+/telemetry", 1, Inbox())
    try:
        with pytest.raises(MqttError, match=re.escape(
                f"the broker at mqtt://127.0.0.1:{proxy.port} refused the subscription to "
                "$share/g/gridcast/v1/dev/+/telemetry (an ACL that denies it or a broker "
                "without shared subscriptions")) as info:
            conn.start(timeout_s=5)
        assert info.value.topic == "$share/g/gridcast/v1/dev/+/telemetry"
        assert not conn.ready
    finally:
        proxy.close()


def test_after_a_broker_restart_it_subscribes_again_and_is_ready_again(mosquitto):
    conn = MqttConnection("127.0.0.1", mosquitto.port, backoff_min_s=0.2, backoff_max_s=1.0)
    inbox = Inbox()
    conn.subscribe("back/+", 1, inbox)
    conn.start()
    try:
        mosquitto.restart(down_s=1.0)  # not persistent for this client: nothing kept for it
        wait_until(lambda: not conn.ready or conn.connects > 1)
        assert conn.wait_ready(15) and conn.connects == 2
        publish_all(publisher(mosquitto), [("back/1", b"after")])
        wait_until(lambda: inbox.payloads == [b"after"])
    finally:
        conn.stop()


@pytest.fixture
def counted_broker(tmp_path):
    """mosquitto publishing its $SYS counters every second."""
    with Mosquitto(folder=str(tmp_path / "broker"), extra_conf="sys_interval 1\n") as broker:
        yield broker


class ClientCount:
    """What the broker says in $SYS/broker/clients/connected, as it says it (this watcher
    counts itself). mosquitto publishes the count only when it changed at a $SYS tick, so
    the watcher listens from before anything else connects: the last value it has heard
    is then the count that has held since the last tick."""

    def __init__(self, broker) -> None:
        import paho.mqtt.client as mqtt

        self.seen: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sys-watcher")
        self.client.on_message = lambda c, u, m: self.seen.append(int(m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "$SYS/broker/clients/connected")
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def settles_at(self, count: int, timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not (self.seen and self.seen[-1] == count):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_one_mqtt_connection_per_agent_process_counted_at_the_broker(counted_broker, tmp_path):
    cfg = agent_config.AgentConfig(broker=counted_broker.url,
                                   database=f"sqlite://{tmp_path}/a.db", port=free_port(),
                                   token=TOKEN).check()
    count = ClientCount(counted_broker)
    try:
        with Daemon(cfg, str(tmp_path / "token")) as daemon:
            wait_until(lambda: request(daemon.url + "/health")[0] == 200)
            pub = fake_devices(counted_broker, ["dev-c"])
            pub.disconnect()  # the fake device's publisher leaves
            pub.loop_stop()
            wait_until(lambda: [d["samples_60s"]
                                for d in request(daemon.url + "/api/devices")[1]]
                       == [40])  # registry and collector both working over that connection
            # the agent and the watcher (a second agent connection would hold it at 3)
            assert count.settles_at(2), f"clients connected, as published: {count.seen}"
    finally:
        count.stop()
    with open(os.path.join(counted_broker.folder, "mosquitto.log")) as f:
        clients = re.findall(r"New client connected from \S+ as (\S+) ", f.read())
    ours = {c for c in clients if c.startswith("pub-") or c == "sys-watcher"}
    assert set(clients) - ours == {agent_config_client_id(cfg)}


def agent_config_client_id(cfg: agent_config.AgentConfig) -> str:
    from gridcast.agent.core import default_client_id

    return default_client_id(cfg)


def test_the_daemon_is_ready_again_after_a_broker_restart(mosquitto, tmp_path):
    """The agent's one connection comes back by itself: health turns 503 while the broker
    is away and 200 once every subscription is acknowledged again; telemetry and status
    published afterwards are stored and shown."""
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN).check()
    with Daemon(cfg, str(tmp_path / "token")) as daemon:
        wait_until(lambda: request(daemon.url + "/health")[0] == 200)
        mosquitto.stop()
        wait_until(lambda: request(daemon.url + "/health")[0] == 503)
        mosquitto.start()
        wait_until(lambda: request(daemon.url + "/health")[0] == 200, 30)
        fake_devices(mosquitto, ["dev-r"])
        wait_until(lambda: [(d["id"], d["online"], d["samples_60s"])
                            for d in request(daemon.url + "/api/devices")[1]]
                   == [("dev-r", True, 40)])


def test_telemetry_sent_while_the_agent_is_down_is_stored_when_it_returns(mosquitto, tmp_path):
    """The agent's one connection keeps a persistent session under a stable client id: the
    broker holds the telemetry of the downtime, and acknowledges it only once stored."""
    cfg = agent_config.AgentConfig(broker=mosquitto.url, database=f"sqlite://{tmp_path}/a.db",
                                   port=free_port(), token=TOKEN).check()
    with Daemon(cfg, str(tmp_path / "token")) as daemon:
        wait_until(lambda: request(daemon.url + "/health")[0] == 200)
    fake_devices(mosquitto, ["dev-d"])  # 20 batches while no agent runs
    with Daemon(cfg, str(tmp_path / "token")) as daemon:
        wait_until(lambda: [d["samples_60s"] for d in request(daemon.url + "/api/devices")[1]]
                   == [40])
        _, batches = request(daemon.url + "/api/telemetry?device=dev-d&limit=100")
        assert [b["seq"] for b in batches] == list(range(20))
