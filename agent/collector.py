"""The telemetry collector: MQTT in, batched database writes out, nothing lost.

It subscribes with an MQTT shared subscription (``$share/<group>/...``), so
several collectors, in one process or on several machines, split the devices'
telemetry between them. Messages are acknowledged to the broker only after the
transaction holding them has committed (paho's manual acks on a persistent
session): a collector that dies, or a database that is locked or full, makes
the broker deliver again; it does not lose data. Duplicates are ignored by the
store's primary key (device, boot, seq).

Aggregates, gaps and alerts are computed from the stored union by
:mod:`gridcast.agent.rollup`, because with several collectors no single one sees
every batch of a device.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from gridcast.agent.clock import now_us
from gridcast.agent.store import Store, StoreError, TelemetryBatch
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError

log = logging.getLogger("gridcast.collector")

DEFAULT_GROUP = "gridcast-collectors"
MAX_PENDING = 200_000  # batches held in memory while the database refuses writes


@dataclass
class CollectorStats:
    received: int = 0
    stored_batches: int = 0
    stored_samples: int = 0
    malformed: int = 0
    write_errors: int = 0
    last_error: str = ""


def decode_telemetry(topic: str, payload: bytes, received_us: int) -> TelemetryBatch:
    """A stored batch from one MQTT message; ProtocolError naming what is wrong."""
    parsed = topics.parse_device_topic(topic)
    if parsed is None or parsed[1] != topics.TELEMETRY or not topics.valid_device_id(parsed[0]):
        raise ProtocolError(0, f"{topic}: not a device telemetry topic")
    m = messages.decode(payload)
    if m.kind != "telemetry":
        raise ProtocolError(0, f"{topic}: expected a telemetry message, got {m.kind}")
    pairs = m.error_counts
    return TelemetryBatch(parsed[0], m.seq, received_us, m.device_us, list(m.drift_us),
                          m.cpu_pct, m.temp_dc, m.free_mem,
                          {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}, m.boot)


class Collector:
    def __init__(self, store: Store, host: str, port: int, group: str = DEFAULT_GROUP,
                 shared: bool = True, client_id: str | None = None, clean: bool = False,
                 flush_s: float = 0.2,
                 max_batches: int = 5000, username: str | None = None,
                 password: str | None = None,
                 on_batch: Callable[[TelemetryBatch], None] | None = None) -> None:
        self.store, self.host, self.port = store, host, port
        self.flush_s, self.max_batches = flush_s, max_batches
        self.on_batch = on_batch
        self.topic = (f"$share/{group}/{topics.PREFIX}/dev/+/{topics.TELEMETRY}" if shared
                      else f"{topics.PREFIX}/dev/+/{topics.TELEMETRY}")
        self.stats = CollectorStats()
        # A persistent session with a stable id: unacknowledged batches survive our restart.
        # (clean=True: a short-lived watcher, such as a rollout from the command line.)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"gridcast-collector-{group}",
                                  clean_session=clean)
        if username:
            self.client.username_pw_set(username, password)
        self.client.manual_ack_set(True)
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._queue: queue.Queue[tuple[TelemetryBatch | None, int, int]] = queue.Queue()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer",
                                        daemon=True)
        self._malformed_logged: dict[str, float] = {}
        self._connected = threading.Event()
        self._closing = False

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker %s:%d refused the collector: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # Ready only once the broker confirmed the subscription: what a device publishes
        # before that reaches no session, and a start() that returned early would lose it.
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker %s:%d refused the subscription to %s", self.host, self.port,
                      self.topic)
            return
        self._connected.set()

    def _on_message(self, client, userdata, msg):
        if self._closing:  # not acknowledged: the broker delivers it again next session
            return
        self.stats.received += 1
        try:
            batch = decode_telemetry(msg.topic, msg.payload, now_us())
        except ProtocolError as exc:
            self.stats.malformed += 1
            self._log_malformed(msg.topic, str(exc))
            client.ack(msg.mid, msg.qos)  # redelivering it would not make it well-formed
            return
        self._queue.put((batch, msg.mid, msg.qos))

    def _log_malformed(self, topic: str, why: str) -> None:
        now = time.monotonic()
        if now - self._malformed_logged.get(topic, -1e9) >= 60:  # once a minute per topic
            self._malformed_logged[topic] = now
            log.warning("malformed telemetry on %s (%s); counted and dropped", topic, why)

    def _drain(self) -> list[tuple[TelemetryBatch | None, int, int]]:
        items = []
        try:
            items.append(self._queue.get(timeout=self.flush_s))
            deadline = time.monotonic() + self.flush_s
            while len(items) < self.max_batches and time.monotonic() < deadline:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _write_loop(self) -> None:
        pending: list[tuple[TelemetryBatch | None, int, int]] = []
        backoff = 0.2
        while not (self._stop.is_set() and not pending and self._queue.empty()):
            if len(pending) < MAX_PENDING:
                pending += self._drain()
            batches = [b for b, _, _ in pending if b is not None]
            if not batches:
                pending.clear()
                continue
            try:
                self.store.add_telemetry(batches)
            except StoreError as exc:
                self.stats.write_errors += 1
                self.stats.last_error = str(exc)
                log.error("%s; keeping %d batches, retrying in %.1f s", exc, len(batches), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            for _, mid, qos in pending:
                self.client.ack(mid, qos)
            self.stats.stored_batches += len(batches)
            self.stats.stored_samples += sum(len(b.drift_us) for b in batches)
            if self.on_batch:
                for b in batches:
                    self.on_batch(b)
            pending = []

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def start(self, timeout_s: float = 5.0, wait: bool = True) -> None:
        """Connect and start writing. ``wait=False``: return at once and keep trying in the
        background (a daemon that starts before its broker)."""
        self.client.reconnect_delay_set(1, 5)
        self._writer.start()
        if not wait:
            self.client.connect_async(self.host, self.port, keepalive=10)
            self.client.loop_start()
            return
        try:
            self.client.connect(self.host, self.port, keepalive=10)
        except OSError as exc:
            raise StoreError(f"collector: cannot reach the broker at {self.host}:{self.port} "
                             f"({exc})") from exc
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.client.loop_stop()
            raise StoreError(f"collector: the broker at {self.host}:{self.port} did not accept "
                             f"the connection and subscription within {timeout_s:g} s "
                             "(credentials? an ACL that denies the telemetry topics?)")

    def stop(self) -> None:
        """Stop taking messages, write what was received, then disconnect. The session
        stays with the broker: what arrives meanwhile (unacknowledged) comes on restart."""
        self._closing = True
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
