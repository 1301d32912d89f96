"""Hold a bundle's activation until an instant: transfer early, switch the lights late.

A device stops the lights of its active bundle the moment it activates another one
(docs/protocol.md section 6), so the player transfers the next track's bundle while
the current track plays and activates it only just before the boundary. The transfer
itself is agent/deploy.py's; ``GatedActivation.wrap`` gives it a transport that
holds every ``activate`` message until the gate's agent instant.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages


class GatedActivation:
    """Opens at agent time ``at_us`` (µs)."""

    def __init__(self, at_us: float) -> None:
        self.at_us = at_us

    async def wait(self) -> None:
        delay_s = (self.at_us - now_us()) / 1e6
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def wrap(self, transport: Transport) -> Transport:
        return _GatedTransport(transport, self)  # type: ignore[return-value]


class _GatedTransport:
    """The transport, except that ``activate`` waits for the gate (duck-typed for deploy)."""

    def __init__(self, inner: Transport, gate: GatedActivation) -> None:
        self._inner = inner
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        if _is_activate(payload):
            await self._gate.wait()
        await self._inner.send(device_id, leaf, payload)


def _is_activate(payload: bytes) -> bool:
    try:
        return messages.decode(payload).kind == "activate"
    except Exception:  # not ours to judge: the device answers malformed payloads
        return False
