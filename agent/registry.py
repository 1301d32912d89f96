"""The device registry: what the broker's retained status and hello say about each device.

Devices publish a retained ``status`` (online, with firmware and active bundle)
and leave a retained last will ``lost``; a retained ``hello`` carries protocol
and frame limits. The registry mirrors them into the store and keeps a copy in
memory for the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gridcast.agent.clock import now_us
from gridcast.agent.store import DeviceRecord, Store, StoreError
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError

log = logging.getLogger("gridcast.registry")

ONLINE_STATES = ("online", "playing", "idle")


class Registry:
    def __init__(self, store: Store, host: str, port: int, username: str | None = None,
                 password: str | None = None,
                 on_change: Callable[[DeviceRecord], None] | None = None) -> None:
        self.store, self.host, self.port = store, host, port
        self.on_change = on_change
        self.devices: dict[str, DeviceRecord] = {d.id: d for d in store.devices()}
        self.hello: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"gridcast-registry-{id(self)}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the registry: %s", reason_code)
            return
        client.subscribe([(f"{topics.PREFIX}/dev/+/{topics.STATUS}", 1),
                          (f"{topics.PREFIX}/dev/+/{topics.HELLO}", 1)])

    def _on_message(self, client, userdata, msg):
        parsed = topics.parse_device_topic(msg.topic)
        if parsed is None or not topics.valid_device_id(parsed[0]) or not msg.payload:
            return
        device_id, leaf = parsed
        try:
            m = messages.decode(msg.payload)
        except ProtocolError as exc:
            log.warning("%s: malformed %s message ignored (%s)", device_id, leaf, exc)
            return
        with self._lock:
            record = self.devices.get(device_id) or DeviceRecord(device_id)
            if m.kind == "status":
                record.state = m.state
                record.online = m.state in ONLINE_STATES
                record.fw_version = m.fw_version
                record.active_track = m.active_track
                record.bundle_version = m.bundle_version
            elif m.kind == "hello":
                self.hello[device_id] = {"proto_version": m.proto_version,
                                         "max_frame": m.max_frame, "window": m.window}
                record.fw_version = m.fw_version or record.fw_version
            else:
                return
            record.last_seen_us = now_us()
            self.devices[device_id] = record
        try:
            self.store.upsert_device(record)
        except StoreError as exc:
            log.error("registry: %s", exc)
        if self.on_change:
            self.on_change(record)

    def snapshot(self) -> list[DeviceRecord]:
        with self._lock:
            return sorted((DeviceRecord(**vars(d)) for d in self.devices.values()),
                          key=lambda d: d.id)

    def start(self, wait: bool = True) -> None:
        self.client.reconnect_delay_set(1, 5)
        if wait:
            self.client.connect(self.host, self.port, keepalive=10)
        else:
            self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
