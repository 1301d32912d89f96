"""Agent-side helpers for scenarios: transports, waiting for devices, reading replies."""

from __future__ import annotations

import asyncio
import time

from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics


async def wait_online(transport: Transport, ids: list[str], timeout_s: float = 20.0,
                      count_earlier: bool = True) -> None:
    """Until every device has said hello (or sent a sync request).

    A device's retained hello can reach the transport before this listener exists
    (it arrives right after the SUBACK, while the caller is still setting up), so
    hellos the transport already holds count, unless ``count_earlier`` is False:
    after a reboot the old hello is no sign of life.
    """
    queue = transport.listen_all()  # same event loop as the transport's delivery: no gap
    seen: set[str] = {d for d in ids if d in transport.hellos} if count_earlier else set()
    deadline = time.monotonic() + timeout_s
    while not set(ids) <= seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"devices never came online: {sorted(set(ids) - seen)}")
        try:
            async with asyncio.timeout(left):
                item = await queue.get()
        except TimeoutError:
            continue
        if item.leaf in (topics.HELLO, topics.SYNC_REQ):
            seen.add(item.device_id)
    transport._all.remove(queue)


async def hello_of(transport: Transport, device_id: str, timeout_s: float = 20.0):
    queue = transport.listen_all()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                item = await queue.get()
            if item.device_id == device_id and item.leaf == topics.HELLO:
                return messages.decode(item.payload)
    finally:
        transport._all.remove(queue)
