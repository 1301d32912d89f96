"""Play, stop, seek and change the rate on the agent's timeline; live beats; light offsets.

Every command names agent-timeline instants (docs/protocol.md sections 3, 9, 10).
Rates are in parts per million of normal speed (940_000 = 94 %); a rate outside
92-108 % raises ProtocolError(rate_out_of_range) here, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics

DEFAULT_LEAD_S = 3.0  # time for every device to get the command and settle its clock
RATE_LEAD_S = 0.3  # a rate change takes effect this far ahead, on every device at once
NORMAL_RATE_PPM = messages.NORMAL_RATE_PPM


async def play(transport: Transport, device_ids: list[str] | None, track_id: str,
               start_us: int | None = None, lead_s: float = DEFAULT_LEAD_S,
               rate_ppm: int = NORMAL_RATE_PPM) -> int:
    """Start ``track_id`` so that beat-map time 0 falls at ``start_us`` (agent timeline)
    and map time p at ``start_us + p * 10**6 // rate_ppm``. Returns ``start_us``."""
    messages.check_rate(rate_ppm)
    start = start_us if start_us is not None else now_us() + int(lead_s * 1e6)
    payload = messages.encode("play", track_id=track_id, start_us=start, rate_ppm=rate_ppm)
    await _send(transport, device_ids, payload)
    return start


async def stop(transport: Transport, device_ids: list[str] | None, at_us: int = 0) -> None:
    await _send(transport, device_ids, messages.encode("stop", at_us=at_us))


async def seek(transport: Transport, device_ids: list[str] | None, position_us: int,
               at_us: int, rate_ppm: int = NORMAL_RATE_PPM) -> None:
    """At agent time ``at_us`` the map is at ``position_us``, running at ``rate_ppm``."""
    messages.check_rate(rate_ppm)
    await _send(transport, device_ids,
                messages.encode("seek", position_us=position_us, at_us=at_us, rate_ppm=rate_ppm))


async def set_rate(transport: Transport, device_ids: list[str] | None, rate_ppm: int,
                   at_us: int | None = None, lead_s: float = RATE_LEAD_S) -> int:
    """From agent time ``at_us`` (default: ``lead_s`` from now) the playing bundle runs at
    ``rate_ppm``, with no jump in position. Returns ``at_us``."""
    messages.check_rate(rate_ppm)
    at = at_us if at_us is not None else now_us() + int(lead_s * 1e6)
    await _send(transport, device_ids, messages.encode("rate", rate_ppm=rate_ppm, at_us=at))
    return at


def live_beats_message(session: int, generation: int, first_index: int,
                       times_us: Sequence[int], beat_in_bar: Sequence[int],
                       strength: Sequence[int]) -> bytes:
    """A checked ``live_beats`` message: the coming beats (agent us, increasing), their
    place in the bar (1 = downbeat, 0 unknown) and strength (0..255); at most 32."""
    payload = messages.encode("live_beats", session=session, generation=generation,
                              first_index=first_index, times_us=list(times_us),
                              beat_in_bar=list(beat_in_bar), strength=list(strength))
    messages.check_live_beats(messages.decode(payload))
    return payload


async def send_live_beats(transport: Transport, device_ids: list[str] | None, session: int,
                          generation: int, first_index: int, times_us: Sequence[int],
                          beat_in_bar: Sequence[int], strength: Sequence[int]) -> None:
    """Replace the predictions the devices hold (docs/protocol.md section 10); an empty
    list cancels them (the devices coast no further, then go idle)."""
    await _send(transport, device_ids, live_beats_message(
        session, generation, first_index, times_us, beat_in_bar, strength))


async def send_live_envelope(transport: Transport, device_ids: list[str] | None,
                             start_us: int, rate_mhz: int, bass: bytes, mid: bytes,
                             high: bytes) -> None:
    """Band energies (one u8 per frame, at most 256) from agent time ``start_us`` at
    ``rate_mhz`` millihertz (50 Hz = 50_000)."""
    payload = messages.encode("live_env", start_us=start_us, rate_mhz=rate_mhz, bass=bass,
                              mid=mid, high=high)
    messages.check_live_env(messages.decode(payload))
    await _send(transport, device_ids, payload)


async def set_light_offset(transport: Transport, device_id: str, offset_us: int) -> None:
    """The light of ``device_id`` is seen ``offset_us`` after its LED write (a long chain,
    a projector: positive); the device writes that much earlier and keeps the setting.
    It answers with its status (carrying the offset) or an error."""
    messages.check_light_offset(offset_us)
    await transport.send(device_id, topics.CMD,
                         messages.encode("light_offset", offset_us=offset_us))


async def _send(transport: Transport, device_ids: list[str] | None, payload: bytes) -> None:
    if device_ids is None:
        await transport.broadcast(payload)
        return
    for device_id in device_ids:
        await transport.send(device_id, topics.CMD, payload)
