"""One transport interface, several backends chosen by URL.

    mqtt://HOST:PORT        every device on a broker (paho-mqtt)
    serial:/dev/ttyUSB0     one device on a serial port (pyserial), CRC frames
    ble://AA:BB:CC:DD:EE:FF one device over BLE (bleak)

Deployment, sync and control are written once above this interface. Incoming
device messages arrive as ``Incoming`` in per-device asyncio queues; backends
are imported lazily so that a missing optional library only matters when used.
Transport errors are ``TransportError`` (an OSError, so ordinary handlers work).
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlparse

from gridcast.protocol import topics
from gridcast.protocol.errors import GridcastError

CHUNK_OVERHEAD_BYTES = 64  # chunk message fields and framing around the data
# On links without topics (serial, BLE) the message kind says what a topic leaf would.
LEAF_OF_KIND = {"chunk_ack": "reply", "chunk_nack": "reply", "activated": "reply",
                "rejected": "reply", "error": "reply", "hello": "hello", "status": "status",
                "telemetry": "telemetry", "sync_req": "sync/req"}
DEFAULT_DEVICE_MAX_FRAME = 1024


class TransportError(GridcastError, OSError):
    """The link to a broker or device failed; the message says which and why."""


@dataclass(frozen=True)
class Incoming:
    device_id: str
    leaf: str  # topic leaf: reply, hello, status, telemetry, sync/req
    payload: bytes
    received_us: int


class Transport(abc.ABC):
    """Sends messages to devices and queues what they send back."""

    chunk_bytes: int = 1024
    window: int = 4

    def __init__(self) -> None:
        self.hellos: dict[str, bytes] = {}  # device id -> its last hello (capabilities)
        self._queues: dict[str, asyncio.Queue[Incoming]] = {}
        self._all: list[asyncio.Queue[Incoming]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def queue(self, device_id: str) -> asyncio.Queue[Incoming]:
        """Replies from one device (created on first use)."""
        if device_id not in self._queues:
            self._queues[device_id] = asyncio.Queue()
        return self._queues[device_id]

    def listen_all(self) -> asyncio.Queue[Incoming]:
        q: asyncio.Queue[Incoming] = asyncio.Queue()
        self._all.append(q)
        return q

    def _deliver(self, item: Incoming) -> None:
        """Called from any thread by a backend."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._put, item)

    def chunk_bytes_for(self, device_id: str) -> int:
        """Chunk data size: this transport's, capped by what the device said it takes."""
        from gridcast.protocol import messages

        size = self.chunk_bytes
        hello = self.hellos.get(device_id)
        if hello is None:  # unknown device: assume the smallest frame a device may have
            return min(size, DEFAULT_DEVICE_MAX_FRAME - CHUNK_OVERHEAD_BYTES)
        if hello is not None:
            try:
                max_frame = messages.decode(hello).max_frame
            except Exception:
                return size
            if max_frame:
                size = min(size, max_frame - CHUNK_OVERHEAD_BYTES)
        return max(64, size)

    def _put(self, item: Incoming) -> None:
        if item.leaf == "hello":
            self.hellos[item.device_id] = item.payload
        if item.leaf == "reply" and item.device_id in self._queues:
            self._queues[item.device_id].put_nowait(item)
        for q in self._all:
            q.put_nowait(item)

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        """Send to one device on topic leaf cmd, bundle or sync/resp."""

    @abc.abstractmethod
    async def broadcast(self, payload: bytes) -> None:
        """A command for every device at once."""

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        """Ids of the devices this transport can reach."""
        return sorted(self._queues)


class SingleDeviceLink(Transport):
    """A link to one device with no topics (serial, BLE): CRC frames both ways, and the
    message kind says which topic leaf it would have come on."""

    device_id: str | None = None

    def _hello_seen(self) -> None:
        """Called when the device has named itself (backends wake their start())."""

    def _incoming(self, payload: bytes, received: int) -> None:
        from gridcast.protocol import messages
        from gridcast.protocol.errors import ProtocolError

        try:
            msg = messages.decode(payload)
        except ProtocolError:
            return
        if msg.kind == "hello":
            self.device_id = self.device_id or msg.device_id
            self._hello_seen()
        leaf = LEAF_OF_KIND.get(msg.kind)
        if leaf is not None and self.device_id:
            self._deliver(Incoming(self.device_id, leaf, payload, received))

    async def broadcast(self, payload: bytes) -> None:
        await self.send(self.device_id or "", topics.CMD, payload)

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        return [self.device_id] if self.device_id else []


def open_transport(url: str, **options: Any) -> Transport:
    parsed = urlparse(url)
    if parsed.scheme == "mqtt":
        from gridcast.agent.transport_mqtt import MqttTransport

        return MqttTransport(parsed.hostname or "127.0.0.1", parsed.port or 1883, **options)
    if parsed.scheme == "serial":
        from gridcast.agent.transport_serial import SerialTransport

        path = url.split(":", 1)[1]
        return SerialTransport(path[2:] if path.startswith("//") else path, **options)
    if parsed.scheme == "ble":
        from gridcast.agent.transport_ble import BleTransport

        return BleTransport(parsed.netloc, **options)
    raise TransportError(f"unknown transport URL {url!r} (use mqtt://HOST:PORT, "
                         "serial:/dev/ttyUSB0 or ble://ADDRESS)")
