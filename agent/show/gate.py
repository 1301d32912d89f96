"""Activate the next track's bundle so that the lights switch at the boundary sample.

The player transfers the next track's bundle while the current one plays; the transfer
itself is agent/deploy.py's, and ``GatedActivation.wrap`` gives it a transport that
holds every ``activate`` message until the gate opens. What the gate does per device
depends on its protocol (docs/protocol.md 6):

- protocol 4 and later (``hello.proto_version``): the ``activate`` carries
  ``at_us = handover_us`` (the boundary's heard time) and goes out ``HANDOVER_LEAD_S``
  before it. The device stores the new bundle at once and keeps firing the old map
  right up to the boundary, so every beat of both tracks is lit.
- older devices stop the old bundle's lights the moment they activate the new one: the
  ``activate`` goes out unchanged at ``at_us`` (just after the old track's last beat),
  and a beat of the old track after that instant is not shown.

When every device already holds the next bundle (the same track twice in a row), there
is nothing to activate: ``wait_for_play`` says when its play may go out. To protocol 4
devices that is ``HANDOVER_LEAD_S`` before the boundary, since a play of the lit bundle
from an instant ahead keeps its beats lit up to that instant (a hand-over to itself);
with any older device among them, after the old track's last beat, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages

# The activate goes out this long before the hand-over: time for the device to rename and
# check the file and answer, and for the play that follows, with retries. Shorter would
# narrow the stretch in which a seek back into the old track needs its bundle again.
HANDOVER_LEAD_S = 3.0


class GatedActivation:
    """Opens at agent time ``at_us`` (µs) for devices without the hand-over; with
    ``handover_us`` (µs) the others get ``activate(at_us=handover_us)`` ``HANDOVER_LEAD_S``
    before it."""

    def __init__(self, at_us: float, handover_us: float | None = None) -> None:
        self.at_us = at_us
        self.handover_us = handover_us

    async def wait(self, at_us: float | None = None) -> None:
        delay_s = ((self.at_us if at_us is None else at_us) - now_us()) / 1e6
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def wait_for_play(self, transport: Transport, device_ids: list[str]) -> None:
        """Until the play of a bundle all of ``device_ids`` already hold may go out."""
        if self.handover_us is not None and device_ids and all(
                hands_over(transport, d) for d in device_ids):
            await self.wait(self.handover_us - HANDOVER_LEAD_S * 1e6)
        else:
            await self.wait()

    def wrap(self, transport: Transport) -> Transport:
        return _GatedTransport(transport, self)  # type: ignore[return-value]


def hands_over(transport: Transport, device_id: str) -> bool:
    """Whether the device knows ``activate.at_us`` (its last hello says protocol >= 4)."""
    hello = transport.hellos.get(device_id)
    return hello is not None and hello.proto_version >= messages.HANDOVER_PROTOCOL


class _GatedTransport:
    """The transport, except that ``activate`` waits for the gate (duck-typed for deploy)."""

    def __init__(self, inner: Transport, gate: GatedActivation) -> None:
        self._inner = inner
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, device_id: str, leaf: str, payload: bytes) -> None:
        transfer_id = _activate_transfer(payload)
        if transfer_id is not None:
            handover = self._gate.handover_us
            if handover is not None and hands_over(self._inner, device_id):
                await self._gate.wait(handover - HANDOVER_LEAD_S * 1e6)
                payload = messages.encode("activate", transfer_id=transfer_id,
                                          at_us=max(0, round(handover)))
            else:
                await self._gate.wait()
        await self._inner.send(device_id, leaf, payload)


def _activate_transfer(payload: bytes) -> int | None:
    """The transfer id of an ``activate`` message, None for any other payload."""
    try:
        msg = messages.decode(payload)
    except Exception:  # not ours to judge: the device answers malformed payloads
        return None
    return msg.transfer_id if msg.kind == "activate" else None
