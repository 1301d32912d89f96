"""What scenarios share besides fixtures: polling for a condition, running a coroutine,
reading a device's hello. (Waiting for devices to come online is Transport.wait_online.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str,
             step_s: float = 0.05) -> T:
    """Poll ``predicate`` every ``step_s`` seconds until it returns something true, and return
    that; AssertionError naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """A scenario's async part, on a fresh event loop."""
    return asyncio.run(coro)


async def hello_of(transport: Transport, device_id: str,
                   timeout_s: float = 20.0) -> messages.Message:
    """The next hello ``device_id`` sends (TimeoutError after ``timeout_s`` seconds)."""
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
