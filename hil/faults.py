"""Fault injectors for the bench: network latency/jitter/loss, serial links, corruption.

``MqttJitterProxy`` sits between devices and the broker (tc netem does not exist
on these machines): it cuts each TCP direction into MQTT packets and releases
every packet after its own random delay, never reordering (TCP would not), and
can drop QoS 0 publishes (sync traffic) to model loss. It runs in its own
process with plain threads, so that both directions get the same delays.

``MqttTamperProxy`` is the same kind of proxy with an attacker in it (hil/forger.py):
it forges, replays, reorders, alters and holds back what the broker sends devices.

``SerialPair`` gives a device and the agent each a pty, relayed by a thread that
can throttle to a real baud rate and corrupt, duplicate or swap frames.

``stall_process`` freezes a process (SIGSTOP, then SIGCONT) for a while: a VM stall as
the virtual room's JACK server lives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass

from gridcast.hil.forger import Forger
from gridcast.protocol import frames


@dataclass
class Jitter:
    min_ms: float = 10.0
    max_ms: float = 30.0
    qos0_loss: float = 0.0

    def delay_s(self, rng: random.Random) -> float:
        return rng.uniform(self.min_ms, self.max_ms) / 1000.0


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


TLS_RECORD_TYPES = (0x14, 0x15, 0x16, 0x17)  # never the first byte of an MQTT packet


def _recv_packet(sock: socket.socket) -> bytes:
    """One MQTT packet, or over TLS (mqtts) one TLS record: each MQTT packet the client
    and the broker write is a record of its own, so the jitter still applies per message."""
    first = _recv_exactly(sock, 1)
    if first[0] in TLS_RECORD_TYPES:
        head = _recv_exactly(sock, 4)  # version (2), length (2)
        return first + head + _recv_exactly(sock, int.from_bytes(head[2:4], "big"))
    raw = bytearray()
    length, shift = 0, 0
    while True:
        b = _recv_exactly(sock, 1)[0]
        raw.append(b)
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first + bytes(raw) + (_recv_exactly(sock, length) if length else b"")


class _ProxyServer:
    """The proxy itself, in its own process (see MqttJitterProxy).

    Per connection and direction, one thread cuts the stream into MQTT packets and
    stamps each with its release time, another sleeps until that time and sends
    it. Plain threads and time.sleep keep the release precise to well under a
    millisecond (an asyncio timer rounds up to the next millisecond).
    """

    def __init__(self, broker: tuple[str, int], up: Jitter, down: Jitter, seed: int) -> None:
        self.broker = broker
        self.up, self.down = up, down
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def _direction(self, src: socket.socket, dst: socket.socket, jitter: Jitter) -> None:
        import queue

        q: queue.Queue[tuple[float, bytes] | None] = queue.Queue()

        def release() -> None:
            while True:
                item = q.get()
                if item is None:
                    break
                due, packet = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(packet)
                except OSError:
                    break
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=release, daemon=True).start()
        last_due = 0.0
        try:
            while True:
                packet = _recv_packet(src)
                qos = (packet[0] >> 1) & 3
                with self.lock:
                    drop = jitter.qos0_loss and self.rng.random() < jitter.qos0_loss
                    delay = jitter.delay_s(self.rng)
                if packet[0] & 0xF0 == 0x30 and qos == 0 and drop:  # (plain MQTT only)
                    continue
                due = max(last_due, time.monotonic() + delay)
                last_due = due
                q.put((due, packet))
        except (ConnectionError, OSError):
            q.put(None)

    def _client(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.broker)
        except OSError:
            conn.close()
            return
        for s in (conn, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._direction, args=(conn, upstream, self.up),
                         daemon=True).start()
        threading.Thread(target=self._direction, args=(upstream, conn, self.down),
                         daemon=True).start()

    def serve(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        print(listener.getsockname()[1], flush=True)
        while True:
            conn, _ = listener.accept()
            self._client(conn)


class MqttJitterProxy:
    """TCP proxy on 127.0.0.1:port that delays every MQTT packet, in order.

    It runs in a process of its own: sharing an interpreter (and its GIL) with the
    agent would delay one direction more than the other, an asymmetry that no
    clock-sync method can see and that this bench must not invent.
    """

    def __init__(self, broker_host: str, broker_port: int, up: Jitter, down: Jitter,
                 seed: int = 7) -> None:
        self.args = [broker_host, str(broker_port), str(up.min_ms), str(up.max_ms),
                     str(up.qos0_loss), str(down.min_ms), str(down.max_ms),
                     str(down.qos0_loss), str(seed)]
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> MqttJitterProxy:
        self.proc = subprocess.Popen([sys.executable, "-m", "gridcast.hil.faults", "proxy",
                                      *self.args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class _TamperServer(_ProxyServer):
    """The proxy with an attacker (hil/forger.py) on what the broker sends each device:
    it forwards real packets (holding some back, to reorder or stale them) and injects
    one forgery every ``interval_s`` per device, ``budget`` in all; the tally goes to
    ``stats_path`` (JSON) about every 0.2 s."""

    def __init__(self, broker: tuple[str, int], interval_s: float, budget: int,
                 stats_path: str, seed: int) -> None:
        super().__init__(broker, Jitter(0, 0), Jitter(0, 0), seed)
        self.interval_s = interval_s
        self.budget = budget
        self.stats_path = stats_path
        self.forgers: dict[int, Forger] = {}

    def _client(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.broker)
        except OSError:
            conn.close()
            return
        for s in (conn, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        forger = Forger(seed=self.rng.randrange(1 << 30))
        with self.lock:
            self.forgers[len(self.forgers)] = forger
        send_lock = threading.Lock()
        threading.Thread(target=self._direction, args=(conn, upstream, self.up),
                         daemon=True).start()
        threading.Thread(target=self._down, args=(upstream, conn, forger, send_lock),
                         daemon=True).start()
        threading.Thread(target=self._inject, args=(conn, forger, send_lock),
                         daemon=True).start()

    def _down(self, src: socket.socket, dst: socket.socket, forger: Forger,
              send_lock: threading.Lock) -> None:
        try:
            while True:
                packet = _recv_packet(src)
                with self.lock:
                    out = forger.on_legit(packet, time.monotonic())
                with send_lock:
                    for p in out:
                        dst.sendall(p)
        except (ConnectionError, OSError):
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _inject(self, dst: socket.socket, forger: Forger, send_lock: threading.Lock) -> None:
        next_s = time.monotonic()
        while True:
            next_s += self.interval_s
            time.sleep(max(0.0, next_s - time.monotonic()))
            with self.lock:
                out = forger.due(time.monotonic())
                if sum(f.injected for f in self.forgers.values()) < self.budget:
                    packet = forger.forge()
                    if packet is not None:
                        out.append(packet)
            try:
                with send_lock:
                    for p in out:
                        dst.sendall(p)
            except OSError:
                return

    def write_stats(self) -> None:
        with self.lock:
            data = {"budget": self.budget, "devices": [
                {"topic": f.cmd_topic, "sent": dict(f.sent),
                 "expected": {str(k): v for k, v in f.expected.items()}}
                for f in self.forgers.values()]}
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.stats_path)

    def serve_with_stats(self) -> None:
        def stats() -> None:
            while True:
                time.sleep(0.2)
                self.write_stats()

        threading.Thread(target=stats, daemon=True).start()
        self.serve()


class MqttTamperProxy:
    """TCP proxy on 127.0.0.1:port between devices and the broker that attacks what the
    broker sends them: ``count`` forgeries in all, one every ``interval_s`` per device
    (see hil/forger.py). ``stats()`` reads its tally: per device, what it sent and the
    refusal reasons the device must count. Its own process, like MqttJitterProxy."""

    def __init__(self, broker_host: str, broker_port: int, count: int, interval_s: float,
                 stats_path: str, seed: int = 11) -> None:
        self.args = [broker_host, str(broker_port), str(count), str(interval_s), stats_path,
                     str(seed)]
        self.stats_path = stats_path
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> MqttTamperProxy:
        self.proc = subprocess.Popen([sys.executable, "-m", "gridcast.hil.faults", "tamper",
                                      *self.args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def stats(self) -> dict:
        """The tally as last written ({"devices": []} before the first write)."""
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"devices": []}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def _raw_pty() -> tuple[int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    return master, path


class SerialPair:
    """Two ptys (device side, agent side) joined by a relay thread.

    ``baud`` throttles both directions to a real line rate (10 bits per byte);
    ``mangle`` (agent -> device only) may rewrite each chunk for fault injection.
    """

    def __init__(self, baud: int | None = None) -> None:
        self.device_master, self.device_path = _raw_pty()
        self.agent_master, self.agent_path = _raw_pty()
        self.bytes_per_s = baud / 10 if baud else None
        self.to_device_bytes = 0
        self.to_agent_bytes = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._relay, args=(self.agent_master, self.device_master,
                                                       "to_device_bytes"), daemon=True),
            threading.Thread(target=self._relay, args=(self.device_master, self.agent_master,
                                                       "to_agent_bytes"), daemon=True),
        ]

    def _relay(self, src: int, dst: int, counter: str) -> None:
        import select

        budget_start = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.1)
            if not ready:
                budget_start, sent = time.monotonic(), 0
                continue
            try:
                data = os.read(src, 1024 if self.bytes_per_s else 65536)
            except OSError:
                return
            for i in range(0, len(data), 64 if self.bytes_per_s else len(data)):
                piece = data[i:i + 64] if self.bytes_per_s else data
                if self.bytes_per_s:
                    due = budget_start + (sent + len(piece)) / self.bytes_per_s
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    sent += len(piece)
                try:
                    os.write(dst, piece)
                except OSError:
                    return
                setattr(self, counter, getattr(self, counter) + len(piece))

    def start(self) -> SerialPair:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1)
        for fd in (self.device_master, self.agent_master):
            with contextlib.suppress(OSError):
                os.close(fd)


def stall_process(pid: int, stall_ms: float, after_s: float = 0.0) -> threading.Thread:
    """Freeze process ``pid`` for ``stall_ms`` starting ``after_s`` from now (a thread;
    join it to know the stall is over)."""
    def stall() -> None:
        time.sleep(after_s)
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(stall_ms / 1e3)
            finally:
                os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=stall, name=f"stall-{pid}", daemon=True)
    thread.start()
    return thread


def corrupted_frames(payloads: list[bytes], rng: random.Random) -> bytes:
    """Frames each with one flipped bit somewhere after the sync pair (all must be refused)."""
    out = bytearray()
    for p in payloads:
        frame = bytearray(frames.encode_frame(p))
        i = rng.randrange(2, len(frame))
        frame[i] ^= 1 << rng.randrange(8)
        out += frame
    return bytes(out)


def _main(argv: list[str]) -> None:
    if argv[:1] == ["tamper"]:
        host, port, count, interval, stats_path, seed = argv[1:7]
        tamper = _TamperServer((host, int(port)), float(interval), int(count), stats_path,
                               int(seed))
        with contextlib.suppress(KeyboardInterrupt):
            tamper.serve_with_stats()
        return
    if argv[:1] != ["proxy"]:
        raise SystemExit("usage: python -m gridcast.hil.faults proxy HOST PORT UP_MIN UP_MAX "
                         "UP_LOSS DOWN_MIN DOWN_MAX DOWN_LOSS SEED")
    host, port, umin, umax, uloss, dmin, dmax, dloss, seed = argv[1:10]
    server = _ProxyServer((host, int(port)), Jitter(float(umin), float(umax), float(uloss)),
                          Jitter(float(dmin), float(dmax), float(dloss)), int(seed))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()


if __name__ == "__main__":
    _main(sys.argv[1:])
