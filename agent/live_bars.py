"""Bar position of live beats from the recent audio: the offline analyzer's bar stage, run
on a sliding window.

The C tracker's own downbeat guess (bass accents counted per position of the bar) is
close to chance on music (docs/live.md: downbeat F 0.15-0.28 in live mode). The offline
analyzer does much better with its beat network's downbeat activation and its bar
Viterbi (host/analysis/downbeats.py), but the network looks about 20 s ahead as well
as back. ``LiveBars`` runs both on the last ``context_s`` of input at every
``every_beats``-th beat:

- the analyzer's features are computed as the input comes (``FeatureStream``);
- the network reads the window; its activation near the window's end lacks what comes
  after, so beats in the last ``tail_s`` are left out;
- the bar Viterbi (network activation plus the bass-onset and harmonic-change
  accents, the analyzer's weights) gives the window's beats their place in the bar,
  and the newest beat it placed is the *anchor*;
- a later beat's place is counted on from the anchor, beat by beat, in the anchor's
  meter (2, 3 or 4 beats) until the next window moves it.

Cost: one pass of the two networks over ``context_s`` (about 20 ms of CPU for 20 s)
every ``every_beats`` beats, about 2 % of a core at 120 BPM. ``read_if_due`` reads a
due window in the caller's thread, or, with ``worker=True`` (live input), hands it
to a worker thread and returns at once: the input's reader thread then never spends
the 20 ms, and a beat's correction never waits for a read. The worker's anchor
applies from the beat it placed on, so a read that ends a few beats later still
counts those beats right. Replay and tests read in the caller's thread, for
results that do not depend on thread timing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from gridcast.host.analysis import beat_network, downbeats
from gridcast.host.analysis.features import FRAME_RATE_HZ, Features, FeatureStream
from gridcast.host.analysis.params import AnalyzerParams

log = logging.getLogger("gridcast.live")

MIN_BEATS = 4  # beats in a window before it is read
BREAK_S = 2.0  # beats further apart than this (and than BREAK_GAPS gaps): new music
BREAK_GAPS = 3.0
BATCH_S = 0.1  # input is analysed in batches of this much (per block cost 10x more)


@dataclass(frozen=True)
class BarAnchor:
    """The beat ``index`` (counted by LiveBars.beat) is beat ``beat_in_bar`` of a bar
    of ``beats_per_bar``."""

    index: int
    beat_in_bar: int
    beats_per_bar: int


class LiveBars:
    """Feed it the input (``feed``) and the tracker's beats (``beat``); ``bar_of`` gives
    a beat's place in its bar, or None before the first window was read."""

    def __init__(self, rate_hz: int, context_s: float = 20.0, tail_s: float = 1.0,
                 every_beats: int = 2,
                 accent_weight: float = AnalyzerParams.downbeat_accent_weight,
                 worker: bool = False) -> None:
        self.rate_hz = int(rate_hz)
        self.context_frames = round(context_s * FRAME_RATE_HZ)
        self.tail_frames = tail_s * FRAME_RATE_HZ
        self.every_beats = max(1, int(every_beats))
        self.accent_weight = accent_weight
        self.anchor: BarAnchor | None = None
        self.windows = 0  # windows read so far
        self._stream: FeatureStream | None = None
        self._first_frame = 0  # the input frame the stream's sample 0 is
        self._next_frame = 0  # the input frame the next block should start at
        self._held: Features | None = None  # the stream's recent frames, in one piece
        self._pending: list[Features] = []  # frames since, block by block
        self._pending_frames = 0
        self._samples: list[np.ndarray] = []  # input not yet analysed (in batches: cheaper)
        self._sample_count = 0
        self._kept_from = 0  # stream frame of self._held's first frame
        self._beats: list[tuple[int, float]] = []  # (index, stream frame) of recent beats
        self._count = 0  # beats so far
        self._skip = True  # the next beat starts new music: left out (see beat())
        self._due: float | None = None  # the newest beat, when a window is to be read
        # The worker (worker=True): one window at a time, handed over in _job. A restart
        # or lost input bumps _generation, and a window read before it is dropped.
        self._generation = 0
        self._job: tuple[int, Features, np.ndarray, int] | None = None
        self._busy = False
        self._wake = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None
        if worker:
            self._worker = threading.Thread(target=self._work, name="gc-live-bars", daemon=True)
            self._worker.start()

    # --- input ---------------------------------------------------------------------------
    def feed(self, samples: np.ndarray, first_frame: int) -> None:
        """A block of input (mono) starting at input frame ``first_frame``. A block that
        does not follow the last one (input lost) starts the features afresh."""
        if self._stream is None or first_frame != self._next_frame:
            self._stream = FeatureStream(self.rate_hz)
            self._first_frame = first_frame
            self._held, self._pending, self._pending_frames, self._kept_from = None, [], 0, 0
            self._beats, self._due = [], None
            self._forget()
            self._samples, self._sample_count = [], 0
        self._next_frame = first_frame + len(samples)
        self._samples.append(np.asarray(samples, dtype=np.float32).reshape(-1))
        self._sample_count += len(samples)
        if self._sample_count >= BATCH_S * self.rate_hz:
            self._analyse()

    def _analyse(self) -> None:
        """The input held back, through the feature stream."""
        if not self._samples or self._stream is None:
            return
        block = np.concatenate(self._samples)
        self._samples, self._sample_count = [], 0
        new = self._stream.feed(block)
        if new.n_frames:
            self._pending.append(new)
            self._pending_frames += new.n_frames
        if self._pending_frames >= FRAME_RATE_HZ:  # a second of frames: into the piece
            self._consolidate()

    def beat(self, input_frame: float) -> int:
        """The tracker gave a beat at ``input_frame``; returns its index. Every
        ``every_beats`` beats, the window is due to be read again (``read_if_due``)."""
        index = self._count
        self._count += 1
        if self._stream is None:
            return index
        at = (input_frame - self._first_frame) * FRAME_RATE_HZ / self.rate_hz
        if self._beats:
            gap = at - self._beats[-1][1]
            gaps = np.diff([b[1] for b in self._beats[-5:]])
            usual = float(np.median(gaps)) if gaps.size else gap
            if gap > max(BREAK_S * FRAME_RATE_HZ, BREAK_GAPS * usual):
                self.restart()  # the music stopped and started again
        if self._skip:
            # The tracker's first beat of new music comes with its prior tempo, often
            # before the music's first beat, and half a window of silence before it
            # reads as a change of harmony: a bar line that is not there.
            self._skip = False
            return index
        self._beats.append((index, at))
        oldest = self._stream.frames - self.context_frames
        self._beats = [b for b in self._beats if b[1] >= oldest]
        if index % self.every_beats == 0:
            self._due = at
        return index

    def read_if_due(self) -> None:
        """Read the window if a beat asked for it (every ``every_beats`` beats): in this
        thread, or handed to the worker. While the worker reads, the next due window
        waits for the next call (the newest beat is read then)."""
        if self._due is None:
            return
        if self._worker is None:
            newest, self._due = self._due, None
            job = self._take(newest)
            if job is not None:
                self._place(*job)
            return
        with self._wake:
            if self._busy:  # set from the hand-over until the read ends
                return
            newest, self._due = self._due, None
            self._job = self._take(newest)
            if self._job is not None:
                self._busy = True
                self._wake.notify_all()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the worker has no window to read (tests, benches); False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._busy, timeout_s)

    def restart(self) -> None:
        """New beats (another tempo octave, new music): the bar is found afresh."""
        self._beats, self._skip, self._due = [], True, None
        self._forget()

    def close(self) -> None:
        """Stop the worker (a window being read is finished and dropped)."""
        with self._wake:
            self._closed = True
            self._generation += 1
            self._wake.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)

    def _forget(self) -> None:
        """No anchor, and none from a window taken before now."""
        with self._wake:
            self._generation += 1
            self.anchor = None

    # --- output --------------------------------------------------------------------------
    def bar_of(self, index: int) -> tuple[int, int] | None:
        """(beat in bar, beats per bar) of beat ``index``, counted from the anchor."""
        if self.anchor is None:
            return None
        a = self.anchor
        return (a.beat_in_bar - 1 + index - a.index) % a.beats_per_bar + 1, a.beats_per_bar

    # --- the window -----------------------------------------------------------------------
    def _take(self, newest: float) -> tuple[int, Features, np.ndarray, int] | None:
        """The window ending at the beat ``newest`` (stream frame): (generation, its
        frames, its placed beats' times in s from its start, the newest placed beat's
        index); None when too little is placed yet."""
        self._analyse()
        self._consolidate()
        if self._held is None:
            return None
        end = min(int(np.floor(newest)), self._kept_from + self._held.n_frames)
        start = max(self._kept_from, end - self.context_frames)
        placed = [(i, at) for i, at in self._beats if start <= at < newest - self.tail_frames]
        if len(placed) < MIN_BEATS or end - start < FRAME_RATE_HZ:
            return None
        window = self._window(start, end)  # views of arrays never written again
        if window.n_frames == 0:
            return None
        times = np.array([(at - start) / FRAME_RATE_HZ for _, at in placed])
        return self._generation, window, times, placed[-1][0]

    def _place(self, generation: int, window: Features, times: np.ndarray, newest: int) -> None:
        """The bar Viterbi over one window; the newest placed beat becomes the anchor."""
        # one BLAS thread, as the analyzer: more only spin beside the audio threads
        with threadpool_limits(limits=1):
            activation = beat_network.activations(window.band_mag)[:, 1]
            bib = downbeats.beat_in_bar_from_activation(times, activation, FRAME_RATE_HZ,
                                                        window, self.accent_weight)
        ones = [k for k, b in enumerate(bib) if b == 1]
        with self._wake:
            if generation != self._generation:
                return  # new music since the window was taken
            meter = ones[-1] - ones[-2] if len(ones) >= 2 else (self.anchor.beats_per_bar
                                                                if self.anchor else 4)
            if meter not in downbeats.METERS:
                meter = 4
            self.anchor = BarAnchor(newest, int(bib[-1]), meter)
            self.windows += 1

    def _work(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    self._busy = False
                    self._wake.notify_all()
                    return
                job, self._job = self._job, None
            assert job is not None
            try:
                self._place(*job)
            except Exception:  # one bad window must not end the bar search
                log.exception("reading the bar window failed; the last bar found stays")
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _consolidate(self) -> None:
        """The pending frames join the held piece, which keeps one window."""
        parts = ([self._held] if self._held is not None else []) + self._pending
        self._pending, self._pending_frames = [], 0
        if not parts:
            return
        drop = max(0, sum(p.n_frames for p in parts) - self.context_frames)

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])[drop:]

        self._held = Features(FRAME_RATE_HZ, cat("flux"), cat("band_flux"),
                              cat("band_energy_db"), cat("chroma"), cat("rms"),
                              cat("band_mag"))
        self._kept_from += drop

    def _window(self, start: int, end: int) -> Features:
        """Stream frames start..end (end excluded) as one Features."""
        self._consolidate()
        held = self._held
        assert held is not None
        lo, hi = start - self._kept_from, end - self._kept_from
        return Features(FRAME_RATE_HZ, held.flux[lo:hi], held.band_flux[lo:hi],
                        held.band_energy_db[lo:hi], held.chroma[lo:hi], held.rms[lo:hi],
                        held.band_mag[lo:hi])
