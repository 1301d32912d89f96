"""BLE backend: one device over GATT (protocol/ble_gatt.py), with bleak on real hardware.

The GATT client is anything with bleak's ``BleakClient`` methods used here
(``connect``, ``disconnect``, ``start_notify``, ``write_gatt_char``, ``mtu_size``):
bleak by default; the tests pass one built on bumble, because this machine has no
Bluetooth. Frames are the serial link's, cut to the MTU on the way out and joined
by a Deframer on the way in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from gridcast.agent.clock import now_us
from gridcast.agent.transport import SingleDeviceLink, TransportError
from gridcast.protocol import ble_gatt, frames


def _bleak_client(address: str, on_disconnect: Callable[[Any], None]) -> Any:
    try:
        from bleak import BleakClient
    except ImportError as exc:
        raise TransportError("BLE needs bleak: pip install bleak") from exc
    return BleakClient(address, disconnected_callback=on_disconnect)


class BleTransport(SingleDeviceLink):
    chunk_bytes = 1024
    window = 4

    def __init__(self, address: str, client_factory: Callable[[str], Any] | None = None,
                 device_id: str | None = None, hello_timeout_s: float | None = 10.0,
                 write_with_response: bool = True) -> None:
        super().__init__()
        self.address = address
        self._closing = False
        # bleak says when the device went away (the agent then records it lost); a
        # client from client_factory (the tests') has no such callback.
        self.client = (client_factory(address) if client_factory
                       else _bleak_client(address, self._on_disconnect))
        self.device_id = device_id
        self.hello_timeout_s = hello_timeout_s
        self.with_response = write_with_response
        self.deframer = frames.Deframer()
        self._hello = asyncio.Event()
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self.client.connect()
            await self.client.start_notify(ble_gatt.TX_UUID, self._on_notify)
        except TransportError:
            raise
        except Exception as exc:  # bleak raises BleakError, OSError, TimeoutError...
            raise TransportError(f"BLE {self.address}: cannot connect ({exc})") from exc
        if self.device_id is None and self.hello_timeout_s is not None:
            try:
                async with asyncio.timeout(self.hello_timeout_s):
                    await self._hello.wait()
            except TimeoutError:
                await self.close()
                raise TransportError(f"BLE {self.address}: connected, but no gridcast hello "
                                     f"within {self.hello_timeout_s:g} s") from None

    def _on_notify(self, sender: object, data: bytearray) -> None:
        received = now_us()
        for payload in self.deframer.feed(bytes(data)):
            self._incoming(payload, received)

    def _hello_seen(self) -> None:
        self._hello.set()

    def _on_disconnect(self, client: Any) -> None:
        if not self._closing:
            self._link_lost(f"BLE {self.address}: disconnected")

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):  # already gone: nothing left to close
            await self.client.disconnect()

    async def _send_raw(self, device_id: str, leaf: str, payload: bytes) -> None:
        mtu = int(getattr(self.client, "mtu_size", ble_gatt.MIN_MTU))
        async with self._write_lock:  # pieces of one frame must not interleave
            try:
                for piece in ble_gatt.pieces(frames.encode_frame(payload), mtu):
                    await self.client.write_gatt_char(ble_gatt.RX_UUID, piece,
                                                      response=self.with_response)
            except Exception as exc:
                raise TransportError(f"BLE {self.address}: write failed ({exc})") from exc

