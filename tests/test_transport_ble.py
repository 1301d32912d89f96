"""The agent's BLE transport against a bumble peripheral, over bumble's virtual link.

This machine has no Bluetooth, so bleak cannot run here: the transport gets a GATT
client with bleak's BleakClient methods built on bumble (BumbleClient below), and the
device is a bumble peripheral speaking protocol/ble_gatt.py with the real protocol
Receiver behind it (the firmware's BleLink does the same with aioble on a board).
What is real: the GATT service, MTU negotiation, frame splitting and joining, a whole
bundle transfer with acks, and clock-sync requests answered over BLE.
"""

from __future__ import annotations

import asyncio

from bumble.controller import Controller
from bumble.device import Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from gridcast.agent import deploy
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport_ble import BleTransport
from gridcast.hil.bundles import make_bundle
from gridcast.protocol import ble_gatt, frames, keys, messages, transfer

KEY = b"b" * 32
PERIPHERAL = "F1:F1:F1:F1:F1:F1"


class BumbleClient:
    """The subset of bleak.BleakClient that BleTransport uses, on a bumble central."""

    def __init__(self, central: Device, address: str) -> None:
        self.central, self.address = central, address
        self.peer: Peer | None = None
        self.chars: dict[str, object] = {}

    @property
    def mtu_size(self) -> int:
        assert self.peer is not None
        return int(self.peer.connection.att_mtu)

    async def connect(self) -> bool:
        connection = await self.central.connect(Address(self.address))
        self.peer = Peer(connection)
        await self.peer.request_mtu(247)
        await self.peer.discover_services()
        for service in self.peer.services:
            await service.discover_characteristics()
        for uuid in (ble_gatt.RX_UUID, ble_gatt.TX_UUID):
            found = self.peer.get_characteristics_by_uuid(_uuid(uuid))
            assert found, f"no characteristic {uuid}"
            self.chars[uuid] = found[0]
        return True

    async def start_notify(self, uuid: str, callback) -> None:
        assert self.peer is not None
        char = self.chars[uuid]
        await self.peer.subscribe(char, lambda value: callback(char, bytearray(value)))

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = True) -> None:
        assert self.peer is not None
        await self.peer.write_value(self.chars[uuid], data, with_response=response)

    async def disconnect(self) -> bool:
        if self.peer is not None:
            await self.peer.connection.disconnect()
        return True


def _uuid(text: str):
    from bumble.core import UUID

    return UUID(text)


class Peripheral:
    """A device on BLE: the GATT contract of protocol/ble_gatt.py, the real Receiver."""

    def __init__(self, device: Device, device_id: str) -> None:
        self.device, self.device_id = device, device_id
        self.store = transfer.MemoryStore()
        self.receiver = transfer.Receiver(self.store, {keys.key_id(KEY): KEY}, 2**31)
        self.deframer = frames.Deframer()
        self.connection = None
        self.sync_answers: list[messages.Message] = []
        self.pieces_in = 0
        self.tasks: set[asyncio.Task] = set()  # notifications under way
        self.tx = Characteristic(ble_gatt.TX_UUID, Characteristic.Properties.NOTIFY,
                                 Characteristic.READABLE, b"")
        self.rx = Characteristic(ble_gatt.RX_UUID, Characteristic.Properties.WRITE
                                 | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
                                 Characteristic.WRITEABLE, CharacteristicValue(write=self._write))
        device.add_service(Service(ble_gatt.SERVICE_UUID, [self.rx, self.tx]))
        self.tx.on(Characteristic.EVENT_SUBSCRIPTION, self._subscribed)

    def _subscribed(self, connection, notify: bool, indicate: bool) -> None:
        if notify:
            self.connection = connection
            hello = messages.encode("hello", proto_version=1, fw_version=1,
                                    device_id=self.device_id, max_frame=4096, window=4)
            status = messages.encode("status", state="online", fw_version=1)
            self._spawn(self._send_all([hello, status]))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_all(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            mtu = self.connection.att_mtu if self.connection else ble_gatt.MIN_MTU
            for piece in ble_gatt.pieces(frames.encode_frame(payload), mtu):
                await self.device.notify_subscriber(self.connection, self.tx, piece)

    def _write(self, connection, value: bytes) -> None:
        self.pieces_in += 1
        for payload in self.deframer.feed(bytes(value)):
            msg = messages.decode(payload)
            if msg.kind == "sync_resp":
                self.sync_answers.append(msg)
                continue
            reply = self.receiver.handle(msg)
            if reply is not None:
                self._spawn(self._send_all([reply.payload]))

    async def request_sync(self, seq: int) -> None:
        await self._send_all([messages.encode("sync_req", seq=seq, t1_us=1000 + seq)])


async def two_devices() -> tuple[Device, Device]:
    link = LocalLink()
    addresses = ["F0:F0:F0:F0:F0:F0", PERIPHERAL]
    controllers = [Controller(f"C{i}", link=link, public_address=a)
                   for i, a in enumerate(addresses)]
    devices = [Device(address=Address(a), host=Host(c, AsyncPipeSink(c)))
               for a, c in zip(addresses, controllers, strict=True)]
    for d in devices:
        await d.power_on()
    return devices[0], devices[1]


def test_a_bundle_goes_over_ble_and_sync_requests_are_answered():
    async def scenario():
        central, peripheral_dev = await two_devices()
        device = Peripheral(peripheral_dev, "ble-01")
        await peripheral_dev.start_advertising(auto_restart=True)
        bundle = make_bundle(KEY, 1.0, track="ble-song", version=4)
        async with BleTransport(PERIPHERAL,
                                client_factory=lambda a: BumbleClient(central, a)) as t:
            assert t.device_id == "ble-01"  # learned from the hello sent on subscription
            assert t.client.mtu_size == 247
            (result,) = await deploy.deploy(t, ["ble-01"], bundle, "ble-song", 4)
            assert result.ok, result.error
            responder = SyncResponder(t)
            responder.start()
            for seq in range(5):
                await device.request_sync(seq)
            async with asyncio.timeout(10):
                while len(device.sync_answers) < 5:
                    await asyncio.sleep(0.01)
            await responder.stop()
        return device, bundle

    device, bundle = asyncio.run(scenario())
    track, version, _ = device.store.active()
    assert (track, version) == ("ble-song", 4)
    assert device.store.active_entry[3] == bundle  # byte for byte
    assert device.pieces_in > len(bundle) // 244  # frames really were cut to the MTU
    assert [a.seq for a in device.sync_answers] == [0, 1, 2, 3, 4]
    assert all(a.t2_us >= a.t1_us for a in device.sync_answers)


def test_no_peripheral_is_a_clear_transport_error():
    import pytest

    from gridcast.agent.transport import TransportError

    async def scenario():
        central, _ = await two_devices()  # the peripheral never advertises

        class NoAnswer(BumbleClient):
            async def connect(self) -> bool:
                async with asyncio.timeout(1.0):
                    return await super().connect()

        t = BleTransport(PERIPHERAL, client_factory=lambda a: NoAnswer(central, a))
        with pytest.raises(TransportError, match="cannot connect"):
            await t.start()

    asyncio.run(scenario())
