"""The bench's own tools must not invent faults: the jitter proxy is symmetric."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

from gridcast.hil.faults import Jitter, MqttJitterProxy

PACKETS = 200


def _packet() -> bytes:
    body = b"\x00\x01t" + struct.pack("!Q", time.time_ns())
    return bytes([0x30, len(body)]) + body


def _collect(sock: socket.socket, out: list[float]) -> None:
    buf = b""
    while len(out) < PACKETS:
        data = sock.recv(4096)
        if not data:
            return
        buf += data
        while len(buf) >= 13:
            packet, buf = buf[:13], buf[13:]
            out.append((time.time_ns() - struct.unpack("!Q", packet[5:])[0]) / 1e6)


def test_jitter_proxy_delays_both_directions_alike():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    proxy = MqttJitterProxy("127.0.0.1", server.getsockname()[1], Jitter(10, 30),
                            Jitter(10, 30)).start()
    try:
        device = socket.create_connection(("127.0.0.1", proxy.port))
        broker, _ = server.accept()
        for s in (device, broker):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up: list[float] = []
        down: list[float] = []
        readers = [threading.Thread(target=_collect, args=(broker, up)),
                   threading.Thread(target=_collect, args=(device, down))]
        for t in readers:
            t.start()
        for _ in range(PACKETS):
            device.sendall(_packet())
            broker.sendall(_packet())
            time.sleep(0.02)
        for t in readers:
            t.join(5)
    finally:
        proxy.stop()
    assert len(up) == len(down) == PACKETS
    assert 10.0 <= min(up) < 11.0 and 10.0 <= min(down) < 11.0
    assert abs(min(up) - min(down)) < 0.5
    # In-order release may hold a packet behind a later one; the bulk stays alike.
    assert abs(statistics.median(up) - statistics.median(down)) < 3
