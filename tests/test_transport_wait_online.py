"""Transport.wait_online: a device is online once it said hello and its last status is online
by presence.is_online; what the transport held before counts unless told otherwise."""

from __future__ import annotations

import asyncio

import pytest

from gridcast.agent.transport import Incoming, Transport, TransportError
from gridcast.protocol import messages, topics


class HeldTransport(Transport):
    """No link: the test delivers what devices would send, as a backend does."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        pass

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        pass

    async def broadcast(self, payload: bytes) -> None:
        pass

    def says(self, device_id: str, leaf: str, payload: bytes) -> None:
        self._deliver(Incoming(device_id, leaf, payload, 0))


HELLO = messages.encode("hello", proto_version=messages.PROTOCOL_VERSION, device_id="d")


def status(state: str) -> bytes:
    return messages.encode("status", state=state)


async def _later(t: HeldTransport, *said: tuple[str, str, bytes]) -> None:
    await asyncio.sleep(0.05)  # wait_online is listening by now
    for device_id, leaf, payload in said:
        t.says(device_id, leaf, payload)
        await asyncio.sleep(0)


def test_online_after_hello_then_an_online_status():
    async def scenario() -> None:
        t = HeldTransport()
        await t.start()
        feed = asyncio.create_task(_later(t, ("a", topics.HELLO, HELLO),
                                          ("b", topics.HELLO, HELLO),
                                          ("a", topics.STATUS, status("online")),
                                          ("b", topics.STATUS, status("playing"))))
        await t.wait_online(["a", "b"], timeout_s=2)
        await feed
        assert t._all == []  # it stopped listening

    asyncio.run(scenario())


@pytest.mark.parametrize("said", [
    [("a", topics.HELLO, HELLO)],  # no status yet
    [("a", topics.STATUS, status("online"))],  # no hello: nothing known of the device
    [("a", topics.HELLO, HELLO), ("a", topics.STATUS, status("online")),
     ("a", topics.STATUS, status("lost"))],  # the broker's last will came after
])
def test_not_online_names_the_missing_device(said):
    async def scenario() -> None:
        t = HeldTransport()
        await t.start()
        feed = asyncio.create_task(_later(t, *said, ("b", topics.HELLO, HELLO),
                                          ("b", topics.STATUS, status("online"))))
        with pytest.raises(TransportError, match=r"never came online within 0.3 s: a$"):
            await t.wait_online(["a", "b"], timeout_s=0.3)
        await feed
        assert t._all == []

    asyncio.run(scenario())


def test_what_the_transport_held_counts_unless_told_otherwise():
    """A retained hello and status reach the transport before anyone listens; after a reboot
    they are no sign of life."""
    async def scenario() -> None:
        t = HeldTransport()
        await t.start()
        t.says("a", topics.HELLO, HELLO)
        t.says("a", topics.STATUS, status("online"))
        await asyncio.sleep(0.01)  # delivered
        await t.wait_online(["a"], timeout_s=0.2)
        with pytest.raises(TransportError):
            await t.wait_online(["a"], timeout_s=0.2, count_earlier=False)
        feed = asyncio.create_task(_later(t, ("a", topics.HELLO, HELLO),
                                          ("a", topics.STATUS, status("online"))))
        await t.wait_online(["a"], timeout_s=2, count_earlier=False)
        await feed

    asyncio.run(scenario())
