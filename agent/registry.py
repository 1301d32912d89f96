"""The device registry: what each device last said about itself (status and hello).

Devices publish a retained ``status`` (online, with firmware and active bundle)
and leave a retained last will ``lost``; a retained ``hello`` carries protocol
and frame limits. Devices on serial or BLE links send the same messages over the
link. The registry mirrors them into the store and keeps a copy in memory for
the API; ``observe`` is its one entry, fed by its MQTT subscriptions and by the
links the agent hosts. Whether a device is online is presence.is_online's call.

It also keeps each device's light offset (docs/protocol.md section 9): the one the
agent wants the device to hold (``set_light_offset``, from the API) and the one the
device last reported in its hello or online status. ``light_offset_to_send`` says
when the two differ; agent/light_offset.py sends it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gridcast.agent import presence
from gridcast.agent.clock import now_us
from gridcast.agent.mqtt import MqttConnection, MqttMessage, Subscription
from gridcast.agent.store import DeviceRecord, Store, StoreError
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError

log = logging.getLogger("gridcast.registry")


class Registry:
    def __init__(self, store: Store, mqtt: MqttConnection | str | None = None, port: int = 1883,
                 username: str | None = None, password: str | None = None,
                 on_change: Callable[[DeviceRecord], None] | None = None) -> None:
        """``mqtt``: the process's connection (shared), a broker host (the registry makes
        and owns a connection), or None (fed only through ``observe``)."""
        self.store = store
        self.on_change = on_change
        self.devices: dict[str, DeviceRecord] = {d.id: d for d in store.devices()}
        self.hello: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._owned = isinstance(mqtt, str)
        self.mqtt = (MqttConnection(mqtt, port, username=username, password=password)
                     if isinstance(mqtt, str) else mqtt)
        self._subs: list[Subscription] = []

    def _on_mqtt(self, m: MqttMessage) -> None:
        parsed = topics.parse_device_topic(m.topic)
        if parsed is None or not topics.valid_device_id(parsed[0]) or not m.payload:
            return
        device_id, leaf = parsed
        try:
            msg = messages.decode(m.payload)
        except ProtocolError as exc:
            log.warning("%s: malformed %s message ignored (%s)", device_id, leaf, exc)
            return
        self.observe(device_id, msg, m.received_us)

    def observe(self, device_id: str, msg: messages.Message, seen_us: int | None = None) -> None:
        """A status or hello from a device, on any link; other messages are ignored."""
        with self._lock:
            record = self.devices.get(device_id) or DeviceRecord(device_id)
            if msg.kind == "status":
                record.state = msg.state
                record.online = presence.is_online(msg)
                record.fw_version = msg.fw_version
                record.active_track = msg.active_track
                record.bundle_version = msg.bundle_version
                if record.online:  # a last will (or the agent's "lost") carries no offset
                    record.reported_light_offset_us = msg.light_offset_us
            elif msg.kind == "hello":
                self.hello[device_id] = {"proto_version": msg.proto_version,
                                         "max_frame": msg.max_frame, "window": msg.window}
                record.fw_version = msg.fw_version or record.fw_version
                record.reported_light_offset_us = msg.light_offset_us
            else:
                return
            record.last_seen_us = seen_us or now_us()
            self.devices[device_id] = record
        self._save(record)

    def set_light_offset(self, device_id: str, offset_us: int | None) -> DeviceRecord:
        """Keep ``offset_us`` on ``device_id`` (None: leave the device's own setting alone).
        Stored; KeyError for a device never seen."""
        with self._lock:
            record = self.devices[device_id]
            record.light_offset_us = offset_us
            copy = DeviceRecord(**vars(record))
        self._save(copy)
        return copy

    def light_offset_to_send(self, device_id: str) -> int | None:
        """The offset to send to ``device_id`` now: set, different from what it last
        reported (or not reported yet), and the device online with protocol 2 or later
        (protocol 1 firmware has no light offset)."""
        with self._lock:
            record = self.devices.get(device_id)
            hello = self.hello.get(device_id, {})
            if (record is None or record.light_offset_us is None or not record.online
                    or hello.get("proto_version", messages.PROTOCOL_VERSION) < 2):
                return None
            if record.reported_light_offset_us == record.light_offset_us:
                return None
            return record.light_offset_us

    def link_lost(self, device_id: str) -> None:
        """A serial or BLE link broke: the agent says ``lost`` for the device, as the
        broker's last will does for MQTT devices."""
        self.observe(device_id, messages.decode(messages.encode("status", state=presence.LOST)))

    def _save(self, record: DeviceRecord) -> None:
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
        """Subscribe to status and hello (retained: the broker sends what it holds).
        An owned connection is started too (``wait``: until ready, else in the background)."""
        if self.mqtt is None:
            return
        self._subs = [self.mqtt.subscribe(f"{topics.PREFIX}/dev/+/{leaf}", 1, self._on_mqtt)
                      for leaf in (topics.STATUS, topics.HELLO)]
        if self._owned:
            self.mqtt.start(wait=wait)

    def stop(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        if self._owned and self.mqtt is not None:
            self.mqtt.stop()
