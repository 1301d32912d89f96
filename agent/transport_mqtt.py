"""MQTT backend: every device on a broker, over the process's one MqttConnection.

Messages are decoded in the connection's network thread, once; sync requests are
answered right there (see SyncResponder), everything else is queued for asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gridcast.agent import presence
from gridcast.agent.mqtt import MqttConnection, MqttMessage, Subscription
from gridcast.agent.transport import Incoming, Transport
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError

log = logging.getLogger("gridcast.transport")

SyncHandler = Callable[[str, messages.Message, int], bytes | None]
DEVICE_LEAVES = (topics.REPLY, topics.HELLO, topics.STATUS, topics.TELEMETRY, topics.SYNC_REQ)


class MqttTransport(Transport):
    chunk_bytes = 8192  # capped by each device's max_frame (its retained hello)
    window = 4

    def __init__(self, host: str | MqttConnection, port: int = 1883,
                 client_id: str | None = None, username: str | None = None,
                 password: str | None = None, connect_timeout_s: float = 5.0,
                 telemetry: bool = True) -> None:
        """``host``: a broker (this transport makes and owns its connection), or the
        process's MqttConnection (shared: started and stopped by its owner).
        ``telemetry=False`` leaves telemetry to a collector on the same connection."""
        super().__init__()
        if isinstance(host, MqttConnection):
            self.mqtt, self._owned = host, False
        else:
            self.mqtt = MqttConnection(host, port, client_id=client_id, username=username,
                                       password=password)
            self._owned = True
        self.host, self.port = self.mqtt.host, self.mqtt.port
        self.connect_timeout_s = connect_timeout_s
        self.leaves = tuple(leaf for leaf in DEVICE_LEAVES
                            if telemetry or leaf != topics.TELEMETRY)
        self._subs: list[Subscription] = []
        # Called in the network thread for sync requests, so that answers leave without a
        # hop to asyncio (see SyncResponder).
        self.sync_handler: SyncHandler | None = None
        self.malformed = 0
        # Called with each device id before its message is decoded; False drops the
        # message (the agent's per-device rate limit, agent/rate_limit.py).
        self.admit: Callable[[str], bool] | None = None
        self._malformed_logged: dict[str, float] = {}

    def _on_message(self, m: MqttMessage) -> None:
        parsed = topics.parse_device_topic(m.topic)
        if parsed is None:
            return
        device_id, leaf = parsed
        if self.admit is not None and not self.admit(device_id):
            return
        try:
            msg = messages.decode(m.payload)
        except ProtocolError as exc:
            self.malformed += 1
            now = time.monotonic()
            if now - self._malformed_logged.get(m.topic, -1e9) >= 60:  # once a minute a topic
                self._malformed_logged[m.topic] = now
                log.warning("%s: malformed message dropped (%s)", m.topic, exc)
            return
        if leaf == topics.SYNC_REQ and self.sync_handler is not None:
            reply = self.sync_handler(device_id, msg, m.received_us)
            if reply is not None:
                self.mqtt.publish(topics.device_topic(device_id, topics.SYNC_RESP),
                                  self.seal(device_id, reply), qos=0)
            return
        self._deliver(Incoming(device_id, leaf, bytes(m.payload), m.received_us, msg))

    async def start(self) -> None:
        # Retained hellos and status messages follow the SUBACK, possibly before a caller's
        # listener exists; ``hellos`` and ``status`` keep them (see wait_online).
        self._subs = [self.mqtt.subscribe(f"{topics.PREFIX}/dev/+/{leaf}", topics.QOS[leaf],
                                          self._on_message) for leaf in self.leaves]
        if self._owned:  # MqttError is a TransportError naming broker, topic and cause
            await self.mqtt.start_async(self.connect_timeout_s)

    async def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        if self._owned:
            await asyncio.to_thread(self.mqtt.stop)

    async def _send_raw(self, device_id: str, leaf: str, payload: bytes) -> None:
        self.mqtt.publish(topics.device_topic(device_id, leaf), payload,
                          qos=topics.QOS.get(leaf, 1))

    async def _broadcast_raw(self, payload: bytes) -> None:
        self.mqtt.publish(topics.BROADCAST_CMD, payload, qos=1)

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        """Devices whose retained status says online (read from the broker)."""
        await asyncio.sleep(wait_s)
        return sorted(d for d, status in list(self.status.items()) if presence.is_online(status))
