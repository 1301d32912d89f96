"""The telemetry collector, rollup and registry against a real mosquitto."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from typing import ClassVar

import pytest

from gridcast.agent.collector import Collector
from gridcast.agent.registry import Registry
from gridcast.agent.rollup import AlertPolicy, Rollup
from gridcast.agent.store import SqliteStore
from gridcast.hil.faults import Jitter, MqttJitterProxy
from gridcast.protocol import messages, topics
from tests.mqtt_publisher import publish_all, publisher


def telemetry(seq: int, drift: list[int], boot: int = 1) -> bytes:
    return messages.encode("telemetry", seq=seq, device_us=seq * 1000, drift_us=drift,
                           cpu_pct=10, temp_dc=None, free_mem=50000, boot=boot)


def wait_until(predicate, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def tel_topic(device: str) -> str:
    return topics.device_topic(device, topics.TELEMETRY)


def test_every_batch_is_stored_once_and_malformed_ones_are_counted(mosquitto, tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    collector = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-test")
    collector.start()
    pub = publisher(mosquitto)
    items = [(tel_topic(f"dev-{d}"), telemetry(seq, [seq, -seq, 7]))
             for seq in range(200) for d in range(3)]
    items += [(tel_topic("dev-0"), b"\x93garbage"),
              (tel_topic("dev-0"), messages.encode("status", state="online")),
              (tel_topic("bad/id"), telemetry(0, [1]))]
    publish_all(pub, items)
    wait_until(lambda: collector.stats.stored_batches + collector.stats.malformed >= 602)
    collector.stop()
    pub.loop_stop()
    assert collector.stats.malformed == 2  # bad/id is no device topic: never delivered there
    for d in range(3):
        assert store.batch_seqs(f"dev-{d}") == list(range(200))
    assert store.sample_count() == 3 * 200 * 3
    assert store.telemetry("dev-1")[5].drift_us == [5, -5, 7]


def test_a_locked_database_delays_but_loses_nothing(mosquitto, tmp_path):
    path = str(tmp_path / "a.db")
    store = SqliteStore(path, timeout_s=0.1)
    collector = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-lock")
    collector.start()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    pub = publisher(mosquitto)
    publish_all(pub, [(tel_topic("dev-a"), telemetry(s, [s])) for s in range(100)])
    wait_until(lambda: collector.stats.write_errors >= 2)
    assert collector.stats.stored_batches == 0
    lock.execute("ROLLBACK")
    lock.close()
    wait_until(lambda: collector.stats.stored_batches == 100)
    collector.stop()
    assert store.batch_seqs("dev-a") == list(range(100))
    assert "write lock" in collector.stats.last_error


def test_two_collectors_share_the_load_and_store_the_union(mosquitto, tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    a = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-a")
    b = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-b")
    a.start()
    b.start()
    pub = publisher(mosquitto)
    publish_all(pub, [(tel_topic(f"dev-{d}"), telemetry(s, [s])) for s in range(300)
                      for d in range(4)])
    wait_until(lambda: a.stats.stored_batches + b.stats.stored_batches == 1200)
    a.stop()
    b.stop()
    assert a.stats.stored_batches > 100 and b.stats.stored_batches > 100  # both worked
    assert all(store.batch_seqs(f"dev-{d}") == list(range(300)) for d in range(4))


def test_batches_sent_while_the_collector_is_down_arrive_after_it_returns(mosquitto, tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    first = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-persist")
    first.start()
    first.stop()  # its session (and shared subscription) stays with the broker
    pub = publisher(mosquitto)
    publish_all(pub, [(tel_topic("dev-z"), telemetry(s, [s])) for s in range(50)])
    again = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-persist")
    again.start()
    wait_until(lambda: len(store.batch_seqs("dev-z")) == 50)
    again.stop()


class Webhook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        Webhook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_rollup_aggregates_finds_gaps_and_alerts(tmp_path):
    from gridcast.agent.store import TelemetryBatch

    store = SqliteStore(str(tmp_path / "a.db"))
    server = http.server.HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerts = AlertPolicy(threshold_ms=1.0, window_s=3,
                         webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
    t0 = 1_700_000_000
    batches = []
    for s in range(10):  # seconds 0..9; seq 4 never arrives; drift jumps at second 6
        if s == 4:
            continue
        drift = [200, -300, 100] if s < 6 else [2500, -3000, 2600]
        batches.append(TelemetryBatch("dev-r", s, (t0 + s) * 1_000_000 + 500_000, 0, drift,
                                      boot=9))
    store.add_telemetry(batches)
    rollup = Rollup(store, alerts, start_s=t0)
    rollup.run_once((t0 + 12) * 1_000_000)
    per_second = store.aggregates("dev-r", "1s")
    assert [a.bucket_s - t0 for a in per_second] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert per_second[0].p50_us == 200 and per_second[0].max_us == 300
    assert per_second[-1].max_us == 3000
    assert store.lost("dev-r") == 1
    rollup.run_once((t0 + 12) * 1_000_000)  # idempotent: nothing new
    assert store.lost("dev-r") == 1
    assert [e["state"] for e in alerts.sent] == ["firing"]
    assert alerts.active["dev-r"] is True
    wait_until(lambda: len(Webhook.received) == 1)
    assert Webhook.received[0]["device_id"] == "dev-r"
    rollup.flush()
    assert len(store.aggregates("dev-r", "1m")) >= 1
    server.shutdown()


def test_registry_follows_status_and_last_will(mosquitto, tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    registry = Registry(store, "127.0.0.1", mosquitto.port)
    registry.start()
    pub = publisher(mosquitto)
    status = topics.device_topic("dev-s", topics.STATUS)
    publish_all(pub, [(status, messages.encode("status", state="online", fw_version=3,
                                               active_track="song", bundle_version=2)),
                      (topics.device_topic("dev-s", topics.HELLO),
                       messages.encode("hello", proto_version=1, fw_version=3, device_id="dev-s",
                                       max_frame=2048)),
                      (topics.device_topic("dev-t", topics.STATUS), b"\x01\x02")],
                retain=True)  # as devices publish them: the registry may subscribe later
    wait_until(lambda: "dev-s" in registry.devices and registry.devices["dev-s"].online
               and "dev-s" in registry.hello)
    record = store.device("dev-s")
    assert record is not None and record.active_track == "song"
    publish_all(pub, [(status, messages.encode("status", state="lost", fw_version=3))],
                retain=True)
    wait_until(lambda: not registry.devices["dev-s"].online)
    # the store's row follows the registry's memory (a write after it; reads do not wait
    # for a write in progress)
    wait_until(lambda: getattr(store.device("dev-s"), "state", None) == "lost")
    assert "dev-t" not in registry.devices  # malformed status ignored
    registry.stop()


@pytest.mark.parametrize("shared", [True, False])
def test_collector_refuses_a_broker_that_is_not_there(tmp_path, shared):
    from gridcast.agent.broker import free_port
    from gridcast.agent.store import StoreError

    store = SqliteStore(str(tmp_path / "a.db"))
    collector = Collector(store, "127.0.0.1", free_port(), shared=shared)
    with pytest.raises(StoreError, match="cannot reach the broker"):
        collector.start()
    assert not collector._writer.is_alive()  # nothing left running after the refusal


def test_a_full_database_delays_but_loses_nothing(mosquitto, tmp_path):
    """SQLite's page limit stands in for a full disk: the same SQLITE_FULL error."""
    path = str(tmp_path / "a.db")
    store = SqliteStore(path)
    # on the writer's connection (a per-connection setting; reads have their own)
    store.conn.execute("PRAGMA max_page_count = " + str(
        store.conn.execute("PRAGMA page_count").fetchone()[0] + 1))
    collector = Collector(store, "127.0.0.1", mosquitto.port, client_id="c-full")
    collector.start()
    pub = publisher(mosquitto)
    publish_all(pub, [(tel_topic("dev-f"), telemetry(s, list(range(200)))) for s in range(100)])
    wait_until(lambda: collector.stats.write_errors >= 2)
    assert "full" in collector.stats.last_error
    # what fitted before the disk filled is stored whole; the failed transactions left nothing
    before = store.telemetry("dev-f")
    assert len(before) < 100 and all(len(b.drift_us) == 200 for b in before)
    with store._lock:  # not in the middle of the collector's retried transaction
        store.conn.execute("PRAGMA max_page_count = 1000000")  # space again
    wait_until(lambda: collector.stats.stored_batches == 100)
    collector.stop()
    assert store.batch_seqs("dev-f") == list(range(100))


def test_start_returns_once_subscribed_so_an_immediate_batch_is_kept(mosquitto, tmp_path):
    """The collector's packets reach the broker 300 ms late (a slow link): a device that
    publishes the moment start() returns must still find the subscription in place."""
    proxy = MqttJitterProxy("127.0.0.1", mosquitto.port, Jitter(300, 300), Jitter(0, 0)).start()
    store = SqliteStore(str(tmp_path / "a.db"))
    collector = Collector(store, "127.0.0.1", proxy.port, client_id="c-slow", shared=False)
    try:
        collector.start()
        publish_all(publisher(mosquitto), [(tel_topic("dev-s"), telemetry(0, [5, 6]))])
        wait_until(lambda: collector.stats.stored_batches == 1)
    finally:
        collector.stop()
        proxy.stop()
    assert store.batch_seqs("dev-s") == [0]
