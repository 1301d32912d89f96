"""BLE GATT service in the aioble idiom (on boards with Bluetooth).

The link of protocol/ble_gatt.py: one service with a write characteristic
(agent -> device) and a notify characteristic (device -> agent), both carrying
the same CRC frames as serial, split to the connection's MTU. This machine has
no Bluetooth, so this module does not run in the test suite here; the agent's
BLE transport is tested against a bumble peripheral that speaks the same GATT
contract.
"""

import asyncio

from gridcast.protocol import ble_gatt, frames

SERVICE_UUID = ble_gatt.SERVICE_UUID
RX_UUID = ble_gatt.RX_UUID  # agent writes here
TX_UUID = ble_gatt.TX_UUID  # device notifies here
ADV_INTERVAL_US = 250000


class BleLink:
    name = "ble"

    def __init__(self, app, device_name):
        import aioble
        import bluetooth

        self.app = app
        self.device_name = device_name
        self.service = aioble.Service(bluetooth.UUID(SERVICE_UUID))
        self.rx = aioble.Characteristic(self.service, bluetooth.UUID(RX_UUID), write=True,
                                        capture=True)
        self.tx = aioble.Characteristic(self.service, bluetooth.UUID(TX_UUID), notify=True)
        aioble.register_services(self.service)
        self.connection = None
        self.deframer = frames.Deframer()

    @property
    def connected(self):
        return self.connection is not None

    async def run(self):
        import aioble

        while True:
            self.connection = await aioble.advertise(
                ADV_INTERVAL_US, name=self.device_name, services=[self.service.uuid])
            try:
                # as on serial: the agent learns who this is and what it runs
                await self._send(self.app.hello_message())
                await self._send(self.app.status_message("online"))
                while self.connection.is_connected():
                    _, data = await self.rx.written()
                    received = self.app.clock.now_us()
                    for payload in self.deframer.feed(data):
                        await self.app.handle(payload, self, received)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            self.connection = None

    async def _send(self, data):
        if self.connection is None:
            return False
        for piece in ble_gatt.pieces(frames.encode_frame(data), self.connection.mtu):
            self.tx.notify(self.connection, piece)
        return True

    async def reply(self, data):
        await self._send(data)

    async def send_sync(self, data):
        return await self._send(data)

    async def send_telemetry(self, data):
        await self._send(data)

    async def send_status(self, data):
        await self._send(data)

    async def close(self):
        pass
