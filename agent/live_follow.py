"""Live follow: keep the devices' pre-analyzed grid in phase and in tempo with the music.

The bundle's beat grid gives look-ahead (devices schedule beats before they happen)
and downbeats; the real-time tracker (gridcast.native) listening to the room gives
the phase. The follower keeps the devices' model: an anchor (at agent time ``at`` the
map is at position ``pos``, running at ``rate`` ppm), the same one the firmware keeps
(docs/protocol.md section 9). Every live beat is matched to the nearest grid beat and
two things are estimated from the matches:

- **tempo**: a line through the last ``rate_window`` (grid position, live time) pairs
  gives the rate at which the music plays the map. When it differs from the devices'
  rate by more than ``min_rate_step_ppm`` (``early_rate_step_ppm`` until the window is
  full, from ``min_rate_pairs`` on) and four standard errors of the fit, the
  devices get that rate: with ``set_rate`` (no jump in position) when the line also
  says the phase is within ``rate_phase_tolerance_ms``, else with one SEEK that
  carries the rate and puts the grid on the line. A DJ's pitch fader or a band that
  drifts is then followed by a change or two, not by a seek every few beats.
- **phase**: when the last ``window`` residuals (live minus where the devices show
  that beat) agree in sign and a line through them says the grid is now further off
  than ``threshold_ms``, the grid is moved by that much with a SEEK at the current rate.

Commands take effect ``lead_s`` ahead, so every device switches at the same instant.
Without ``set_rate`` the devices keep normal speed and only seeks are sent (protocol 1
devices).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gridcast.protocol import messages

log = logging.getLogger("gridcast.live")
PPM = 1_000_000


@dataclass
class FollowStats:
    live_beats: int = 0
    matched: int = 0
    seeks: int = 0
    rate_changes: int = 0
    rate_ppm: int = PPM
    last_residual_ms: float = 0.0
    corrections_ms: list[float] = field(default_factory=list)


class LiveFollower:
    def __init__(self, grid_s: np.ndarray | list[float], start_us: int,
                 seek: Callable[[int, int, int], None], threshold_ms: float = 15.0,
                 window: int = 5, lead_s: float = 0.3, min_confidence: float = 0.3,
                 set_rate: Callable[[int, int], None] | None = None, rate_window: int = 32,
                 min_rate_pairs: int = 8, min_rate_step_ppm: int = 1000,
                 early_rate_step_ppm: int = 10000,
                 rate_phase_tolerance_ms: float = 2.0) -> None:
        """``seek(position_us, at_us, rate_ppm)`` moves the devices
        (gridcast.agent.playback.seek); ``set_rate(rate_ppm, at_us)`` changes their rate
        without a jump (gridcast.agent.playback.set_rate), None to keep normal speed."""
        self.grid_us = np.asarray(grid_s, dtype=float) * 1e6
        self.anchor = (start_us, 0, PPM)  # (at_us, pos_us, rate_ppm): the devices' model
        self.seek = seek
        self.set_rate = set_rate
        self.threshold_us = threshold_ms * 1000
        self.lead_us = int(lead_s * 1e6)
        self.min_confidence = min_confidence
        self.residuals: deque[float] = deque(maxlen=window)
        self.pairs: deque[tuple[float, int]] = deque(maxlen=rate_window)
        self.min_rate_pairs = min_rate_pairs
        self.min_rate_step_ppm = min_rate_step_ppm
        self.early_rate_step_ppm = early_rate_step_ppm
        self.rate_phase_tolerance_us = rate_phase_tolerance_ms * 1000
        self.stats = FollowStats()

    # --- the devices' model (integer, as on the device) ----------------------------------
    def shown_us(self, position_us: float) -> float:
        """Agent time at which the devices show map position ``position_us``."""
        at, pos, rate = self.anchor
        return at + (position_us - pos) * PPM / rate

    def position_at(self, agent_us: float) -> float:
        at, pos, rate = self.anchor
        return pos + (agent_us - at) * rate / PPM

    @property
    def start_us(self) -> int:
        """Agent time of map time 0 under the current model."""
        return round(self.shown_us(0))

    # --- live beats ------------------------------------------------------------------------
    def on_beat(self, agent_us: int, confidence: float = 1.0) -> None:
        """A beat the live tracker heard, on the agent's clock."""
        self.stats.live_beats += 1
        if confidence < self.min_confidence or len(self.grid_us) < 2:
            return
        position = self.position_at(agent_us)
        k = int(np.clip(np.searchsorted(self.grid_us, position), 1, len(self.grid_us) - 1))
        if abs(self.grid_us[k - 1] - position) < abs(self.grid_us[k] - position):
            k -= 1
        lo, hi = max(k - 1, 0), min(k + 1, len(self.grid_us) - 1)
        beat_us = (self.grid_us[hi] - self.grid_us[lo]) / (hi - lo)
        residual = agent_us - self.shown_us(self.grid_us[k])
        if abs(residual) > beat_us / 3:  # too far from any grid beat to say which it is
            return
        self.stats.matched += 1
        self.stats.last_residual_ms = residual / 1000
        self.residuals.append(residual)
        self.pairs.append((float(self.grid_us[k]), agent_us))
        if self.set_rate is not None and self._follow_tempo(agent_us):
            return
        if len(self.residuals) < self.residuals.maxlen:  # type: ignore[operator]
            return
        values = np.asarray(self.residuals)
        # Where the residual is now: a line through the window, so that a steady drift
        # (the band slowing down) is corrected where it has got to, not where it was.
        slope, intercept = np.polyfit(np.arange(len(values)), values, 1)
        shift = float(intercept + slope * (len(values) - 1))
        agree = max(np.sum(values > 0), np.sum(values < 0)) >= len(values) - 1
        if abs(shift) < self.threshold_us or not agree:
            return
        self._move(int(shift), agent_us)

    def music_rate(self) -> tuple[float, float] | None:
        """(rate ppm at which the music plays the map, its standard error) from a line
        through the recent (grid position, live time) pairs; None with too few."""
        if len(self.pairs) < self.min_rate_pairs:
            return None
        g = np.array([p[0] for p in self.pairs])
        t = np.array([p[1] for p in self.pairs], dtype=float)
        gc = g - g.mean()
        sxx = float(np.dot(gc, gc))
        if sxx <= 0:
            return None
        b = float(np.dot(gc, t - t.mean())) / sxx  # agent us per map us
        if b <= 0:
            return None
        res = (t - t.mean()) - b * gc
        se_b = math.sqrt(float(np.dot(res, res)) / max(1, len(g) - 2) / sxx)
        rate = PPM / b
        return rate, rate * se_b / b

    def _follow_tempo(self, now_us: int) -> bool:
        """Send the music's rate when it is clearly not the devices'; True if it did."""
        fit = self.music_rate()
        if fit is None:
            return False
        rate, se = fit
        current = self.anchor[2]
        # Few pairs span too little music to tell a tempo from the tracker's own wobble
        # (its beat period is a whole number of hops, corrected now and then): before a
        # full window only a large difference counts, and then promptly, since a grid
        # 5 % off drifts by a beat in ten.
        full = len(self.pairs) == self.pairs.maxlen
        step = self.min_rate_step_ppm if full else self.early_rate_step_ppm
        if abs(rate - current) <= max(step, 4 * se):
            return False
        if not messages.MIN_RATE_PPM <= rate <= messages.MAX_RATE_PPM:
            return False  # not a pitch fader: leave it to the phase corrections
        new_rate = round(rate)
        at = now_us + self.lead_us
        pos_now = self.position_at(at)  # where the devices will be at `at`
        # Where the music will be at `at`: the fitted line, read backwards.
        g = np.array([p[0] for p in self.pairs])
        t = np.array([p[1] for p in self.pairs], dtype=float)
        b = PPM / rate
        pos_music = float(g.mean() + (at - t.mean()) / b)
        phase_us = (pos_now - pos_music) * PPM / new_rate  # > 0: devices are early
        assert self.set_rate is not None
        if pos_music < 0:
            return False  # the map has not started there: nothing to move yet
        if abs(phase_us) < self.rate_phase_tolerance_us:
            self.set_rate(new_rate, at)
            self.anchor = (at, round(pos_now), new_rate)
        else:
            self.seek(round(pos_music), at, new_rate)  # one command: the rate and the phase
            self.anchor = (at, round(pos_music), new_rate)
            self.stats.corrections_ms.append(round(phase_us / 1000, 2))
        self.stats.rate_changes += 1
        self.stats.rate_ppm = new_rate
        self.residuals.clear()
        log.info("live follow: rate %.2f %% (phase %+.1f ms)", new_rate / 1e4, phase_us / 1000)
        return True

    def _move(self, shift_us: int, now_us: int) -> None:
        """Show the grid ``shift_us`` later (earlier if negative), from ``lead_s`` ahead."""
        at = now_us + self.lead_us
        rate = self.anchor[2]
        position = round(self.position_at(at) - shift_us * rate / PPM)
        if position < 0:
            return  # the map has not started there: nothing to move yet
        self.seek(position, at, rate)
        self.anchor = (at, position, rate)
        self.stats.seeks += 1
        self.stats.corrections_ms.append(round(shift_us / 1000, 2))
        self.residuals.clear()
        log.info("live follow: grid moved by %+.1f ms", shift_us / 1000)


def run_live(transport, device_ids: list[str] | None, grid_s: np.ndarray | list[float],
             start_us: int, loop, *, device=None, rate: int | None = None,
             stream_factory=None, max_seconds: float | None = None,
             threshold_ms: float = 15.0, follow_rate: bool = True,
             input_offset_ms: float = 0.0) -> FollowStats:
    """Listen (blocking, in a worker thread) and move the devices' grid as needed.

    ``loop`` is the asyncio loop the transport lives in; seeks and rate changes are
    sent there. ``rate`` is the input's sample rate; ``follow_rate`` False keeps the
    devices at normal speed (devices that speak protocol 1). Each live beat is timed
    by when it was heard (PortAudio's input ADC times), plus ``input_offset_ms``.
    """
    import asyncio

    from gridcast.agent import playback
    from gridcast.host.live import realtime

    def seek(position_us: int, at_us: int, rate_ppm: int) -> None:
        future = asyncio.run_coroutine_threadsafe(
            playback.seek(transport, device_ids, position_us, at_us, rate_ppm), loop)
        future.result(5)

    def set_rate(rate_ppm: int, at_us: int) -> None:
        future = asyncio.run_coroutine_threadsafe(
            playback.set_rate(transport, device_ids, rate_ppm, at_us), loop)
        future.result(5)

    follower = LiveFollower(grid_s, start_us, seek, threshold_ms=threshold_ms,
                            set_rate=set_rate if follow_rate else None)

    def on_heard_beat(event, heard_us: float) -> None:
        # heard_us: from the input's ADC times (gridcast.host.live.live_input), not
        # from when the block happened to be processed.
        follower.on_beat(int(heard_us), event.confidence)

    realtime.follow_input(on_heard_beat=on_heard_beat, device=device, rate=rate,
                          stream_factory=stream_factory, max_seconds=max_seconds,
                          offset_ms=input_offset_ms)
    return follower.stats
