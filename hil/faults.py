"""Fault injectors for the bench: network latency/jitter/loss, serial links, corruption.

``MqttJitterProxy`` sits between devices and the broker (tc netem does not exist
on these machines): it cuts each TCP direction into MQTT packets and releases
every packet after its own random delay, never reordering (TCP would not), and
can drop QoS 0 publishes (sync traffic) to model loss.

``SerialPair`` gives a device and the agent each a pty, relayed by a thread that
can throttle to a real baud rate and corrupt, duplicate or swap frames.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import tty
from dataclasses import dataclass

from gridcast.protocol import frames


@dataclass
class Jitter:
    min_ms: float = 10.0
    max_ms: float = 30.0
    qos0_loss: float = 0.0

    def delay_s(self, rng: random.Random) -> float:
        return rng.uniform(self.min_ms, self.max_ms) / 1000.0


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    first = await reader.readexactly(1)
    length, shift, raw = 0, 0, bytearray()
    while True:
        b = (await reader.readexactly(1))[0]
        raw.append(b)
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first + bytes(raw) + (await reader.readexactly(length) if length else b"")


class MqttJitterProxy:
    """TCP proxy on 127.0.0.1:port that delays every MQTT packet, in order."""

    def __init__(self, broker_host: str, broker_port: int, up: Jitter, down: Jitter,
                 seed: int = 7) -> None:
        self.broker = (broker_host, broker_port)
        self.up, self.down = up, down
        self.rng = random.Random(seed)
        self.port = 0
        self.dropped = 0
        self.packets = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    jitter: Jitter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, packet = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(packet)
                await writer.drain()

        sender = asyncio.create_task(release())
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        last_due = 0.0
        try:
            while True:
                packet = await _read_packet(reader)
                self.packets += 1
                qos = (packet[0] >> 1) & 3
                if packet[0] & 0xF0 == 0x30 and qos == 0 and self.rng.random() < jitter.qos0_loss:
                    self.dropped += 1
                    continue
                due = max(last_due, time.monotonic() + jitter.delay_s(self.rng))
                last_due = due
                queue.put_nowait((due, packet))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            sender.cancel()
            writer.close()

    async def _client(self, c_reader: asyncio.StreamReader,
                      c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(self._pump(c_reader, b_writer, self.up),
                             self._pump(b_reader, c_writer, self.down))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._stopping = asyncio.Event()
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
            self._server.close()
            await self._server.wait_closed()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def start(self) -> MqttJitterProxy:
        self._thread = threading.Thread(target=self._run, name="jitter proxy", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    async def _shutdown(self) -> None:
        clients = list(self._clients)
        for t in clients:
            t.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        self._stopping.set()

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            except (RuntimeError, TimeoutError):
                pass
        if self._thread is not None:
            self._thread.join(timeout=3)


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
            try:
                os.close(fd)
            except OSError:
                pass


def corrupted_frames(payloads: list[bytes], rng: random.Random) -> bytes:
    """Frames each with one flipped bit somewhere after the sync pair (all must be refused)."""
    out = bytearray()
    for p in payloads:
        frame = bytearray(frames.encode_frame(p))
        i = rng.randrange(2, len(frame))
        frame[i] ^= 1 << rng.randrange(8)
        out += frame
    return bytes(out)
