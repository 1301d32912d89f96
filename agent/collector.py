"""The telemetry collector: batches from every link in, batched database writes out,
nothing lost.

``submit(batch, ack)`` is its one entry. Its MQTT subscription feeds it, and so
does the agent with the telemetry its serial and BLE links deliver. A batch is
acknowledged (``ack()``) only after the transaction holding it has committed.

On MQTT it subscribes with a shared subscription (``$share/<group>/...``), so
several agent processes, on one machine or several, split the devices' telemetry
between them. Messages are acknowledged to the broker only after the commit
(manual acks on a persistent session): a collector that dies, or a database that
is locked or full, makes the broker deliver again; it does not lose data.
Duplicates are ignored by the store's primary key (device, boot, seq).

With an ``IngestLimiter`` (the agent's), each device's messages pass its rate limit
first, right after the topic is parsed: a device flooding telemetry has its excess
acknowledged and dropped before it is decoded, queued or stored (counted in
``stats.rate_dropped`` and per device by the limiter), so it cannot starve the writer
or the network thread for the others (agent/rate_limit.py, bench/flood.py).

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

from gridcast.agent.mqtt import MqttConnection, MqttError, MqttMessage, Subscription
from gridcast.agent.rate_limit import IngestLimiter
from gridcast.agent.store import Store, StoreError, TelemetryBatch
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError

log = logging.getLogger("gridcast.collector")

DEFAULT_GROUP = "gridcast-collectors"
MAX_PENDING = 200_000  # batches held in memory while the database refuses writes
Ack = Callable[[], None]


@dataclass
class CollectorStats:
    received: int = 0
    stored_batches: int = 0
    stored_samples: int = 0
    malformed: int = 0
    rate_dropped: int = 0  # over the device's ingest rate limit: acknowledged, not stored
    write_errors: int = 0
    last_error: str = ""


def telemetry_batch(device_id: str, msg: messages.Message, received_us: int) -> TelemetryBatch:
    """The stored form of a decoded telemetry message."""
    pairs = msg.error_counts
    return TelemetryBatch(device_id, msg.seq, received_us, msg.device_us, list(msg.drift_us),
                          msg.cpu_pct, msg.temp_dc, msg.free_mem,
                          {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}, msg.boot)


def decode_telemetry(topic: str, payload: bytes, received_us: int) -> TelemetryBatch:
    """A stored batch from one MQTT message; ProtocolError naming what is wrong."""
    parsed = topics.parse_device_topic(topic)
    if parsed is None or parsed[1] != topics.TELEMETRY or not topics.valid_device_id(parsed[0]):
        raise ProtocolError(0, f"{topic}: not a device telemetry topic")
    m = messages.decode(payload)
    if m.kind != "telemetry":
        raise ProtocolError(0, f"{topic}: expected a telemetry message, got {m.kind}")
    return telemetry_batch(parsed[0], m, received_us)


def _no_ack() -> None:
    pass


class Collector:
    def __init__(self, store: Store, mqtt: MqttConnection | str | None = None,
                 port: int = 1883, *, group: str = DEFAULT_GROUP, shared: bool = True,
                 client_id: str | None = None, clean: bool = False, flush_s: float = 0.2,
                 max_batches: int = 5000, username: str | None = None,
                 password: str | None = None,
                 on_batch: Callable[[TelemetryBatch], None] | None = None,
                 limiter: IngestLimiter | None = None) -> None:
        """``mqtt``: the process's connection (shared: its owner starts and stops it), a
        broker host (the collector makes and owns a connection: a process that only
        collects), or None (fed only through ``submit``). An owned connection keeps a
        persistent session with a stable id, so unacknowledged batches survive a restart
        (``clean=True``: a short-lived watcher, such as a rollout from the command line).
        ``limiter``: each device's message rate (None: no limit)."""
        self.store = store
        self.flush_s, self.max_batches = flush_s, max_batches
        self.on_batch = on_batch
        self.limiter = limiter
        self.topic = (f"$share/{group}/{topics.PREFIX}/dev/+/{topics.TELEMETRY}" if shared
                      else f"{topics.PREFIX}/dev/+/{topics.TELEMETRY}")
        self.stats = CollectorStats()
        self._owned = isinstance(mqtt, str)
        self.mqtt = (MqttConnection(mqtt, port,
                                    client_id=client_id or f"gridcast-collector-{group}",
                                    clean_session=clean, username=username, password=password)
                     if isinstance(mqtt, str) else mqtt)
        self._sub: Subscription | None = None
        self._queue: queue.Queue[tuple[TelemetryBatch, Ack]] = queue.Queue()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer",
                                        daemon=True)
        self._malformed_logged: dict[str, float] = {}
        self._closing = False

    # -- in ------------------------------------------------------------------------------------
    def submit(self, batch: TelemetryBatch, ack: Ack | None = None) -> None:
        """Store a batch (from any thread); ``ack`` is called once it is committed (at
        once when the device is over its rate limit and the batch is dropped)."""
        self.stats.received += 1
        if self.limiter is not None and not self.limiter.admit(batch.device_id):
            self.stats.rate_dropped += 1
            (ack or _no_ack)()
            return
        self._queue.put((batch, ack or _no_ack))

    def _on_mqtt(self, m: MqttMessage) -> None:
        if self._closing:  # not acknowledged: the broker delivers it again next session
            return
        if self.limiter is not None:  # before decoding: a flood costs as little as it can
            parsed = topics.parse_device_topic(m.topic)
            if parsed is not None and not self.limiter.admit(parsed[0]):
                self.stats.received += 1
                self.stats.rate_dropped += 1
                m.ack()  # delivered again, it would be dropped again
                return
        try:
            batch = decode_telemetry(m.topic, m.payload, m.received_us)
        except ProtocolError as exc:
            self.stats.received += 1
            self.stats.malformed += 1
            self._log_malformed(m.topic, str(exc))
            m.ack()  # redelivering it would not make it well-formed
            return
        self.stats.received += 1
        self._queue.put((batch, m.ack))

    def _log_malformed(self, topic: str, why: str) -> None:
        now = time.monotonic()
        if now - self._malformed_logged.get(topic, -1e9) >= 60:  # once a minute per topic
            self._malformed_logged[topic] = now
            log.warning("malformed telemetry on %s (%s); counted and dropped", topic, why)

    # -- out -----------------------------------------------------------------------------------
    def _drain(self) -> list[tuple[TelemetryBatch, Ack]]:
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
        pending: list[tuple[TelemetryBatch, Ack]] = []
        backoff = 0.2
        while not (self._stop.is_set() and not pending and self._queue.empty()):
            if len(pending) < MAX_PENDING:
                pending += self._drain()
            if not pending:
                continue
            batches = [b for b, _ in pending]
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
            for _, ack in pending:
                ack()
            self.stats.stored_batches += len(batches)
            self.stats.stored_samples += sum(len(b.drift_us) for b in batches)
            if self.on_batch:
                for b in batches:
                    self.on_batch(b)
            pending = []

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Its MQTT subscription is in place (True when it has none: nothing to wait for)."""
        return self.mqtt is None or self.mqtt.ready

    def start(self, timeout_s: float = 5.0, wait: bool = True) -> None:
        """Start writing and subscribe. An owned connection is started too: ``wait``
        until the broker acknowledged the subscription (StoreError if it does not),
        else return at once and keep trying in the background."""
        self._writer.start()
        if self.mqtt is None:
            return
        self._sub = self.mqtt.subscribe(self.topic, 1, self._on_mqtt, manual_ack=True)
        if not self._owned:
            return
        try:
            self.mqtt.start(timeout_s, wait)
        except MqttError as exc:
            self.stop()  # a collector that could not start leaves no thread behind
            raise StoreError(f"collector: {exc}") from exc

    def stop(self) -> None:
        """Stop taking messages, write what was received, then (an owned connection)
        disconnect. The session stays with the broker: what arrives meanwhile
        (unacknowledged) comes on restart."""
        self._closing = True
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=30)
        # No UNSUBSCRIBE: the persistent session keeps the subscription, so the broker
        # holds what devices send until the collector is back.
        if self._owned and self.mqtt is not None:
            self.mqtt.stop()
