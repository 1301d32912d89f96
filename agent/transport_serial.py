"""Serial backend: one device on a port (pyserial), messages in CRC frames."""

from __future__ import annotations

import asyncio
import threading

import serial

from gridcast.agent.clock import now_us
from gridcast.agent.transport import SingleDeviceLink, TransportError
from gridcast.protocol import frames


class SerialTransport(SingleDeviceLink):
    chunk_bytes = 1024
    window = 4

    def __init__(self, path: str, baudrate: int = 115200, device_id: str | None = None,
                 hello_timeout_s: float | None = 5.0) -> None:
        """``hello_timeout_s``: how long start() waits for the device to name itself
        (None: not at all; messages are delivered once it has)."""
        super().__init__()
        self.path = path
        self.baudrate = baudrate
        self.device_id = device_id
        self.hello_timeout_s = hello_timeout_s
        self.port: serial.Serial | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hello = threading.Event()
        self._write_lock = threading.Lock()
        self.deframer = frames.Deframer()

    async def start(self) -> None:
        try:
            self.port = serial.serial_for_url(self.path, baudrate=self.baudrate, timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"cannot open serial port {self.path}: {exc}") from exc
        self._thread = threading.Thread(target=self._reader, name=f"serial {self.path}",
                                        daemon=True)
        self._thread.start()
        if self.device_id is None and self.hello_timeout_s is not None:
            ok = await asyncio.get_running_loop().run_in_executor(
                None, self._hello.wait, self.hello_timeout_s)
            if not ok:
                await self.close()
                raise TransportError(f"no gridcast device answered on {self.path} within "
                                     f"{self.hello_timeout_s:.0f} s (is the firmware flashed "
                                     "and the baud rate right?)")

    def _reader(self) -> None:
        assert self.port is not None
        while not self._stop.is_set():
            try:
                data = self.port.read(4096)
            except (serial.SerialException, OSError) as exc:
                if not self._stop.is_set():
                    self._link_lost(f"{self.path}: {exc}")
                break
            if not data:
                continue
            received = now_us()
            for payload in self.deframer.feed(data):
                self._incoming(payload, received)

    def _hello_seen(self) -> None:
        self._hello.set()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        if self.port is not None:
            self.port.close()

    def write_frame(self, payload: bytes) -> None:
        assert self.port is not None
        with self._write_lock:
            try:
                self.port.write(frames.encode_frame(payload))
            except (serial.SerialException, OSError) as exc:
                raise TransportError(f"write to {self.path} failed: {exc}") from exc

    async def _send_raw(self, device_id: str, leaf: str, payload: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.write_frame, payload)

