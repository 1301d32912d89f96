"""The room's coming beats, predicted from the C tracker: a live beat source without a map.

The C tracker (gridcast.native) follows the input hop by hop. After each hop it knows
the tempo and where in the beat the music is (``phase``, 0..1 at the end of the hop),
so the next beat falls at ``end of hop + (1 − phase) · 60 / bpm``. The agent keeps that
model, causal and on its own timeline (every input frame is timed by when it was heard:
gridcast.host.live.live_input), and answers ``upcoming(now_us, horizon_us)`` with
the model's beats, exactly as an Ableton Link session does
(gridcast.agent.live_beat_source):

- **tempo and phase**: the tracker's, read after every fed block. The tracker's beat
  events fall on these predictions (measured: the prediction held 100 ms ahead is the
  emitted beat, p50 0 ms), so predicting ahead costs no accuracy.
- **bar position**: found in the recent audio by the offline analyzer's bar stage on a
  20 s window (gridcast.agent.live_bars, read every second beat; in a worker thread
  with ``bar_worker``, as live mode runs it), counted on from the
  beat it placed last, with its bar length (2, 3 or 4). Until the first window is
  read, the tracker's own downbeat guess (0, unknown, until it has one), with the bar
  length from the spacing of its last two downbeats (3 or 4; 4 until known).
- **start**: beats are predicted from the tracker's second beat on; its first comes with
  its prior tempo (161 BPM at confidence 0.04 on every dev clip), not a measured one.
- **states**: ``locked`` while the tracker gives beats (one within ``lost_beats`` beat
  periods of the newest audio) with a confidence of at least ``min_confidence``. When
  they stop (silence: the tracker stops after 1 s below -80 dBFS or 2.5 s without an
  onset; confidence lost; the input stopped) the model ``coasts`` on its tempo for
  ``coast_s``, each beat's confidence falling linearly to 0, then goes ``idle`` (no
  beats: the devices show their idle effect). Beats from the tracker lock it again.

The operator's controls (a live show's tempo octave and bar are a judgement call):

- **tempo hint** (``tempo_hint``, ``set_tempo_hint``): the tracker follows only
  hint / 1.3 .. hint × 1.3 BPM (the range ``gridcast analyze --tempo-hint`` searches), so
  a song the tracker took at half or double speed is followed at the tempo the DJ
  knows. A new hint restarts the tracker at the next block; the model coasts on its
  beats until the restarted tracker gives two.
- **downbeat** (``set_downbeat``): the model's beat nearest the given time becomes the
  one, and from then on the bar is counted beat by beat (``beats_per_bar`` if given)
  instead of found in the audio, until the model goes idle or a new
  tempo hint restarts the tracker. A press nearer the middle between two beats than
  either beat (over a quarter of a beat from both) says the tracker follows the
  off-beat: the beats given move half a beat (``half_beat``), and the one is the moved
  beat nearest the press. They stay moved while the tracker keeps its phase; when its
  own beats jump half a beat (it found the beat itself), the move ends, and the bar
  count goes on across the jump; it ends too when the tempo changes (the move was for
  the old beats).

The states are judged from times, on every call, so an input that stops feeding
entirely still coasts and goes idle. Unlike Link's, an answer may start up to
``catch_up_ms`` in the past: a beat the tracker decided late (its phase jumped), when
the devices fired none near it (a device fires a beat up to 50 ms late). A beat the
devices hold that the tracker moved further back than that stays where it is held
(``hold_ms``): late rather than lost. No beat comes within 0.6 beats of the one fired
last (the beat: the shorter of the model's period and the tracker's last beat gap).

Band envelopes: per hop, the energy below 250 Hz, 250 Hz–2 kHz and above 2 kHz,
each scaled to 0..255 by a slowly falling running peak. ``envelope()`` gives the last
``env_span_ms`` of them stamped ``env_delay_ms`` after they were heard (energy cannot
be predicted; the delay lets a block reach the devices before its frames are due).
The reader thread only keeps the hops; they are analysed in batches (one FFT call).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridcast.agent.clock import now_us as agent_now_us
from gridcast.agent.live_bars import LiveBars
from gridcast.agent.live_beat_source import LiveBeat, SourceState
from gridcast.agent.tempo_hint import hint_range
from gridcast.native import BeatEvent, Tracker
from gridcast.protocol import messages

BASS_HZ = 250.0
MID_HZ = 2000.0
STEADY_BEATS = 6  # beat gaps that must agree to overrule the tracker's tempo read-out
STEADY_TOLERANCE = 0.15
MIN_GAP = 0.6  # beats: no beat closer than this to the one fired last
PEAK_FALL_PER_S = 0.5  # the envelope's running peak falls to half in a second of quiet

@dataclass(frozen=True)
class HeardBeat:
    """A beat the tracker reported: when it was heard, when it was decided (agent µs)."""

    heard_us: float
    decided_us: int
    beat_in_bar: int
    bpm: float
    confidence: float


@dataclass(frozen=True)
class EnvelopeBlock:
    """Band energies (0..255 per frame) from agent time ``start_us`` at ``rate_mhz``."""

    start_us: int
    rate_mhz: int
    bass: bytes
    mid: bytes
    high: bytes


class TrackerBeatSource:
    """A LiveBeatSource fed with input blocks; see the module docstring.

    ``feed(samples, first_frame, heard_us)`` is called by the input's reader thread
    (``heard_us(frame)``: when input frame ``frame`` was heard, agent µs);
    ``upcoming``/``state``/``envelope`` by the sender, from another thread.
    """

    def __init__(self, rate_hz: int, hop_size: int | None = None, coast_s: float = 4.0,
                 lost_beats: float = 2.0, min_confidence: float = 0.0,
                 catch_up_ms: float = 40.0, hold_ms: float = 60.0,
                 downbeat_strength: float = 1.0, beat_strength: float = 0.5,
                 env_delay_ms: float = 80.0, env_span_ms: float = 200.0,
                 on_beat: Callable[[HeardBeat], None] | None = None,
                 now_us: Callable[[], int] = agent_now_us,
                 tempo_hint: float | None = None, find_bars: bool = True,
                 bar_worker: bool = False) -> None:
        self.rate_hz = int(rate_hz)
        self._hop_size = hop_size
        self.tempo_hint = tempo_hint
        self.tracker = self._new_tracker(tempo_hint)
        self.hop = self.tracker.hop_size
        self._origin = 0  # the input frame the tracker's sample 0 is
        self._new_hint: tuple[float | None] | None = None  # set_tempo_hint, for the reader
        self._counted_bars = False  # set_downbeat: the bar counted by the model
        # The bar from the recent audio (the analyzer's bar stage on a sliding window);
        # None: the tracker's own guess.
        # bar_worker: its windows are read in a thread of their own (live input), not in
        # feed (replay and tests: the same result whatever the threads' timing).
        self.bars = LiveBars(self.rate_hz, worker=bar_worker) if find_bars else None
        self.half_beat = False  # set_downbeat: the beats given are the tracker's + half
        self._half_beat_period = 0.0  # the beat period the move was made at (µs)
        self.coast_us = coast_s * 1e6
        self.lost_beats = lost_beats
        self.min_confidence = min_confidence
        self.catch_up_us = catch_up_ms * 1000
        self.hold_us = hold_ms * 1000
        self.downbeat_strength = downbeat_strength
        self.beat_strength = beat_strength
        self.on_beat = on_beat
        self._now_us = now_us
        self._lock = threading.Lock()
        self._analyse_lock = threading.Lock()
        self._fed = 0  # input frames fed so far
        # The model: a beat at _next_us (agent µs), every _period_us, _next_bib in the bar.
        self._next_us: float | None = None
        self._period_us = 0.0
        self._next_bib = 0
        self._locked_until_us = 0.0  # locked up to here; coasting after it
        self._last_event: tuple[float, int] | None = None  # (heard_us, beat_in_bar)
        self._last_downbeat_us: float | None = None
        self._last_gap_us = 0.0  # between the tracker's last two beats
        self._steady: float | None = None  # the beats' mean spacing, when steady
        self._recent: deque[float] = deque(maxlen=STEADY_BEATS + 1)  # heard µs
        self._beats_per_bar = 4
        self._state = SourceState.IDLE
        self._answer: list[int] = []  # the beat times of the last answer
        self._last_due_us = -1e18
        self.tempo = 0.0
        self.confidence = 0.0  # the tracker's own, 0..1
        self.beats = 0
        # Envelopes: per hop (heard_us at the hop's start, bass, mid, high).
        self.env_delay_us = env_delay_ms * 1000
        self._env_frames = max(1, min(messages.MAX_LIVE_ENV_FRAMES,
                                      round(env_span_ms / 1000 * self.rate_hz / self.hop)))
        self._env: list[tuple[float, float, float, float]] = []
        self._env_peak = (1e-6, 1e-6, 1e-6)
        self._env_pending: list[tuple[float, np.ndarray]] = []  # hops not analysed yet
        self._env_sent_to = -1.0
        freqs = np.fft.rfftfreq(self.hop, 1 / self.rate_hz)
        bands = [(freqs > 0) & (freqs < BASS_HZ), (freqs >= BASS_HZ) & (freqs < MID_HZ),
                 freqs >= MID_HZ]
        self._band_matrix = np.stack(bands, axis=1).astype(np.float64)  # bins × 3
        self._peak_fall = PEAK_FALL_PER_S ** (self.hop / self.rate_hz)
        self._window = np.hanning(self.hop).astype(np.float32)

    # --- the LiveBeatSource face ------------------------------------------------------
    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def tempo_bpm(self) -> float:
        return self.tempo

    @property
    def beats_per_bar(self) -> int:
        return self._beats_per_bar

    @property
    def bar_from(self) -> str:
        """Where the bar comes from: ``press`` (the operator's downbeat), ``audio``
        (found in the recent audio) or ``tracker`` (the tracker's own guess)."""
        if self._counted_bars:
            return "press"
        if self.bars is not None and self.bars.anchor is not None:
            return "audio"
        return "tracker"

    def upcoming(self, now_us: int, horizon_us: int) -> list[LiveBeat]:
        with self._lock:
            self._state = self._state_at(now_us)
            if self._state is SourceState.IDLE or self._next_us is None:
                self._answer = []
                return []
            period, end = self._period_us, now_us + horizon_us
            first = self._next_us + self._moved_us()
            if self._state is SourceState.COASTING:
                end = min(end, int(self._locked_until_us + self.coast_us))
            # The beat the devices fired last (from the previous answer): none of the
            # new beats comes within MIN_GAP beats of it, so a model that moved never
            # makes a double flash.
            self._last_due_us = max([self._last_due_us] + [t for t in self._answer
                                                           if t <= now_us])
            # The gap is a share of the shorter of the model's period and the tracker's
            # last beat gap: when the tempo read-out doubles for a beat or two, the
            # tracker's beats a (faster) period apart are still given.
            gap = min(period, self._last_gap_us) if self._last_gap_us > 0 else period
            not_before = self._last_due_us + MIN_GAP * gap
            # A beat the tracker placed just behind us (it decides a beat up to two
            # frames late when its phase jumps) is still given, if the devices fired
            # none near it: the protocol's lists start at the beat due last, and a device
            # fires a beat up to 50 ms late rather than never.
            since = max(now_us - self.catch_up_us, not_before)
            k = int(np.ceil((since - first) / period))
            beats = []
            moved = first + (k - 1) * period  # the model's beat just behind
            held = [t for t in self._answer if now_us < t <= moved + self.hold_us]
            if held and moved >= not_before and held[0] - moved <= self.hold_us:
                # The tracker moved a beat the devices still hold into the past, too far
                # back to be given (its phase jumped ahead): the held beat stays where it
                # is, late rather than lost.
                k -= 1
                held_at: float | None = held[0]
            else:
                held_at = None
            while True:
                at = first + k * period
                if held_at is not None:
                    at, held_at = held_at, None
                if at >= end:
                    break
                bib = ((self._next_bib - 1 + k) % self._beats_per_bar) + 1 if self._next_bib else 0
                confidence = 1.0
                if at > self._locked_until_us:
                    confidence = max(0.0, 1.0 - (at - self._locked_until_us) / self.coast_us)
                strength = self.downbeat_strength if bib == 1 else self.beat_strength
                beats.append(LiveBeat(round(at), bib, strength, round(confidence, 2)))
                k += 1
            self._answer = [b.at_us for b in beats]
            return beats

    def _state_at(self, now_us: float) -> SourceState:
        if self._next_us is None:
            return SourceState.IDLE
        if now_us <= self._locked_until_us:
            return SourceState.LOCKED
        if now_us <= self._locked_until_us + self.coast_us:
            return SourceState.COASTING
        return SourceState.IDLE

    # --- the input side ----------------------------------------------------------------
    def feed(self, samples: np.ndarray, first_frame: int,
             heard_us: Callable[[float], float]) -> list[BeatEvent]:
        """One input block (mono float32) starting at input frame ``first_frame``."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._new_hint is not None:  # the reader thread owns the tracker: swap it here
            self._restart(self._new_hint[0], first_frame, heard_us(first_frame))
        hops_before = self._fed // self.hop
        self._fed = first_frame + samples.size
        if self.bars is not None:
            self.bars.feed(samples, first_frame)
        events = self.tracker.process(samples)
        decided = self._now_us()
        # each beat's place in the bar, counted on from the audio's last window
        found: list[tuple[int, int] | None] = [None] * len(events)
        if self.bars is not None:
            found = [self.bars.bar_of(self.bars.beat(self._origin + e.sample)) for e in events]
        end_frame = self._origin + ((self._fed - self._origin) // self.hop) * self.hop
        self._add_envelope(samples, first_frame, hops_before, heard_us)
        self._update(events, found, decided, end_frame, heard_us)
        if self.bars is not None:
            # Reading a window takes about 20 ms: only after the model has taken this
            # block's beats, so the read never delays them (with bar_worker, the read
            # is handed to the worker and this returns at once).
            self.bars.read_if_due()
        return events

    def _update(self, events: list[BeatEvent], found: list[tuple[int, int] | None],
                decided: int, end_frame: int, heard_us: Callable[[float], float]) -> None:
        """The model from the tracker's new beats and its tempo and phase now."""
        with self._lock:
            for event, bar in zip(events, found, strict=True):
                heard = heard_us(self._origin + event.sample)
                self.beats += 1
                self._on_event(heard, event, bar)
                if self.on_beat is not None:
                    self.on_beat(HeardBeat(heard, decided, event.beat_in_bar, event.bpm,
                                           event.confidence))
            self.confidence = self.tracker.confidence
            bpm, phase = self.tracker.bpm, self.tracker.phase
            # Nothing from the first beat alone: it comes with the tracker's prior tempo
            # (it has heard no beat gap yet), and a beat predicted from it would flash
            # off the music and, within MIN_GAP, hold back the right one.
            if bpm <= 0 or self._last_event is None or len(self._recent) < 2:
                return
            end_us = heard_us(end_frame)
            period = 60e6 / bpm
            next_us = end_us + (1.0 - phase) * period
            steady = self._steady
            if steady is not None and abs(period / steady - 1) > STEADY_TOLERANCE:
                # The tracker's tempo read-out jumped (to half or double, for a hop or
                # two): keep the beats' own spacing, counted on from its last beat.
                period = steady
                last = self._last_event[0]
                next_us = last + max(1, np.ceil((end_us - last) / period)) * period
            elif steady is not None:
                # The tracker's beat period is a whole number of hops (11.6 ms at
                # 44.1 kHz); its beats average that out. The beats after the next one
                # (and a coast) run at the beats' own mean spacing.
                period = steady
            following = (end_us - self._last_event[0] <= self.lost_beats * period
                         and self.tracker.confidence >= self.min_confidence)
            if following:
                if self.half_beat and abs(period / self._half_beat_period - 1) > STEADY_TOLERANCE:
                    self.half_beat = False  # another tempo: the move was for the old beats
                self.tempo = 60e6 / period
                self._period_us = period
                self._next_us = next_us
                self._next_bib = self._bib_at(self._next_us)
                self._locked_until_us = max(self._locked_until_us,
                                            self._last_event[0] + self.lost_beats * period)
            else:
                self._locked_until_us = min(self._locked_until_us, end_us)

    # --- the operator's controls --------------------------------------------------------
    def _new_tracker(self, tempo_hint: float | None) -> Tracker:
        tempi = hint_range(tempo_hint)
        if tempi is None:
            return Tracker(self.rate_hz, hop_size=self._hop_size)
        return Tracker(self.rate_hz, hop_size=self._hop_size, min_bpm=tempi[0], max_bpm=tempi[1])

    def set_tempo_hint(self, tempo_hint: float | None) -> None:
        """Follow hint / 1.3 .. hint × 1.3 BPM from the next input block on (None: the
        whole range again). ValueError outside 40-230 BPM."""
        hint_range(tempo_hint)  # refuse now, not in the reader thread
        self._new_hint = (tempo_hint,)
        self.tempo_hint = tempo_hint  # what status shows: in force from the next block

    def _restart(self, tempo_hint: float | None, first_frame: int, heard: float) -> None:
        """A new tracker from input frame ``first_frame`` (heard at ``heard``, agent µs);
        the model coasts on until it gives two beats. Bars counted after
        ``set_downbeat`` end: in another tempo octave the beats are others."""
        old, self.tracker = self.tracker, self._new_tracker(tempo_hint)
        old.close()
        self._new_hint, self._origin = None, first_frame
        with self._lock:
            self._locked_until_us = min(self._locked_until_us, heard)
            # Another tempo octave makes other beats: bars counted in the old ones are off.
            self._counted_bars = False
            self.half_beat = False
            self._last_event = None
            self._recent.clear()
            self._steady = None
            self._last_gap_us = 0.0
            self._last_downbeat_us = None
        if self.bars is not None:
            self.bars.restart()

    def set_downbeat(self, at_us: float, beats_per_bar: int | None = None) -> int:
        """The model's beat nearest ``at_us`` (agent µs) is the one from now on; the bar
        is then counted beat by beat. A press over a quarter of a beat from every beat
        moves the beats half a beat first (the tracker was on the off-beat; see the
        module doc). Returns the one's time (µs). ValueError before the model has a
        beat or with a bar of fewer than 2 or more than 12 beats."""
        if beats_per_bar is not None and not 2 <= beats_per_bar <= 12:
            raise ValueError(f"beats_per_bar {beats_per_bar}: give 2-12")
        with self._lock:
            if self._next_us is None or self._last_event is None or self._period_us <= 0:
                raise ValueError("no beat to set yet: the music has not been followed")
            if beats_per_bar is not None:
                self._beats_per_bar = beats_per_bar
            heard, period = self._last_event[0], self._period_us
            beats = (at_us - self._next_us - self._moved_us()) / period
            if abs(beats - round(beats)) > 0.25:  # between the beats given: the off-beat
                self.half_beat, self._half_beat_period = not self.half_beat, period
            k = round((at_us - self._next_us - self._moved_us()) / period)  # the one: beat k
            one = self._next_us + self._moved_us() + k * period
            # The tracker's beat the one is given for, counted from its last event.
            n = round((self._next_us + k * period - heard) / period)
            self._last_event = (heard, (-n) % self._beats_per_bar + 1)
            self._counted_bars = True
            self._next_bib = self._bib_at(self._next_us)
            return round(one)

    def _moved_us(self) -> float:
        """How far the beats given are from the tracker's: half a beat, or none."""
        return 0.5 * self._period_us if self.half_beat else 0.0

    def _on_event(self, heard: float, event: BeatEvent, bar: tuple[int, int] | None) -> None:
        if self._state_at(heard) is SourceState.IDLE:
            self._counted_bars = False  # new music after the model went idle
            self.half_beat = False
        if self.half_beat and self._last_event is not None and self._period_us > 0:
            beats = (heard - self._last_event[0]) / self._period_us
            if abs(beats - round(beats)) > 0.25:
                # The tracker's beats jumped half a beat: onto the beats given. The move
                # ends, and the last beat counts from where it was given.
                half = self._moved_us()
                self._last_event = (self._last_event[0] + half, self._last_event[1])
                self._recent = deque((t + half for t in self._recent),
                                     maxlen=self._recent.maxlen)
                self.half_beat = False
        counted = self._counted_bars and self._last_event is not None and self._period_us > 0
        if counted:  # the operator's bar, counted on
            bib = self._bib_at(heard)
        elif bar is not None:  # found in the audio
            bib, self._beats_per_bar = bar
        else:  # the tracker's guess
            bib = event.beat_in_bar
        if bib == 1 and not counted and bar is None:
            if self._last_downbeat_us is not None and self._period_us > 0:
                length = round((heard - self._last_downbeat_us) / self._period_us)
                if length in (3, 4):
                    self._beats_per_bar = length
            self._last_downbeat_us = heard
        if self._last_event is not None:
            self._last_gap_us = heard - self._last_event[0]
        self._last_event = (heard, bib)
        self._recent.append(heard)
        self._steady = self._steady_period_us()  # changes only with a beat

    def _steady_period_us(self) -> float | None:
        """The median spacing of the tracker's last beats, when they agree."""
        if len(self._recent) < self._recent.maxlen:  # type: ignore[operator]
            return None
        times = np.asarray(self._recent)
        gaps = np.diff(times)
        median = float(np.median(gaps))
        if not np.all(np.abs(gaps / median - 1) < STEADY_TOLERANCE):
            return None
        return float(times[-1] - times[0]) / gaps.size  # their mean spacing

    def _bib_at(self, at_us: float) -> int:
        assert self._last_event is not None
        heard, bib = self._last_event
        if not bib:
            return 0
        n = round((at_us - heard) / self._period_us)
        return ((bib - 1 + n) % self._beats_per_bar) + 1

    # --- band envelopes ----------------------------------------------------------------
    def _add_envelope(self, samples: np.ndarray, first_frame: int, hops_before: int,
                      heard_us: Callable[[float], float]) -> None:
        """Keep the block's hops; their energies are computed in batches (``_analyse``)."""
        first_hop = max(hops_before, -(-first_frame // self.hop))  # hops begun in this block
        hops = range(first_hop, self._fed // self.hop)  # a hop begun earlier is skipped
        if not hops:
            return
        lo = first_hop * self.hop - first_frame
        rows = [(heard_us(h * self.hop), samples[lo + i * self.hop:lo + (i + 1) * self.hop])
                for i, h in enumerate(hops)]
        with self._lock:
            self._env_pending += rows
            full = len(self._env_pending) >= self._env_frames
        if full:  # nobody asked for a while: keep the running peak current
            self._analyse()

    def _analyse(self) -> None:
        """The pending hops' band energies, all at once: one FFT call and one product with
        the band matrix (numpy calls per hop were most of the reader thread's cost)."""
        with self._analyse_lock:  # the reader and the sender both call this
            self._analyse_pending()

    def _analyse_pending(self) -> None:
        with self._lock:
            pending, self._env_pending = self._env_pending, []
        if not pending:
            return
        frames = np.stack([hop for _, hop in pending]) * self._window
        spectrum = np.fft.rfft(frames, axis=1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        energy = np.sqrt(power @ self._band_matrix).tolist()  # hops × 3
        fall, (pb, pm, ph) = self._peak_fall, self._env_peak
        rows = []
        for (heard, _), (b, m, h) in zip(pending, energy, strict=True):
            pb, pm, ph = max(b, pb * fall), max(m, pm * fall), max(h, ph * fall)
            rows.append((heard, b / pb, m / pm, h / ph))
        self._env_peak = (pb, pm, ph)
        with self._lock:
            self._env = (self._env + rows)[-self._env_frames:]

    def envelope(self) -> EnvelopeBlock | None:
        """The newest band energies, stamped to be shown ``env_delay_ms`` after heard;
        None when nothing new was heard since the last call."""
        self._analyse()
        with self._lock:
            if not self._env or self._env[-1][0] <= self._env_sent_to:
                return None
            frames = list(self._env)
            self._env_sent_to = frames[-1][0]
        levels = np.clip(np.round(np.asarray([f[1:] for f in frames]) * 255), 0, 255)
        levels = levels.astype(np.uint8)
        return EnvelopeBlock(round(frames[0][0] + self.env_delay_us),
                             round(1000 * self.rate_hz / self.hop),
                             levels[:, 0].tobytes(), levels[:, 1].tobytes(),
                             levels[:, 2].tobytes())

    def close(self) -> None:
        if self.bars is not None:
            self.bars.close()
        self.tracker.close()
