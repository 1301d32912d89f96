"""One transport interface, several backends chosen by URL.

    mqtt://HOST:PORT                 every device on a broker (paho-mqtt, agent/mqtt.py)
    serial:/dev/ttyUSB0[?device=ID]  one device on a serial port (pyserial), CRC frames
    ble://AA:BB:CC:DD:EE:FF[?device=ID]  one device over BLE (bleak)

Deployment, sync and control are written once above this interface. What devices
send is decoded once, where it comes off the link, and arrives as ``Incoming``
(the typed message, and its bytes) in per-device asyncio queues; a message that
does not decode is dropped there. What goes to devices passes through one place,
``Transport.send`` / ``broadcast``, which seals the messages that must be sealed
(agent/command_signer.py, docs/protocol.md 11) before the backend sends them.
Backends are imported lazily so that a missing optional library only matters when
used. Transport errors are ``TransportError``
(an OSError, so ordinary handlers work).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

from gridcast.agent import presence
from gridcast.agent.command_signer import CommandSigner
from gridcast.protocol import messages, reasons, topics
from gridcast.protocol.errors import GridcastError, ProtocolError

log = logging.getLogger("gridcast.transport")

CHUNK_OVERHEAD_BYTES = 64  # chunk message fields and framing around the data
# On links without topics (serial, BLE) the message kind says what a topic leaf would.
LEAF_OF_KIND = {"chunk_ack": "reply", "chunk_nack": "reply", "activated": "reply",
                "rejected": "reply", "error": "reply", "hello": "hello", "status": "status",
                "telemetry": "telemetry", "sync_req": "sync/req"}
DEFAULT_DEVICE_MAX_FRAME = 1024
HELLO_WAIT_S = 2.0  # a sealed message needs the device's hello (its boot id and keys)
# A device's refusals of what it was sent, by the checks of docs/protocol.md 11: logged
# (at most once per REFUSAL_LOG_S and device), since no sender waits for an answer.
AUTH_REFUSALS = (reasons.UNAUTHENTICATED, reasons.BAD_SIGNATURE, reasons.UNKNOWN_KEY,
                 reasons.REPLAYED, reasons.REORDERED, reasons.STALE, reasons.WRONG_SESSION)
REFUSAL_LOG_S = 10.0


class TransportError(GridcastError, OSError):
    """The link to a broker or device failed; the message says which and why."""


@dataclass(frozen=True)
class Incoming:
    """One message from a device, decoded at the link's edge."""

    device_id: str
    leaf: str  # topic leaf: reply, hello, status, telemetry, sync/req
    payload: bytes  # as it came (kept for relays and logs)
    received_us: int  # agent clock when the link received it
    message: messages.Message = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.message is None:  # built from bytes alone (tests, simple backends)
            object.__setattr__(self, "message", messages.decode(self.payload))


class Transport(abc.ABC):
    """Sends messages to devices and queues what they send back."""

    chunk_bytes: int = 1024
    window: int = 4

    def __init__(self) -> None:
        self.hellos: dict[str, messages.Message] = {}  # device id -> its last hello
        self.status: dict[str, messages.Message] = {}  # device id -> its last status
        self._queues: dict[str, asyncio.Queue[Incoming]] = {}
        self._all: list[asyncio.Queue[Incoming]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called with every Incoming in the backend's receiving thread, before the hop to
        # asyncio (the agent feeds its registry and collector from here).
        self.taps: list[Callable[[Incoming], None]] = []
        # Seals state-changing messages; from GRIDCAST_KEY_FILE unless set by the opener.
        self.signer: CommandSigner | None = CommandSigner.from_env()
        # Sealing and sending are one step per device: counters leave in the order taken
        # (a backend that writes from a thread pool could swap two sends otherwise, and
        # the device would refuse the older one as reordered).
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._refusals_logged: dict[str, float] = {}

    def queue(self, device_id: str) -> asyncio.Queue[Incoming]:
        """Replies from one device (created on first use)."""
        if device_id not in self._queues:
            self._queues[device_id] = asyncio.Queue()
        return self._queues[device_id]

    def listen_all(self) -> asyncio.Queue[Incoming]:
        """Everything every device sends, from now on, until ``unlisten``."""
        q: asyncio.Queue[Incoming] = asyncio.Queue()
        self._all.append(q)
        return q

    def unlisten(self, q: asyncio.Queue[Incoming]) -> None:
        self._all.remove(q)

    async def wait_online(self, ids: list[str], timeout_s: float = 20.0,
                          count_earlier: bool = True) -> None:
        """Until every device in ``ids`` is online: it has said hello (what it runs and the
        frames it takes, which a deploy needs) and its last status is online by
        presence.is_online (a device says hello, then online).

        What the transport already holds counts (a retained hello and status reach it right
        after the SUBACK, possibly before any caller listens), unless ``count_earlier`` is
        False: after a reboot the old ones are no sign of life. TransportError names the
        devices still missing after ``timeout_s`` seconds."""
        queue = self.listen_all()  # same event loop as the delivery: nothing slips between
        try:
            hello = {d for d in ids if d in self.hellos} if count_earlier else set()
            status = {d: self.status.get(d) for d in ids} if count_earlier else {}
            deadline = time.monotonic() + timeout_s
            while missing := [d for d in ids
                              if d not in hello or not presence.is_online(status.get(d))]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransportError(f"devices never came online within {timeout_s:g} s: "
                                         f"{', '.join(sorted(missing))}")
                try:
                    async with asyncio.timeout(left):
                        item = await queue.get()
                except TimeoutError:
                    continue
                if item.leaf == topics.HELLO:
                    hello.add(item.device_id)
                elif item.leaf == topics.STATUS:
                    status[item.device_id] = item.message
        finally:
            self.unlisten(queue)

    def _deliver(self, item: Incoming) -> None:
        """Called from any thread by a backend."""
        if item.leaf == topics.STATUS:
            self.status[item.device_id] = item.message
        elif item.leaf == topics.HELLO:  # here too: sync answers are sealed in this thread
            self.hellos[item.device_id] = item.message
        elif item.message.kind == "error" and item.message.reason in AUTH_REFUSALS:
            self._log_refusal(item)
        for tap in self.taps:
            try:
                tap(item)
            except Exception:  # a failing consumer must not stop the link
                log.exception("%s: handling %s failed", item.device_id, item.message.kind)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._put, item)

    def chunk_bytes_for(self, device_id: str) -> int:
        """Chunk data size: this transport's, capped by what the device said it takes."""
        size = self.chunk_bytes
        hello = self.hellos.get(device_id)
        if hello is None:  # unknown device: assume the smallest frame a device may have
            return min(size, DEFAULT_DEVICE_MAX_FRAME - CHUNK_OVERHEAD_BYTES)
        if hello.max_frame:
            size = min(size, hello.max_frame - CHUNK_OVERHEAD_BYTES)
        return max(64, size)

    def _put(self, item: Incoming) -> None:
        if item.leaf == topics.HELLO:
            self.hellos[item.device_id] = item.message
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

    def seal(self, device_id: str, payload: bytes) -> bytes:
        """``payload`` as it must go to ``device_id``: sealed when it changes state or time
        and the device checks seals, else unchanged (callable from any thread)."""
        if self.signer is None:
            return payload
        return self.signer.seal(device_id, self.hellos.get(device_id), payload)

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        """Send to one device on topic leaf cmd, bundle or sync/resp (sealed if need be)."""
        if self.signer is None:
            await self._send_raw(device_id, leaf, payload)
            return
        if device_id not in self.hellos:
            await self._await_hello(device_id)
        await self._send_sealed(device_id, leaf, payload)

    async def _send_sealed(self, device_id: str, leaf: str, payload: bytes) -> None:
        lock = self._send_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            await self._send_raw(device_id, leaf, self.seal(device_id, payload))

    async def broadcast(self, payload: bytes) -> None:
        """A command for every device at once. With a signer each device gets its own
        sealed copy (its key, its boot id) on its own topic, at once."""
        if self.signer is None:
            await self._broadcast_raw(payload)
            return
        for device_id in sorted(self.hellos):
            await self._send_sealed(device_id, topics.CMD, payload)

    def _log_refusal(self, item: Incoming) -> None:
        now = time.monotonic()
        if now - self._refusals_logged.get(item.device_id, -REFUSAL_LOG_S) < REFUSAL_LOG_S:
            return
        self._refusals_logged[item.device_id] = now
        msg = item.message
        log.warning("%s refused a message (%s): %s%s", item.device_id,
                    reasons.name(msg.reason), msg.detail,
                    "" if self.signer is not None else
                    " (this agent seals nothing: give it the site key, GRIDCAST_KEY_FILE)")

    async def _await_hello(self, device_id: str) -> None:
        """Wait up to HELLO_WAIT_S for a device's hello (a retained one follows the SUBACK
        of a transport that just started); without it the message goes out unsealed and
        a device that checks seals refuses it, saying why."""
        deadline = time.monotonic() + HELLO_WAIT_S
        while device_id not in self.hellos and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _send_raw(self, device_id: str, leaf: str, payload: bytes) -> None:
        """The backend's send: these exact bytes to one device."""
        raise NotImplementedError

    async def _broadcast_raw(self, payload: bytes) -> None:
        """The backend's broadcast: these exact bytes to every device."""
        raise NotImplementedError

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        """Ids of the devices this transport can reach."""
        return sorted(self._queues)


class SingleDeviceLink(Transport):
    """A link to one device with no topics (serial, BLE): CRC frames both ways, and the
    message kind says which topic leaf it would have come on."""

    device_id: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()  # set when the link broke (the port went away)
        self.lost_reason = ""

    def _link_lost(self, why: str) -> None:
        """Called by a backend, from any thread, when the link broke."""
        self.lost_reason = why
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.lost.set)

    def _hello_seen(self) -> None:
        """Called when the device has named itself (backends wake their start())."""

    def _incoming(self, payload: bytes, received: int) -> None:
        try:
            msg = messages.decode(payload)
        except ProtocolError as exc:  # a good CRC around a bad message: a firmware bug
            log.warning("%s: undecodable message dropped (%s)", self.device_id or "device", exc)
            return
        if msg.kind == "hello":
            self.device_id = self.device_id or msg.device_id
            self._hello_seen()
        leaf = LEAF_OF_KIND.get(msg.kind)
        if leaf is not None and self.device_id:
            self._deliver(Incoming(self.device_id, leaf, payload, received, msg))

    async def _broadcast_raw(self, payload: bytes) -> None:
        await self._send_raw(self.device_id or "", topics.CMD, payload)

    async def discover(self, wait_s: float = 1.0) -> list[str]:
        return [self.device_id] if self.device_id else []


def open_transport(url: str, signer: CommandSigner | None = None, **options: Any) -> Transport:
    """The backend for a URL (not started: ``async with``). On serial and BLE,
    ``?device=ID`` names the device up front instead of waiting for its hello.
    ``signer`` seals commands (default: from GRIDCAST_KEY_FILE, if set)."""
    transport = _open_backend(url, **options)
    if signer is not None:
        transport.signer = signer
    return transport


def _open_backend(url: str, **options: Any) -> Transport:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "device" in query and parsed.scheme in ("serial", "ble"):
        options.setdefault("device_id", query["device"][-1])
        url = url.split("?", 1)[0]
        parsed = urlparse(url)
    if parsed.scheme in ("mqtt", "mqtts"):  # mqtts://HOST:PORT?ca=...: agent/broker_url.py
        from gridcast.agent.transport_mqtt import MqttTransport

        return MqttTransport(url, **options)
    if parsed.scheme == "serial":
        from gridcast.agent.transport_serial import SerialTransport

        path = url.split(":", 1)[1]
        return SerialTransport(path[2:] if path.startswith("//") else path, **options)
    if parsed.scheme == "ble":
        from gridcast.agent.transport_ble import BleTransport

        return BleTransport(parsed.netloc, **options)
    raise TransportError(f"unknown transport URL {url!r} (use mqtt://HOST:PORT, "
                         "serial:/dev/ttyUSB0 or ble://ADDRESS)")
