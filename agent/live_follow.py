"""Live follow: keep the devices' pre-analyzed grid in phase with the music as it is played.

The bundle's beat grid gives look-ahead (devices schedule beats before they happen)
and downbeats; the real-time tracker (gridcast.native) listening to the room gives
the phase. Devices show grid beat k at ``start_us + grid[k]``; every live beat is
matched to the nearest grid beat, and the residual (live minus grid) is collected.
When the last ``window`` residuals agree in sign and a line through them says the
grid is now further off than ``threshold_ms``, the grid is moved by that much with a
SEEK (which takes effect ``lead_s`` ahead, so every device switches at the same
instant). A band that slows down or speeds up is followed by repeated small moves;
the devices' grid itself keeps its tempo (the protocol has no playback rate).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("gridcast.live")


@dataclass
class FollowStats:
    live_beats: int = 0
    matched: int = 0
    seeks: int = 0
    last_residual_ms: float = 0.0
    corrections_ms: list[float] = field(default_factory=list)


class LiveFollower:
    def __init__(self, grid_s: np.ndarray | list[float], start_us: int,
                 seek: Callable[[int, int], None], threshold_ms: float = 15.0,
                 window: int = 5, lead_s: float = 0.3, min_confidence: float = 0.3) -> None:
        """``seek(position_us, at_us)`` moves the devices (gridcast.agent.playback.seek)."""
        self.grid_us = np.asarray(grid_s, dtype=float) * 1e6
        self.start_us = start_us
        self.seek = seek
        self.threshold_us = threshold_ms * 1000
        self.lead_us = int(lead_s * 1e6)
        self.min_confidence = min_confidence
        self.residuals: deque[float] = deque(maxlen=window)
        self.stats = FollowStats()

    def on_beat(self, agent_us: int, confidence: float = 1.0) -> None:
        """A beat the live tracker heard, on the agent's clock."""
        self.stats.live_beats += 1
        if confidence < self.min_confidence or len(self.grid_us) < 2:
            return
        position = agent_us - self.start_us
        k = int(np.clip(np.searchsorted(self.grid_us, position), 1, len(self.grid_us) - 1))
        if abs(self.grid_us[k - 1] - position) < abs(self.grid_us[k] - position):
            k -= 1
        lo, hi = max(k - 1, 0), min(k + 1, len(self.grid_us) - 1)
        beat_us = (self.grid_us[hi] - self.grid_us[lo]) / (hi - lo)
        residual = position - self.grid_us[k]
        if abs(residual) > beat_us / 3:  # too far from any grid beat to say which it is
            return
        self.stats.matched += 1
        self.stats.last_residual_ms = residual / 1000
        self.residuals.append(residual)
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

    def _move(self, shift_us: int, now_us: int) -> None:
        self.start_us += shift_us
        at = now_us + self.lead_us
        self.seek(at - self.start_us, at)  # position at `at` under the new start
        self.stats.seeks += 1
        self.stats.corrections_ms.append(round(shift_us / 1000, 2))
        self.residuals.clear()
        log.info("live follow: grid moved by %+.1f ms", shift_us / 1000)


def run_live(transport, device_ids: list[str] | None, grid_s: np.ndarray | list[float],
             start_us: int, loop, *, device=None, rate: int | None = None,
             stream_factory=None, max_seconds: float | None = None,
             threshold_ms: float = 15.0) -> FollowStats:
    """Listen (blocking, in a worker thread) and move the devices' grid as needed.

    ``loop`` is the asyncio loop the transport lives in; seeks are sent there.
    """
    import asyncio

    from gridcast.agent import playback
    from gridcast.agent.clock import now_us
    from gridcast.host.live import realtime

    def seek(position_us: int, at_us: int) -> None:
        future = asyncio.run_coroutine_threadsafe(
            playback.seek(transport, device_ids, position_us, at_us), loop)
        future.result(5)

    follower = LiveFollower(grid_s, start_us, seek, threshold_ms=threshold_ms)
    zero: list[float] = []  # agent time (us) of the input stream's sample 0

    def on_beat(event) -> None:
        if not zero:
            return
        follower.on_beat(int(zero[0] + event.time_s * 1e6), event.confidence)

    def on_block(n_samples: int, sample_rate: int, total: int) -> None:
        if not zero:  # the first block ended now: sample 0 was its length ago
            zero.append(now_us() - total / sample_rate * 1e6)

    realtime.follow_input(on_beat, device=device, rate=rate, stream_factory=stream_factory,
                          max_seconds=max_seconds, on_block=on_block)
    return follower.stats
