"""Running the C tracker (gridcast.native) over a file as if live, and scoring how fast it locks.

The file is decoded in blocks and fed to the tracker in whatever block sizes
the decoder yields; the tracker itself sees exact hops, so the beats are the
ones a live input would have given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridcast.host.analysis import audio
from gridcast.native import BeatEvent, Tracker

MAX_TRACKER_RATE_HZ = 96_000
LOCK_WINDOW_S = 0.07  # as mir_eval's F-measure
LOCK_RUN = 4  # consecutive annotated beats that must all be matched
TEMPO_CHANGE_RATIO = 1.1  # a jump of 10 % in local tempo counts as a tempo change
STEADY_RATIO = 1.03  # intervals within 3 % of each other count as a steady tempo
STEADY_BEATS = 6


@dataclass(frozen=True)
class TrackRun:
    beats: list[BeatEvent]
    duration_s: float
    sample_rate: int
    cpu_s: float
    latency_s: float
    state_bytes: int

    @property
    def times_s(self) -> np.ndarray:
        return np.asarray([b.time_s for b in self.beats], dtype=float)

    @property
    def beat_in_bar(self) -> np.ndarray:
        return np.asarray([b.beat_in_bar for b in self.beats], dtype=np.int64)


def _tracker_blocks(info: audio.AudioInfo) -> Iterator[np.ndarray]:
    """Mono blocks at a rate the tracker takes (above 96 kHz: halved, anti-aliased)."""
    for block in audio.iter_mono_blocks(info):
        if info.sample_rate > MAX_TRACKER_RATE_HZ:
            from scipy.signal import resample_poly  # here: scipy.signal takes ~1 s to import

            block = resample_poly(block, 1, 2).astype(np.float32)
        yield block


def tracker_rate(info: audio.AudioInfo) -> int:
    return info.sample_rate // 2 if info.sample_rate > MAX_TRACKER_RATE_HZ else info.sample_rate


BeatCallback = Callable[[BeatEvent], None]


def track_file(path: str, hop_size: int | None = None,
               on_beat: BeatCallback | None = None) -> TrackRun:
    """Feed a file to a fresh tracker block by block; ``on_beat(event)`` sees beats as they come."""
    info = audio.probe(path)
    rate = tracker_rate(info)
    beats: list[BeatEvent] = []
    started = time.process_time()
    with Tracker(rate, hop_size=hop_size) as tracker:
        for block in _tracker_blocks(info):
            for event in tracker.process(block):
                beats.append(event)
                if on_beat:
                    on_beat(event)
        return TrackRun(beats, info.duration_s, rate, time.process_time() - started,
                        tracker.latency_s, tracker.state_bytes)


def nearest_error_s(ref_s: np.ndarray, est_s: np.ndarray) -> np.ndarray:
    """For every annotated beat: the nearest output beat minus it (s; inf without any)."""
    ref = np.asarray(ref_s, dtype=float)
    if len(est_s) == 0:
        return np.full(len(ref), np.inf)
    est = np.sort(est_s)
    idx = np.clip(np.searchsorted(est, ref), 1, len(est) - 1) if len(est) > 1 else np.zeros(
        len(ref), dtype=np.int64)
    after, before = est[idx] - ref, est[np.maximum(idx - 1, 0)] - ref
    return np.where(np.abs(before) <= np.abs(after), before, after)


def matched(ref_s: np.ndarray, est_s: np.ndarray, window_s: float = LOCK_WINDOW_S) -> np.ndarray:
    """For every annotated beat: is there an output beat within the window?"""
    return np.abs(nearest_error_s(ref_s, est_s)) <= window_s


def lock_time_s(ref_s: np.ndarray, est_s: np.ndarray, duration_s: float,
                strict: bool = False) -> float:
    """Seconds from the first annotated beat to the first of LOCK_RUN consecutive annotated
    beats that are all matched within ±70 ms; the rest of the clip when that never happens
    (issue 4's definition, ``gridcast eval --causal``'s ``lock_s``).

    ``strict`` also wants no output beat among those LOCK_RUN that matches no annotated
    beat. A track at twice the tempo matches every annotated beat, so it counts as locked
    by the plain definition, though every other flash falls between the beats.
    """
    if len(ref_s) == 0:
        return 0.0
    ref = np.asarray(ref_s, dtype=float)
    est = np.sort(np.asarray(est_s, dtype=float))
    hit = matched(ref, est)
    stray = est[~matched(est, ref)] if strict and len(est) else np.zeros(0)
    run = 0
    for i, ok in enumerate(hit):
        run = run + 1 if ok else 0
        if run >= LOCK_RUN:
            first = i - LOCK_RUN + 1
            lo, hi = ref[first] - LOCK_WINDOW_S, ref[i] + LOCK_WINDOW_S
            if not np.any((stray >= lo) & (stray <= hi)):
                return float(ref[first] - ref[0])
    return float(max(0.0, duration_s - ref[0]))


def tempo_change_index(ref_s: np.ndarray) -> int | None:
    """Index of the first annotated beat at the new tempo after an abrupt change, or None.

    Abrupt: six steady intervals (within 3 %), then at most two in between, then
    six steady intervals again at a tempo at least 10 % away. Rubato, which
    swings without settling, does not count.
    """
    ibi = np.diff(ref_s)

    def steady(x: np.ndarray) -> bool:
        return bool(x.max() <= x.min() * STEADY_RATIO)

    n = STEADY_BEATS
    for i in range(n, len(ibi) - n - 1):
        before, after = ibi[i - n:i], ibi[i + 2:i + 2 + n]
        ratio = np.median(after) / np.median(before)
        if steady(before) and steady(after) and max(ratio, 1 / ratio) >= TEMPO_CHANGE_RATIO:
            # the first interval that leaves the old tempo; its end is the first new beat
            old = np.median(before)
            for j in range(i, i + 3):
                if abs(ibi[j] / old - 1) > STEADY_RATIO - 1:
                    return j + 1
    return None


def relock_time_s(ref_s: np.ndarray, est_s: np.ndarray, duration_s: float) -> float | None:
    """Lock time measured from an abrupt tempo change, or None when there is none."""
    i = tempo_change_index(ref_s)
    if i is None:
        return None
    return lock_time_s(ref_s[i:], est_s, duration_s)


@dataclass
class LiveStats:
    seconds: float = 0.0
    beats: int = 0
    overflows: int = 0
    drift_ppm: float = 0.0  # the input's sample clock against the agent's


TimedBeatCallback = Callable[[BeatEvent, float], None]


def follow_input(on_beat: BeatCallback | None = None, device: str | int | None = None,
                 rate: int | None = None, hop_size: int | None = None,
                 stream_factory: Callable[..., Any] | None = None,
                 max_seconds: float | None = None,
                 on_block: Callable[[int, int, int], None] | None = None,
                 on_heard_beat: TimedBeatCallback | None = None,
                 offset_ms: float = 0.0) -> LiveStats:
    """Follow an audio input device until Ctrl-C (or ``max_seconds`` of audio).

    Each beat goes to ``on_beat(event)`` and ``on_heard_beat(event, heard_us)``:
    ``heard_us`` is when the beat was heard on the agent's timeline, from PortAudio's
    input ADC times (gridcast.host.live.live_input), plus ``offset_ms``.
    ``stream_factory`` is ``sounddevice.InputStream`` unless a test passes something
    with the same interface (there is no audio input on a build machine).
    ``on_block(n, rate, total)`` sees every block as it arrives (n samples, total so far).
    """
    from gridcast.host.live.live_input import LiveInput

    stats = LiveStats()
    live = LiveInput(device=device, rate=rate, blocksize=hop_size or 512, offset_ms=offset_ms,
                     stream_factory=stream_factory)
    with Tracker(live.rate, hop_size=hop_size) as tracker, live:
        for block, _first in live.blocks():
            stats.seconds += len(block) / live.rate
            stats.overflows = live.overflows
            if on_block is not None:
                on_block(len(block), live.rate, round(stats.seconds * live.rate))
            for event in tracker.process(block):
                stats.beats += 1
                if on_beat is not None:
                    on_beat(event)
                if on_heard_beat is not None:
                    on_heard_beat(event, live.heard_us(event.sample))
            if max_seconds is not None and stats.seconds >= max_seconds:
                break
    stats.overflows = live.overflows
    stats.drift_ppm = live.clock.drift_ppm
    return stats
