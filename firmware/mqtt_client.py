"""A small MQTT 3.1.1 client for MicroPython asyncio (QoS 0 and 1, last will, keepalive).

Why our own: micropython-lib's umqtt is blocking and cannot be installed with
pip; the device needs asyncio so that the beat scheduler never waits on the
network. TCP_NODELAY is set, or every QoS 1 publish waits ~40 ms for Nagle and
delayed ACKs (see docs/PLATFORM_NOTES from the bench).

QoS 1 messages stay in ``outbox`` until their PUBACK; after a reconnect they are
sent again with the DUP flag, so telemetry survives a broker restart. The outbox
is bounded (MAX_OUTBOX): past it the oldest is dropped and counted in
``dropped``, which the sequence numbers then show as a gap.
"""

import asyncio
import random
import struct

MAX_OUTBOX = 64
MAX_PACKET = 2048 + 512  # the device's max frame plus topic and headers


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s):
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


class MqttClient:
    def __init__(self, client_id, host, port, keepalive_s=10, will=None, on_message=None,
                 on_connect=None, username="", password=""):
        self.client_id = client_id
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.will = will  # (topic, payload, qos, retain)
        self.on_message = on_message
        self.on_connect = on_connect
        self.subscriptions = []  # (topic, qos)
        self.connected = False
        self.outbox = {}  # packet id -> (topic, payload, retain)
        self.order = []  # packet ids, oldest first
        self.dropped = 0
        self.oversized = 0
        self.reconnects = 0
        self._pid = 0
        self._reader = None
        self._writer = None
        self._lock = asyncio.Lock()

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _send(self, packet):
        w = self._writer
        if w is None:
            raise OSError("not connected")
        async with self._lock:
            w.write(packet)
            await w.drain()

    async def _connect_once(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.s.setsockopt(6, 1, 1)  # type: ignore[attr-defined]  # IPPROTO_TCP, NODELAY
        except (AttributeError, OSError):
            pass
        flags = 0x02  # clean session
        payload = _str(self.client_id)
        if self.will is not None:
            topic, message, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(message)
        if self.username:  # the broker's password file and ACL (gridcast provision)
            flags |= 0x80
            payload += _str(self.username)
            if self.password:
                flags |= 0x40
                payload += _str(self.password)
        var = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive_s)
        body = var + payload
        writer.write(bytes([0x10]) + _varint(len(body)) + body)
        await writer.drain()
        head = await reader.readexactly(4)
        if head[0] != 0x20 or head[3] != 0:
            writer.close()
            raise OSError("broker refused the connection (code %d)" % head[3])
        self._reader, self._writer = reader, writer
        self.connected = True
        for topic, qos in self.subscriptions:
            await self._subscribe_packet(topic, qos)
        for pid in self.order:  # resend what was never acknowledged
            topic, message, retain = self.outbox[pid]
            await self._publish_packet(topic, message, 1, retain, pid, dup=True)

    async def run(self):
        """Connect, then serve the connection; reconnect with jittered capped back-off."""
        delay_ms = 250
        while True:
            try:
                await self._connect_once()
                delay_ms = 250
                if self.on_connect is not None:
                    await self.on_connect()
                await self._serve()
            except (OSError, EOFError, asyncio.TimeoutError, ValueError, MemoryError):
                pass
            self._drop_connection()
            self.reconnects += 1
            await asyncio.sleep_ms(delay_ms + random.getrandbits(8))
            delay_ms = min(delay_ms * 2, 8000)

    def _drop_connection(self):
        self.connected = False
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:
                pass
        self._reader = self._writer = None

    async def _serve(self):
        ping = asyncio.create_task(self._pinger())
        try:
            while True:
                await self._read_packet()
        finally:
            ping.cancel()

    async def _pinger(self):
        while True:
            await asyncio.sleep_ms(self.keepalive_s * 500)
            await self._send(b"\xc0\x00")

    async def _read_packet(self):
        r = self._reader
        if r is None:
            raise OSError("not connected")
        first = (await r.readexactly(1))[0]
        n = 0
        shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 21:
                raise ValueError("bad remaining length")
        if n > MAX_PACKET:
            # Read it away in small pieces: one oversized message must not cost the
            # connection, let alone the heap.
            while n:
                n -= len(await r.readexactly(min(n, 256)))
            self.oversized += 1
            return
        body = await r.readexactly(n) if n else b""
        kind = first & 0xF0
        if kind == 0x30:
            qos = (first >> 1) & 3
            tlen = struct.unpack_from("!H", body, 0)[0]
            topic = body[2:2 + tlen].decode()
            at = 2 + tlen
            if qos:
                pid = struct.unpack_from("!H", body, at)[0]
                at += 2
                await self._send(b"\x40\x02" + struct.pack("!H", pid))
            if self.on_message is not None:
                await self.on_message(topic, body[at:])
        elif kind == 0x40:
            pid = struct.unpack_from("!H", body, 0)[0]
            if pid in self.outbox:
                del self.outbox[pid]
                self.order.remove(pid)

    async def _subscribe_packet(self, topic, qos):
        body = struct.pack("!H", self._next_pid()) + _str(topic) + bytes([qos])
        await self._send(bytes([0x82]) + _varint(len(body)) + body)

    async def subscribe(self, topic, qos=1):
        self.subscriptions.append((topic, qos))
        if self.connected:
            await self._subscribe_packet(topic, qos)

    async def _publish_packet(self, topic, payload, qos, retain, pid=0, dup=False):
        head = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
        var = _str(topic) + (struct.pack("!H", pid) if qos else b"")
        await self._send(bytes([head]) + _varint(len(var) + len(payload)) + var + payload)

    async def publish(self, topic, payload, qos=0, retain=False):
        """Send now if connected; a QoS 1 message is also kept until acknowledged."""
        pid = 0
        if qos:
            pid = self._next_pid()
            if len(self.order) >= MAX_OUTBOX:
                old = self.order.pop(0)
                del self.outbox[old]
                self.dropped += 1
            self.outbox[pid] = (topic, payload, retain)
            self.order.append(pid)
        if not self.connected:
            return False
        try:
            await self._publish_packet(topic, payload, qos, retain, pid)
            return True
        except OSError:
            return False

    async def disconnect(self):
        if self.connected:
            try:
                await self._send(b"\xe0\x00")
            except OSError:
                pass
        self._drop_connection()
