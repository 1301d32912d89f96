"""Play, stop and seek on the agent's timeline."""

from __future__ import annotations

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics

DEFAULT_LEAD_S = 3.0  # time for every device to get the command and settle its clock


async def play(transport: Transport, device_ids: list[str] | None, track_id: str,
               start_us: int | None = None, lead_s: float = DEFAULT_LEAD_S) -> int:
    """Start ``track_id`` so that beat-map time 0 falls at ``start_us`` (agent timeline)."""
    start = start_us if start_us is not None else now_us() + int(lead_s * 1e6)
    payload = messages.encode("play", track_id=track_id, start_us=start)
    await _send(transport, device_ids, payload)
    return start


async def stop(transport: Transport, device_ids: list[str] | None, at_us: int = 0) -> None:
    await _send(transport, device_ids, messages.encode("stop", at_us=at_us))


async def seek(transport: Transport, device_ids: list[str] | None, position_us: int,
               at_us: int) -> None:
    await _send(transport, device_ids,
                messages.encode("seek", position_us=position_us, at_us=at_us))


async def _send(transport: Transport, device_ids: list[str] | None, payload: bytes) -> None:
    if device_ids is None:
        await transport.broadcast(payload)
        return
    for device_id in device_ids:
        await transport.send(device_id, topics.CMD, payload)
