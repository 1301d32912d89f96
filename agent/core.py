"""The agent's moving parts in one place: one MQTT connection, the transport, the
clock-sync responder, the telemetry collector, the device registry, the rollup,
and the serial/BLE links the agent hosts. The daemon serves an API on top of it;
the demo drives it directly.

Everything MQTT goes over one connection (``self.mqtt``): the transport's
subscriptions, and the collector's shared subscription with manual acks. It keeps
a persistent session under a stable client id, so the broker holds telemetry
while the agent is away. What devices send is decoded once, by their link, and
routed from there (``_from_device``): status and hello to the registry,
telemetry from links to the collector (MQTT telemetry reaches the collector
through its own subscription, acknowledged after the commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import socket
import threading
from collections.abc import Callable

from gridcast.agent.collector import Collector, telemetry_batch
from gridcast.agent.command_signer import CommandSigner
from gridcast.agent.config import AgentConfig
from gridcast.agent.mqtt import MqttConnection
from gridcast.agent.rate_limit import IngestLimiter
from gridcast.agent.registry import Registry
from gridcast.agent.rollup import AlertPolicy, Rollup
from gridcast.agent.store import DeviceRecord, Store, TelemetryBatch, open_store
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import (
    Incoming,
    SingleDeviceLink,
    Transport,
    TransportError,
    open_transport,
)
from gridcast.agent.transport_mqtt import MqttTransport
from gridcast.protocol import keys, topics

log = logging.getLogger("gridcast.agent")

LINK_RETRY_MAX_S = 30.0


def default_client_id(config: AgentConfig) -> str:
    """Stable across restarts (the persistent session), unique per agent on a host (two
    agents cannot share an API port).

    On a broker with passwords the id ends in a tag derived from the agent's password:
    mosquitto throws a client off when any login connects with its client id, so an id
    that a device's login could guess would let it knock the agent off the broker again
    and again (docs/security.md). The id only travels inside TLS.
    """
    base = f"gridcast-agent-{socket.gethostname()}-{config.port}"
    if not config.broker_password:
        return base
    tag = hmac.new(config.broker_password.encode(), b"gridcast mqtt client id " + base.encode(),
                   hashlib.sha256).hexdigest()[:16]
    return f"{base}-{tag}"


class AgentCore:
    def __init__(self, config: AgentConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.database)
        self.alerts = AlertPolicy(config.alert_threshold_ms, config.alert_window_s,
                                  config.webhook_url)
        self.rollup = Rollup(self.store, self.alerts,
                             int(config.raw_retention_days * 86400),
                             int(config.second_retention_days * 86400))
        self._listeners: list[Callable[[str, dict], None]] = []
        self.mqtt = MqttConnection(config.broker,  # a URL: mqtts:// carries the CA
                                   client_id=config.mqtt_client_id or default_client_id(config),
                                   clean_session=False, username=config.broker_username,
                                   password=config.broker_password)
        # Every device's message rate, over every path its messages come in on.
        self.ingest = IngestLimiter.from_config(config)
        self.collector = Collector(self.store, self.mqtt, group=config.collector_group,
                                   shared=config.shared_subscription,
                                   on_batch=self._batch_stored, limiter=self.ingest)
        self.registry = Registry(self.store, on_change=self._device_changed)
        self.transport = MqttTransport(self.mqtt, telemetry=False)
        if config.key_file:  # seals commands and sync answers (docs/protocol.md 11)
            self.transport.signer = CommandSigner(keys.load(config.key_file))
        self.transport.admit = self.ingest.admit_other  # status, hello, replies, sync
        self.transport.taps.append(self._from_device)
        self.responder = SyncResponder(self.transport)
        self.links: dict[str, SingleDeviceLink] = {}  # URL -> open link (hosted devices)
        self._link_tasks: list[asyncio.Task[None]] = []
        self._rollup_stop = threading.Event()
        self._rollup_thread = threading.Thread(target=self._rollup_loop, name="rollup",
                                               daemon=True)

    @property
    def collectors(self) -> list[Collector]:
        """The one collector, as the list the API's health and metrics report."""
        return [self.collector]

    # Live events for WebSocket clients: called from collector/registry threads.
    def add_listener(self, fn: Callable[[str, dict], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[str, dict], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _emit(self, kind: str, data: dict) -> None:
        for fn in list(self._listeners):
            fn(kind, data)

    def _batch_stored(self, b: TelemetryBatch) -> None:
        if not self._listeners:  # called for every stored batch: build nothing for nobody
            return
        self._emit("telemetry", {"device_id": b.device_id, "seq": b.seq,
                                 "received_us": b.received_us, "drift_us": list(b.drift_us),
                                 "cpu_pct": b.cpu_pct, "free_mem": b.free_mem})

    def _device_changed(self, d: DeviceRecord) -> None:
        self._emit("device", vars(d).copy())

    def _from_device(self, item: Incoming) -> None:
        """Every decoded message from every transport, in its receiving thread."""
        if not topics.valid_device_id(item.device_id):  # it would name rows and topics
            return
        kind = item.message.kind
        if kind in ("status", "hello"):
            self.registry.observe(item.device_id, item.message, item.received_us)
        elif kind == "telemetry":  # from links; MQTT's comes through the collector's own
            self.collector.submit(telemetry_batch(item.device_id, item.message,
                                                  item.received_us))

    def _rollup_loop(self) -> None:
        while not self._rollup_stop.wait(1.0):
            self.rollup.run_once()

    def transport_for(self, device_id: str) -> Transport:
        """The link hosting a device, else the MQTT transport."""
        for link in list(self.links.values()):
            if link.device_id == device_id:
                return link
        return self.transport

    @property
    def broker_connected(self) -> bool:
        """Connected, and the broker acknowledged every subscription."""
        return self.mqtt.ready

    async def start(self, retry: bool = False) -> None:
        """Connect everything. ``retry``: do not fail when the broker is down; keep trying
        in the background (the daemon serves its API meanwhile)."""
        self.collector.start()  # its subscription, and the writer
        await self.transport.__aenter__()  # its subscriptions (a shared connection)
        self.responder.start()
        self._rollup_thread.start()
        try:
            await self.mqtt.start_async(5.0, wait=not retry)
        except TransportError:
            await self.stop()
            raise
        for url in self.config.links:
            self._link_tasks.append(asyncio.create_task(self._host_link(url),
                                                        name=f"link {url}"))
        log.info("agent core up: broker %s, database %s, %d link(s)", self.config.broker,
                 self.config.database.split("@")[-1], len(self.config.links))

    async def _host_link(self, url: str) -> None:
        """Keep a serial/BLE link open: its device gets a registry record, sync answers
        and stored telemetry. Reopened with a jittered, capped back-off when it breaks."""
        delay, last_error = 1.0, ""
        while True:
            link = open_transport(url, signer=self.transport.signer, hello_timeout_s=None)
            assert isinstance(link, SingleDeviceLink)
            link.taps.append(self._from_device)
            try:
                await link.__aenter__()
            except TransportError as exc:
                if str(exc) != last_error:
                    log.error("link %s: %s; retrying", url, exc)
                    last_error = str(exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, LINK_RETRY_MAX_S)
                continue
            delay, last_error = 1.0, ""
            log.info("hosting the device on %s", url)
            self.links[url] = link
            responder = SyncResponder(link)
            responder.start()
            try:
                await link.lost.wait()
                log.warning("link %s lost (%s); reopening", url, link.lost_reason)
                if link.device_id:
                    self.registry.link_lost(link.device_id)
            finally:
                self.links.pop(url, None)
                await responder.stop()
                await link.__aexit__(None, None, None)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def stop(self) -> None:
        for task in self._link_tasks:
            task.cancel()
        for task in self._link_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._link_tasks = []
        await self.responder.stop()
        # The collector first: it writes what it holds and acknowledges it over the
        # connection, which closes last.
        await asyncio.to_thread(self.collector.stop)
        await self.transport.__aexit__(None, None, None)
        self._rollup_stop.set()
        if self._rollup_thread.is_alive():
            self._rollup_thread.join(5)
        self.rollup.run_once()
        await asyncio.to_thread(self.mqtt.stop)
