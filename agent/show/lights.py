"""The devices' timeline, kept on the sound: play, drift steering by rate, re-anchoring.

The sound card's sample clock is not the agent's: a card 100 ppm fast plays a
10-minute track 60 ms early by its end. The player leaves the samples alone (bit
exact) and moves the lights instead: ``LightTimeline.steer`` is called every couple
of seconds with ``heard_position(agent_us)`` (the map position, µs, heard at an
agent instant, from the output's DacClock line) and sends one ``rate`` message whose
rate makes the devices' map reach the heard position ``HORIZON_S`` later.

Why ``rate`` and not a re-anchored ``seek`` every few seconds: a rate change has no
jump in position (a seek replaces the timeline, and a beat due within the message's
jitter can be shown twice or not at all), and it costs the device nothing. The rate
is whole ppm (1 ppm is 3.6 ms an hour), so the agent keeps an exact copy of the
devices' integer timeline (firmware/timeline.py, the same code) and steers the
*position*, not the rate: each step aims at where the sound will be, so rounding
never accumulates. Only when the devices' map is more than ``RESEEK_MS`` off the
sound (the output skipped cycles, or the first fit of the clock moved) is one
``seek`` sent, re-anchoring the timeline at the heard position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gridcast.agent import playback
from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.firmware.timeline import Timeline
from gridcast.protocol import messages

log = logging.getLogger("gridcast.show")

PPM = 1_000_000
COMMAND_LEAD_S = 0.3  # rate and seek take effect this far ahead: every device has them
HORIZON_S = 4.0  # a rate aims at the heard position this far past its instant
RESEEK_MS = 1.5  # further off than this: re-anchor with a seek instead of steering
MAX_STEER_PPM = 2000  # never change speed by more than 0.2 % for steering


def replay(sent: list[tuple[int, str, str, int, int, int]], track_id: str,
           heard_us: float) -> Timeline | None:
    """The devices' timeline for ``track_id`` at agent time ``heard_us``, rebuilt from
    ``LightTimeline.sent`` (the last play of that track before it, and what followed)."""
    timeline = None
    for sent_us, kind, track, at, position, rate in sent:
        if sent_us > heard_us:
            break
        if kind == "play":
            timeline = Timeline() if track == track_id else None
            if timeline is not None:
                timeline.reset(at, position, rate)
        elif timeline is None:
            continue
        elif kind == "seek":
            timeline.reset(at, position, rate)
        elif kind == "rate":
            timeline.change_rate(rate, at, sent_us)
        elif kind == "stop":
            timeline = None
    return timeline


class LightTimeline:
    """What every show device plays: a track, and its map-time-to-agent-time anchors."""

    def __init__(self, transport: Transport, device_ids: list[str]) -> None:
        self.transport = transport
        self.device_ids = list(device_ids)
        self.track_id = ""
        self.model: Timeline | None = None  # the devices' timeline, as they compute it
        self.rate_ppm = PPM
        self.rate_messages = 0
        self.seeks = 0
        # Every timeline command sent to the whole show, for benches and tests:
        # (sent agent µs, kind, track id, at or start µs, map position µs, rate ppm).
        self.sent: list[tuple[int, str, str, int, int, int]] = []

    @property
    def playing(self) -> bool:
        return self.model is not None

    async def play(self, track_id: str, position_us: float, at_us: float,
                   device_ids: list[str] | None = None) -> None:
        """Map position ``position_us`` is heard at agent time ``at_us`` (the play message
        names the instant of map time 0, which may lie in the past)."""
        rate = self.rate_ppm
        start = round(at_us - position_us * PPM / rate)
        targets = self.device_ids if device_ids is None else device_ids
        if device_ids is None:
            self.track_id = track_id
            self.model = Timeline()
            self.model.reset(start, 0, rate)
            self.sent.append((now_us(), "play", track_id, start, 0, rate))
        await playback.play(self.transport, targets, track_id, start_us=start, rate_ppm=rate)

    async def join(self, device_id: str) -> None:
        """Bring one device onto the timeline in force (it came back, or was late)."""
        if self.model is None:
            return
        now = now_us()
        at = now + int(COMMAND_LEAD_S * 1e6)
        position = self.model.position(at)
        rate = self.model.rate_at(at)
        await playback.play(self.transport, [device_id], self.track_id,
                            start_us=at - position * PPM // rate, rate_ppm=rate)

    async def stop(self, at_us: int = 0) -> None:
        self.model = None
        self.sent.append((now_us(), "stop", self.track_id, at_us, 0, 0))
        await playback.stop(self.transport, self.device_ids, at_us)

    def error_us(self, heard_position: Callable[[float], float | None],
                 at_us: float) -> float | None:
        """Heard map position minus the devices' at ``at_us`` (µs; + = lights behind)."""
        want = heard_position(at_us)
        if self.model is None or want is None:
            return None
        return want - self.model.position(int(at_us))

    async def steer(self, heard_position: Callable[[float], float | None],
                    rate: bool = True) -> None:
        """One correction from ``COMMAND_LEAD_S`` ahead: a seek when the lights are more
        than ``RESEEK_MS`` off the sound, else (``rate``) a rate aimed ``HORIZON_S`` on."""
        model = self.model
        if model is None:
            return
        at = now_us() + int(COMMAND_LEAD_S * 1e6)
        target = at + int(HORIZON_S * 1e6)
        want_at, want_target = heard_position(at), heard_position(target)
        if want_at is None or want_target is None or want_at < 0:
            return
        have = model.position(at)
        if not rate and abs(want_at - have) <= RESEEK_MS * 1e3:
            return
        new_rate = round((want_target - have) * PPM / (target - at))
        new_rate = min(max(new_rate, PPM - MAX_STEER_PPM, messages.MIN_RATE_PPM),
                       PPM + MAX_STEER_PPM, messages.MAX_RATE_PPM)
        if abs(want_at - have) > RESEEK_MS * 1e3:
            log.info("lights %.2f ms off the sound: re-anchored", (want_at - have) / 1e3)
            new_rate = round((want_target - want_at) * PPM / (target - at))
            new_rate = min(max(new_rate, PPM - MAX_STEER_PPM), PPM + MAX_STEER_PPM)
            model.reset(at, round(want_at), new_rate)
            self.rate_ppm = new_rate
            self.seeks += 1
            self.sent.append((now_us(), "seek", self.track_id, at, round(want_at), new_rate))
            await playback.seek(self.transport, self.device_ids, round(want_at), at, new_rate)
            return
        if new_rate == model.rate_at(at):
            return
        model.change_rate(new_rate, at, now_us())
        self.rate_ppm = new_rate
        self.rate_messages += 1
        self.sent.append((now_us(), "rate", self.track_id, at, 0, new_rate))
        await playback.set_rate(self.transport, self.device_ids, new_rate, at_us=at)
