"""A small MQTT 3.1.1 client for MicroPython asyncio (QoS 0 and 1, last will, keepalive).

Why our own: micropython-lib's umqtt is blocking and cannot be installed with
pip; the device needs asyncio so that the beat scheduler never waits on the
network. TCP_NODELAY is set, or every QoS 1 publish waits ~40 ms for Nagle and
delayed ACKs (see docs/PLATFORM_NOTES from the bench).

QoS 1 messages stay in ``outbox`` until their PUBACK; after a reconnect they are
sent again with the DUP flag, so telemetry survives a broker restart. The outbox
is bounded (MAX_OUTBOX): past it the oldest is dropped and counted in
``dropped``, which the sequence numbers then show as a gap.

TLS (a provisioned site, ``mqtts://``): ``tls_context(ca_pem)`` makes an mbedTLS
context that verifies the broker's chain against the site CA and its name against
the host dialled (``server_hostname``). A failed handshake (another CA, an expired
certificate, a wrong name, a clock far off, a client certificate the broker refuses)
is logged once per distinct reason through ``log`` and kept in ``last_error``; the
client keeps retrying with its back-off, and the rest of the device (the show) runs
on. ``handshake_ms`` is how long the last connect took until CONNACK.
"""

import asyncio
import binascii
import random
import select
import socket
import struct
import time

MAX_OUTBOX = 64
MAX_PACKET = 2048 + 512  # the device's max frame plus topic and headers
# Bytes asked of the stream per read. Packets are parsed from a buffer, not read byte by
# byte: over TLS every call on the stream costs a pass of the event loop (about 1 ms in
# the unix port), and the four calls a packet took made every message from the broker
# about 3 ms late while the way up was not, which clock sync cannot tell from an offset
# (bench/tls.py measures both ways).
RX_CHUNK = 1024


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


def pem_to_der(pem):
    """The DER bytes of the first PEM block (this port's mbedTLS parses DER only)."""
    body = []
    inside = False
    for line in pem.split("\n"):
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside = True
        elif line.startswith("-----END"):
            break
        elif inside and line:
            body.append(line)
    if not body:
        raise ValueError("no PEM block")
    return binascii.a2b_base64("".join(body))


def tls_context(ca_pem, cert_pem="", key_pem=""):
    """A client context that requires the broker's certificate to chain to ``ca_pem``."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # the stub lacks it
    ctx.load_verify_locations(cadata=pem_to_der(ca_pem))
    if cert_pem:
        ctx.load_cert_chain(pem_to_der(cert_pem), pem_to_der(key_pem))
    return ctx


class UnusableTls:
    """Stands in for a context that could not be made: every attempt fails with why."""

    def __init__(self, reason):
        self.reason = reason

    def wrap_socket(self, sock, server_hostname=None, do_handshake_on_connect=True):
        raise ValueError(self.reason)


def describe_failure(exc, tls):
    """One line for why a connection attempt failed (mbedTLS's own words for TLS)."""
    text = " ".join(str(a) for a in exc.args).strip() if exc.args else ""
    if tls and isinstance(exc, ValueError) and "unusable" in text:
        return "TLS: " + text
    if tls and isinstance(exc, ValueError):  # the certificate check (mbedTLS verify info)
        return "TLS: the broker's certificate was rejected: " + " / ".join(
            p.strip() for p in text.split("\n") if p.strip())
    if tls and isinstance(exc, OSError) and exc.args and isinstance(exc.args[0], int) \
            and exc.args[0] < 0:
        code = -exc.args[0]
        why = _MBEDTLS.get(code, "")
        return "TLS: handshake failed (mbedTLS -0x%04X%s%s)" % (
            code, ": " if why else "", why or (" " + text if text else ""))
    if not tls and (isinstance(exc, EOFError) or (isinstance(exc, OSError) and exc.args
                                                    and exc.args[0] == 104)):
        return ("the broker closed the connection before CONNACK (a TLS-only broker? "
                "then config.json's broker must be mqtts://HOST:PORT with ca_pem)")
    return "%s %s" % (type(exc).__name__, text or "")


_MBEDTLS = {
    0x7780: "the broker sent a fatal alert (a client certificate it refuses, or no "
            "common cipher)",
    0x7280: "the broker closed the connection during the handshake (plain listener, or "
            "it refused this client)",
    0x2700: "the broker's certificate was rejected",
    0x7200: "bad handshake message (not a TLS listener?)",
    0x7100: "the broker's certificate was rejected",
}


async def open_stream(host, port, tls=None, timeout_ms=5000):
    """A TCP (or TLS) stream with TCP_NODELAY set before the handshake: asyncio's
    open_connection wraps the socket before anyone can set options on it."""
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(ai[0], ai[1], ai[2])
    sock.setblocking(False)
    try:
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    except (AttributeError, OSError):
        pass
    try:
        sock.connect(ai[-1])
    except OSError as exc:
        if exc.errno != 115 and exc.errno != 119:  # EINPROGRESS (Linux 115, lwIP 119)
            sock.close()
            raise
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    start = time.ticks_ms()
    while True:
        ready = poller.poll(0)
        if ready:
            if ready[0][1] & (select.POLLERR | select.POLLHUP):
                sock.close()
                raise OSError(111)  # ECONNREFUSED
            break
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            sock.close()
            raise OSError(110)  # ETIMEDOUT
        await asyncio.sleep_ms(5)
    stream_sock = sock
    if tls is not None:
        try:
            stream_sock = tls.wrap_socket(sock, server_hostname=host,
                                          do_handshake_on_connect=False)
        except (OSError, ValueError):
            sock.close()
            raise
        stream_sock.setblocking(False)
    stream = asyncio.StreamReader(stream_sock)
    return stream, stream, (sock if tls is not None else None)


def _readable(sock):
    """Park until ``sock`` has data (``await`` it). The event loop polls a socket with a
    descriptor natively, but an SSL socket object only in 1 ms steps (in the unix port):
    a TLS reader waits on the TCP socket beneath instead, and messages from the broker
    arrive as promptly as over plain TCP (clock sync needs both ways alike)."""
    yield asyncio.core._io_queue.queue_read(sock)  # type: ignore[attr-defined]


class MqttClient:
    def __init__(self, client_id, host, port, keepalive_s=10, will=None, on_message=None,
                 on_connect=None, username="", password="", tls=None, log=None,
                 before_connect=None):
        self.client_id = client_id
        self.tls = tls  # an ssl.SSLContext (tls_context) or None for plain TCP
        self.log = log  # callable(text): the device's log
        # awaited before each attempt: the TLS handshake computes in blocking steps, so the
        # app starts it just after a beat (Player.quiet), not just before one
        self.before_connect = before_connect
        self.last_error = ""  # why the last attempt failed ("" once connected)
        self.failures = 0  # connection attempts that failed
        self.handshake_ms = 0  # TCP (+ TLS) + CONNACK of the last connect
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
        self._raw = None  # the TCP socket beneath TLS (waited on for data)
        self._rx = bytearray()  # received, not yet parsed
        self._rx_chunk = memoryview(bytearray(RX_CHUNK))
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
        started = time.ticks_ms()
        reader, writer, self._raw = await open_stream(self.host, self.port, self.tls)
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
        self._rx = bytearray()
        self._reader = reader
        head = await self._take(4)
        if head[0] != 0x20 or head[3] != 0:
            writer.close()
            raise OSError("broker refused the connection (code %d%s)" % (
                head[3], ": bad user name or password" if head[3] in (4, 5) else ""))
        self.handshake_ms = time.ticks_diff(time.ticks_ms(), started)
        if self.last_error and self.log is not None:
            self.log("mqtt: connected to %s:%d after %d failed attempts" % (
                self.host, self.port, self.failures))
        self.last_error = ""
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
                if self.before_connect is not None:
                    await self.before_connect()
                await self._connect_once()
                delay_ms = 250
                if self.on_connect is not None:
                    await self.on_connect()
                await self._serve()
            except (OSError, EOFError, asyncio.TimeoutError, ValueError, MemoryError) as exc:
                self._note_failure(exc)
            self._drop_connection()
            self.reconnects += 1
            await asyncio.sleep_ms(delay_ms + random.getrandbits(8))
            delay_ms = min(delay_ms * 2, 8000)

    def _note_failure(self, exc):
        """Remember why, and log it when the reason changes (not at every retry)."""
        if self.connected:  # a connection that worked and then dropped
            return
        self.failures += 1
        why = describe_failure(exc, self.tls is not None)
        if why != self.last_error:
            self.last_error = why
            if self.log is not None:
                self.log("mqtt: %s:%d: %s; retrying with back-off" % (self.host, self.port, why))

    def _drop_connection(self):
        self.connected = False
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:
                pass
        self._reader = self._writer = self._raw = None
        self._rx = bytearray()

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

    async def _fill(self, need):
        """Read until ``need`` bytes are buffered, one stream call per arrival."""
        r = self._reader
        if r is None:
            raise OSError("not connected")
        chunk = self._rx_chunk
        while len(self._rx) < need:
            if self._raw is not None:
                try:  # what mbedTLS has decrypted, or None (EAGAIN): wait on TCP
                    got = r.s.readinto(chunk)
                except OSError as exc:
                    if exc.errno != 11:  # EAGAIN
                        raise
                    got = None
                if got is None:
                    await _readable(self._raw)
                    continue
            else:
                got = await r.readinto(chunk)
            if got is None:  # a TLS record not complete yet
                continue
            if not got:
                raise EOFError("the broker closed the connection")
            self._rx += chunk[:got]

    async def _take(self, n):
        await self._fill(n)
        data = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return data

    async def _read_packet(self):
        await self._fill(2)
        first = self._rx[0]
        n = 0
        shift = 0
        at = 1
        while True:
            await self._fill(at + 1)
            b = self._rx[at]
            at += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 21:
                raise ValueError("bad remaining length")
        self._rx = self._rx[at:]
        if n > MAX_PACKET:
            # Drop it as it comes: one oversized message must not cost the connection,
            # let alone the heap.
            while n:
                await self._fill(1)
                k = min(n, len(self._rx))
                self._rx = self._rx[k:]
                n -= k
            self.oversized += 1
            return
        body = await self._take(n) if n else b""
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
