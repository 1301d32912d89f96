"""The agent's moving parts in one place: transport, clock-sync responder, telemetry
collectors, device registry and rollup. The daemon serves an API on top of it; the
demo drives it directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from gridcast.agent.collector import Collector
from gridcast.agent.config import AgentConfig
from gridcast.agent.registry import Registry
from gridcast.agent.rollup import AlertPolicy, Rollup
from gridcast.agent.store import DeviceRecord, Store, TelemetryBatch, open_store
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import Transport, TransportError, open_transport

log = logging.getLogger("gridcast.agent")


class AgentCore:
    def __init__(self, config: AgentConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.database)
        host, port = config.broker_host_port
        self.alerts = AlertPolicy(config.alert_threshold_ms, config.alert_window_s,
                                  config.webhook_url)
        self.rollup = Rollup(self.store, self.alerts,
                             int(config.raw_retention_days * 86400),
                             int(config.second_retention_days * 86400))
        self._listeners: list[Callable[[str, dict], None]] = []
        self.collectors = [
            Collector(self.store, host, port, group=config.collector_group,
                      shared=config.shared_subscription,
                      client_id=f"gridcast-collector-{config.collector_group}-{i}",
                      username=config.broker_username, password=config.broker_password,
                      on_batch=self._batch_stored)
            for i in range(config.collectors)]
        self.registry = Registry(self.store, host, port, config.broker_username,
                                 config.broker_password, on_change=self._device_changed)
        self.transport: Transport | None = None
        self.responder: SyncResponder | None = None
        self._connector: asyncio.Future | None = None
        self._rollup_stop = threading.Event()
        self._rollup_thread = threading.Thread(target=self._rollup_loop, name="rollup",
                                               daemon=True)

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

    def _rollup_loop(self) -> None:
        while not self._rollup_stop.wait(1.0):
            self.rollup.run_once()

    @property
    def broker_connected(self) -> bool:
        return self.responder is not None and all(c.connected for c in self.collectors)

    async def start(self, retry: bool = False) -> None:
        """Connect everything. ``retry``: do not fail when the broker is down; keep trying
        in the background (the daemon serves its API meanwhile)."""
        for c in self.collectors:
            await asyncio.to_thread(c.start, 5.0, not retry)
        await asyncio.to_thread(self.registry.start, not retry)
        self._rollup_thread.start()
        if retry:
            self._connector = asyncio.ensure_future(self._connect_transport_forever())
        else:
            await self._connect_transport()
        log.info("agent core up: broker %s, database %s, %d collector(s)", self.config.broker,
                 self.config.database.split("@")[-1], len(self.collectors))

    async def _connect_transport(self) -> None:
        transport = open_transport(self.config.broker, username=self.config.broker_username,
                                   password=self.config.broker_password)
        await transport.__aenter__()
        self.transport = transport
        self.responder = SyncResponder(transport)
        self.responder.start()

    async def _connect_transport_forever(self) -> None:
        last = ""
        while self.transport is None:
            try:
                await self._connect_transport()
                log.info("connected to the broker %s", self.config.broker)
            except TransportError as exc:
                if str(exc) != last:
                    log.error("%s; retrying every 2 s", exc)
                    last = str(exc)
                await asyncio.sleep(2.0)

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
        if self.responder:
            await self.responder.stop()
        for c in self.collectors:
            await asyncio.to_thread(c.stop)
        await asyncio.to_thread(self.registry.stop)
        self._rollup_stop.set()
        if self._rollup_thread.is_alive():
            self._rollup_thread.join(5)
        self.rollup.run_once()
        if self.transport:
            await self.transport.__aexit__(None, None, None)
