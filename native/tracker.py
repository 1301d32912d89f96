"""Python face of the C tracker: a class over new / process / free, and a whole-signal helper.

The C side processes exactly one hop per call; :meth:`Tracker.process` takes
any number of samples, keeps the remainder for the next call, and returns the
beats decided meanwhile, so callers can feed whatever block size their audio
source delivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gridcast.protocol.errors import GridcastError

try:
    from gridcast.native._tracker_cffi import ffi, lib
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError("gridcast.native: the C extension is not built; "
                      "reinstall with `pip install -e .` (needs a C compiler)") from exc


class TrackerError(GridcastError, ValueError):
    """A bad tracker config or input, with the C library's status code."""

    def __init__(self, message: str, status: int = -2) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BeatEvent:
    time_s: float  # stream time of the beat, from the first sample fed
    sample: int
    bpm: float
    confidence: float
    beat_in_bar: int  # 1 = downbeat; 0 = no guess yet


@dataclass(frozen=True)
class TrackResult:
    beats_s: np.ndarray
    beat_in_bar: np.ndarray
    bpm: np.ndarray  # per hop, 0 before any signal
    confidence: np.ndarray  # per hop
    hop_s: float


def _status_text(status: int) -> str:
    return ffi.string(lib.gc_status_str(status)).decode()


class Tracker:
    """One streaming tracker. Use as a context manager or call :meth:`close`."""

    def __init__(self, sample_rate_hz: int, hop_size: int | None = None,
                 frame_size: int | None = None, min_bpm: float = 50.0,
                 max_bpm: float = 220.0) -> None:
        config = ffi.new("gc_tracker_config_t *")
        lib.gc_tracker_default_config(config, int(sample_rate_hz))
        if hop_size is not None:
            config.hop_size = int(hop_size)
            if frame_size is None:  # the default ~93 ms window, unless the hop is longer
                longer = 1 << (int(hop_size) - 1).bit_length()
                config.frame_size = max(int(config.frame_size), longer)
        if frame_size is not None:
            config.frame_size = int(frame_size)
        config.min_bpm, config.max_bpm = float(min_bpm), float(max_bpm)
        status = ffi.new("gc_status_t *")
        handle = lib.gc_tracker_new(config, status)
        if handle == ffi.NULL:
            raise TrackerError(
                f"tracker config refused ({_status_text(status[0])}): sample_rate_hz="
                f"{config.sample_rate_hz}, hop_size={config.hop_size}, "
                f"frame_size={config.frame_size}, min_bpm={min_bpm}, max_bpm={max_bpm}",
                int(status[0]))
        self._t = ffi.gc(handle, lib.gc_tracker_free)
        self.sample_rate_hz = int(config.sample_rate_hz)
        self.hop_size = int(config.hop_size)
        self.frame_size = int(config.frame_size)
        self._pending = np.zeros(0, dtype=np.float32)
        self._out = ffi.new("gc_beat_t *")
        self.bpm = 0.0
        self.phase = 0.0
        self.confidence = 0.0

    @property
    def state_bytes(self) -> int:
        return int(lib.gc_tracker_state_bytes(self._handle()))

    @property
    def latency_s(self) -> float:
        return float(lib.gc_tracker_latency_s(self._handle()))

    def _handle(self) -> Any:  # a cffi pointer
        if self._t is None:
            raise TrackerError("tracker is closed", int(lib.GC_ERR_NULL))
        return self._t

    def process(self, samples: np.ndarray) -> list[BeatEvent]:
        """Feed mono samples (any length); returns the beats decided in the complete hops."""
        handle = self._handle()
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._pending.size:
            data = np.concatenate([self._pending, data])
        n_hops = data.size // self.hop_size
        events: list[BeatEvent] = []
        nonfinite = False
        for i in range(n_hops):
            hop = data[i * self.hop_size:(i + 1) * self.hop_size]
            status = lib.gc_tracker_process_audio(
                handle, ffi.from_buffer("float[]", hop), self.hop_size, self._out)
            nonfinite |= status == lib.GC_ERR_NONFINITE
            if status not in (lib.GC_OK, lib.GC_ERR_NONFINITE):
                raise TrackerError(f"process_audio: {_status_text(status)}", int(status))
            self._record(events)
        self._pending = data[n_hops * self.hop_size:].copy()
        if nonfinite:
            raise TrackerError("process: NaN or Inf samples in the input (read as silence); "
                               "the tracker state is intact", int(lib.GC_ERR_NONFINITE))
        return events

    def process_odf(self, value: float) -> BeatEvent | None:
        """Feed one onset-function value standing for one hop."""
        status = lib.gc_tracker_process_odf(self._handle(), float(value), self._out)
        if status != lib.GC_OK:
            raise TrackerError(f"process_odf({value!r}): {_status_text(status)}", int(status))
        events: list[BeatEvent] = []
        self._record(events)
        return events[0] if events else None

    def _record(self, events: list[BeatEvent]) -> None:
        out = self._out
        self.bpm, self.phase = float(out.bpm), float(out.phase)
        self.confidence = float(out.confidence)
        if out.is_beat:
            sample = int(out.beat_sample)
            events.append(BeatEvent(sample / self.sample_rate_hz, sample, float(out.bpm),
                                    float(out.confidence), int(out.beat_in_bar)))

    def reset(self) -> None:
        lib.gc_tracker_reset(self._handle())
        self._pending = np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        if self._t is not None:
            ffi.release(self._t)
            self._t = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track_signal(signal: np.ndarray, sample_rate_hz: int, **config: float) -> TrackResult:
    """Run a whole mono signal through a fresh tracker, hop by hop, as if live."""
    data = np.ascontiguousarray(np.asarray(signal, dtype=np.float32).reshape(-1))
    with Tracker(sample_rate_hz, **config) as tracker:  # type: ignore[arg-type]
        hop = tracker.hop_size
        n_hops = data.size // hop
        bpm = np.zeros(n_hops, dtype=np.float32)
        conf = np.zeros(n_hops, dtype=np.float32)
        beats: list[float] = []
        bars: list[int] = []
        out = tracker._out
        handle = tracker._handle()
        buf = ffi.from_buffer("float[]", data)
        for i in range(n_hops):
            lib.gc_tracker_process_audio(handle, buf + i * hop, hop, out)
            bpm[i], conf[i] = out.bpm, out.confidence
            if out.is_beat:
                beats.append(int(out.beat_sample) / sample_rate_hz)
                bars.append(int(out.beat_in_bar))
        return TrackResult(np.asarray(beats), np.asarray(bars, dtype=np.int64), bpm, conf,
                           hop / sample_rate_hz)
