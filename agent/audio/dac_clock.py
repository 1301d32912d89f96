"""When the frames an output stream writes are heard, on the agent's timeline (now_us, µs).

PortAudio hands every output callback the DAC time of its buffer on the stream's own
clock. The callback notes the agent time when it runs plus the DAC latency PortAudio
reports (outputBufferDacTime − currentTime) plus any room latency: an upper bound of
when the buffer's first frame is heard, since a callback can run late but never early.
Frames advance at the device's true rate, so the lower envelope of (frame, bound) is a
line whose slope is the device's sample period on the agent clock (its drift, in ppm)
and whose intercept is when frame 0 is heard. (For other clocks read from ordinary
code, JACK's among them, gridcast.agent.link_clock.LinkClockMap fits bracketed pairs.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gridcast.agent.clock import now_us


def read_clocks(stream: Any, time_info: Any,
                now: Callable[[], int] | None = None) -> tuple[int, float]:
    """In an audio callback, the stream's clock (s) and then the agent's (µs):
    ``(agent µs, stream s)``, for a bound ``agent µs + (DAC or ADC time − stream s)``.

    The agent clock is read second, so its time is never earlier than the instant the
    stream clock was read, and the bound is never early: a stall between the two reads
    (a GIL switch to another Python thread, a preemption) only makes it late, which the
    lower envelope ignores. Read the other way round, such a stall made the bound early
    by its length, and DacClock takes an early bound as the truth (one over 2 ms early
    as a skipped cycle, which moves the whole line: tests/test_audio_room.py). Before
    sounddevice hands over the stream object (the first callbacks), PortAudio's
    ``currentTime`` stands in: it was read when PortAudio's callback began, before this
    one ran. ``now`` reads the agent clock (default ``now_us``).
    """
    stream_now = float(stream.time) if stream is not None else float(time_info.currentTime)
    return (now or now_us)(), stream_now


class DacClock:
    """When stream frame n is heard, on the agent timeline: ``heard_us(n) = a + b·n``.

    ``add`` is called once per output callback with the frame count written before it
    and an upper bound of when that frame is heard. Per block (``block_s`` of audio) the
    lowest bound is kept; the slope is a least-squares line through the block minima of
    the last ``window_s`` (once they span ``min_span_s``; the nominal rate before), the
    intercept a low percentile of their residuals. All of it runs in the audio
    callback, so it uses preallocated arrays and a few small numpy calls per block.

    A stream that skips cycles or re-anchors them after a stall (an xrun) shifts frames
    against time, by any amount: a whole buffer, or the few ms a stall outlasted a
    cycle's slack. That shows as callbacks whose bounds all sit more than ``shift_us``
    above the line for a whole block, or one bound more than ``shift_us`` below it (a
    bound is never early): the line moves by the smallest such offset and a new segment
    begins: the slope is fitted within segments (their history kept), the intercept
    from the current one. A shorter late run is a busy machine, not a skip (a block's
    lowest bound sits within 0.1 ms of the line even with both cores busy,
    docs/audio.md); an xrun flag alone is no proof either (JACK flags every client when
    any one of them is late), but after one (``mark_xrun``) the next block's lowest
    bound more than ``xrun_shift_us`` off the line is a shift too. A shift left in one
    segment would tilt the slope and hold the line off for tens of seconds: shifts of
    4.9 and 4.1 ms left in it read a card 104 ppm fast as 257 ppm slow.
    """

    def __init__(self, nominal_rate_hz: float, block_s: float = 0.25, window_s: float = 120.0,
                 min_span_s: float = 2.0, shift_us: float = 1000.0,
                 xrun_shift_us: float = 150.0) -> None:
        self.nominal_rate_hz = float(nominal_rate_hz)
        self._us_per_frame_nominal = 1e6 / self.nominal_rate_hz
        self._block_frames = int(block_s * nominal_rate_hz)
        self._min_span_frames = min_span_s * nominal_rate_hz
        self._shift_us = shift_us
        self._xrun_shift_us = xrun_shift_us
        self._watching = False  # the block after an xrun flag: a smaller move is a shift
        size = max(2, int(window_s / block_s))
        self._frames = np.zeros(size, np.float64)  # ring of block minima, frames
        self._times = np.zeros(size, np.float64)  # and their times, µs after _t_ref
        self._segments = np.zeros(size, np.int64)  # and the segment (between shifts) of each
        self._segment = 0
        self._segment_blocks = 0  # block minima of the current segment so far
        self._count = 0
        self._next = 0
        self._t_ref = 0.0
        self._a = 0.0  # µs at frame 0
        self._b = self._us_per_frame_nominal  # µs per frame
        self._block_start: int | None = None
        self._block_min: tuple[int, float] = (0, 0.0)
        self._late_since: int | None = None  # first frame of a run of late callbacks
        self._late_min = 0.0
        self._ready = False
        self.shifts = 0

    @property
    def ready(self) -> bool:
        """True once at least one callback has been seen."""
        return self._ready

    @property
    def us_per_frame(self) -> float:
        return self._b

    @property
    def drift_ppm(self) -> float:
        """How much faster the device's sample clock runs than its nominal rate, in ppm."""
        return (self._us_per_frame_nominal / self._b - 1.0) * 1e6

    def heard_us(self, frame: float) -> float:
        """Agent µs at which stream frame ``frame`` is (was) heard."""
        return self._a + self._b * frame

    def frame_at(self, agent_us: float) -> float:
        """The stream frame heard at ``agent_us`` (fractional)."""
        return (agent_us - self._a) / self._b

    def add(self, frame: int, heard_upper_us: float) -> None:
        """One callback: frame ``frame`` is heard no later than ``heard_upper_us``."""
        if not self._ready:
            self._a = heard_upper_us - self._b * frame
            self._t_ref = heard_upper_us
            self._ready = True
        residual = heard_upper_us - self.heard_us(frame)
        shift_us = self._shift_us
        if residual < -shift_us:
            self._shift(residual)
            return
        if residual > shift_us:
            if self._late_since is None:
                self._late_since, self._late_min = frame, residual
            self._late_min = min(self._late_min, residual)
            if frame - self._late_since >= self._block_frames:
                self._shift(self._late_min)
            return
        self._late_since = None
        if residual < 0.0 and self._segment_blocks == 0:
            # The first block after a start or shift: the running minimum is the estimate.
            self._a += residual
            residual = 0.0
        if self._block_start is None:
            self._block_start = frame
            self._block_min = (frame, residual)
        elif residual < self._block_min[1]:
            self._block_min = (frame, residual)
        if frame - self._block_start >= self._block_frames:
            block_frame, block_residual = self._block_min
            if self._watching and abs(block_residual) > self._xrun_shift_us:
                self._shift(block_residual)
                return
            self._watching = False
            self._push(block_frame, self.heard_us(block_frame) + block_residual)
            self._block_start = None
            self._refit()

    def mark_xrun(self) -> None:
        """The stream flagged an xrun before the callback about to be added.

        Frames may have moved against time there by less than ``shift_us`` (a stall that
        outlasted a cycle's slack by a fraction of a millisecond): too little to show as
        a shift, yet enough to tilt the slope fitted across it (0.3 ms in a 2 s stretch
        reads a card as about 200 ppm off). So the block that starts at the flag is
        watched: if its lowest bound sits more than ``xrun_shift_us`` off the line,
        either way, the frames moved and the line moves with them (a shift, a new
        segment). A flag alone moves nothing: JACK flags every client when one of them is
        late, and a block's lowest bound sits within 0.1 ms of the line.
        """
        if not self._ready:
            return
        self._block_start = None  # the next block begins at the flag
        self._watching = True

    def _shift(self, by_us: float) -> None:
        # A new segment: the slope keeps the history of the old ones (fitted within each
        # segment), the intercept comes from the new one alone.
        self._a += by_us
        self._segment += 1
        self._segment_blocks = 0
        self.shifts += 1
        self._block_start = None
        self._late_since = None
        self._watching = False

    def _push(self, frame: int, time_us: float) -> None:
        self._frames[self._next] = frame
        self._times[self._next] = time_us - self._t_ref
        self._segments[self._next] = self._segment
        self._segment_blocks += 1
        self._next = (self._next + 1) % self._frames.size
        self._count = min(self._count + 1, self._frames.size)

    def _refit(self) -> None:
        frames, times = self._frames[:self._count], self._times[:self._count]
        segments = self._segments[:self._count]
        _, which = np.unique(segments, return_inverse=True)
        counts = np.bincount(which)
        # Least squares with one intercept per segment: every point centred on its
        # segment's means, so a shift between segments says nothing about the slope.
        x = frames - (np.bincount(which, frames) / counts)[which]
        y = times - (np.bincount(which, times) / counts)[which]
        lowest = np.full(counts.size, np.inf)
        highest = np.full(counts.size, -np.inf)
        np.minimum.at(lowest, which, frames)
        np.maximum.at(highest, which, frames)
        if float(np.sum(highest - lowest)) >= self._min_span_frames:
            self._b = float(np.dot(x, y) / np.dot(x, x))
        # Each block minimum is the line plus that block's shortest callback delay; a low
        # percentile of the current segment's tracks the shortest delay without trusting
        # a single block.
        current = segments == self._segment
        residuals = times[current] - self._b * frames[current]
        low = max(0, int(0.1 * (residuals.size - 1)))
        self._a = self._t_ref + float(np.partition(residuals, low)[low])
