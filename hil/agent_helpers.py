"""Agent-side helpers for scenarios: reading what devices say.

(Waiting for devices to come online is Transport.wait_online.)
"""

from __future__ import annotations

import asyncio
import time

from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics


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
        transport.unlisten(queue)
