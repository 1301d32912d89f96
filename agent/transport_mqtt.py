"""MQTT backend: paho-mqtt in its own network thread, feeding asyncio queues."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Incoming, Transport, TransportError
from gridcast.protocol import topics

_ids = itertools.count()


class MqttTransport(Transport):
    chunk_bytes = 8192  # capped by each device's max_frame (its retained hello)
    window = 4

    def __init__(self, host: str, port: int, client_id: str | None = None,
                 username: str | None = None, password: str | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"gridcast-agent-{os.getpid()}-"
                                                         f"{next(_ids)}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(0)  # no client-side cap: the broker paces
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.connect_timeout_s = connect_timeout_s
        self._connected = threading.Event()
        self._refused: str | None = None
        # Called in paho's network thread for sync requests, so that answers leave
        # without a hop to asyncio (see SyncResponder).
        self.sync_handler: Callable[[str, bytes, int], bytes | None] | None = None
        self.status: dict[str, bytes] = {}  # device id -> last retained status payload

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        client.subscribe([(topics.PREFIX + "/dev/+/" + leaf, topics.QOS[leaf]) for leaf in
                          (topics.REPLY, topics.HELLO, topics.STATUS, topics.TELEMETRY,
                           topics.SYNC_REQ)])
        # Ready at CONNACK, before the SUBACK: replies answer commands this client
        # publishes after its SUBSCRIBE, which the broker handles in order. The retained
        # hello and status messages follow the SUBACK, possibly before a caller's
        # listener exists; ``hellos`` and ``status`` keep them (see wait_online).
        self._connected.set()

    def _on_message(self, client, userdata, msg):
        received = now_us()
        parsed = topics.parse_device_topic(msg.topic)
        if parsed is None:
            return
        device_id, leaf = parsed
        if leaf == topics.SYNC_REQ and self.sync_handler is not None:
            reply = self.sync_handler(device_id, bytes(msg.payload), received)
            if reply is not None:
                client.publish(topics.device_topic(device_id, topics.SYNC_RESP), reply, qos=0)
            return
        if leaf == topics.STATUS:
            self.status[device_id] = bytes(msg.payload)
        self._deliver(Incoming(device_id, leaf, bytes(msg.payload), received))

    async def start(self) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=15)
        except OSError as exc:
            raise TransportError(f"cannot reach the MQTT broker at {self.host}:{self.port} "
                                 f"({exc.strerror or exc}); is it running?") from exc
        self.client.loop_start()
        ok = await asyncio.get_running_loop().run_in_executor(
            None, self._connected.wait, self.connect_timeout_s)
        if not ok:
            self.client.loop_stop()
            why = f"refused: {self._refused}" if self._refused else "no answer"
            raise TransportError(f"MQTT broker {self.host}:{self.port} {why}")

    async def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        info = self.client.publish(topics.device_topic(device_id, leaf), payload,
                                   qos=topics.QOS.get(leaf, 1))
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish to {device_id} failed: {mqtt.error_string(info.rc)}")

    async def broadcast(self, payload: bytes) -> None:
        self.client.publish(topics.BROADCAST_CMD, payload, qos=1)

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        """Devices whose retained status says online (read from the broker)."""
        await asyncio.sleep(wait_s)
        from gridcast.protocol import messages

        online = []
        for device_id, payload in self.status.items():
            try:
                if messages.decode(payload).state == "online":
                    online.append(device_id)
            except Exception:
                continue
        return sorted(online)
