"""Live mode on a recording, in simulated time: what the devices would fire, without waiting.

``replay(signal, rate)`` feeds the signal to a TrackerBeatSource block by block on a
simulated agent clock (sample ``i`` heard at ``i / rate`` s, every block decided when
its last sample is in), steps a LiveBeatSender every ``poll_ms`` and hands each
``live_beats`` message to a model device ``network_ms`` later. The model device keeps
the protocol's rules (docs/protocol.md section 10: a newer generation replaces what is
pending, a beat number fires at most once, a beat more than 50 ms late is skipped) and
fires each beat at its time. It is the fast, repeatable counterpart of the virtual room
(bench/live.py): same source and sender code, no audio devices, no firmware.

``presses`` are the operator's downbeat presses (``set_downbeat``): at ``at_s`` on the
signal's timeline, with the bar's length or None; one the source refuses (no beat yet)
is counted in ``refused_presses``. ``find_bars=False``: the tracker's own bar guess
instead of the bar found in the audio (gridcast.agent.live_bars). ``input_latency_ms``:
each block reaches the source this long after its last sample was heard (the room's
input: about 35 ms through JACK at 44.1 kHz, 512-frame blocks); 0 by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridcast.agent.live_sender import LiveBeatSender, LiveBeatsUpdate
from gridcast.agent.tracker_beat_source import HeardBeat, TrackerBeatSource

LATE_SKIP_US = 50_000  # a device skips a beat it would fire later than this


@dataclass
class ModelDevice:
    """Fires live beats as the firmware does (times in agent µs): on time when it held
    the beat before it was due, at once when the beat arrived already due (up to
    LATE_SKIP_US late; later ones are skipped)."""

    fired: list[tuple[int, int, int]] = field(default_factory=list)  # (shown_us, index, bib)
    _pending: list[tuple[int, int, int]] = field(default_factory=list)  # fire at, index, bib
    _generation: tuple[int, int] = (-1, -1)
    _done: set[int] = field(default_factory=set)

    def receive(self, update: LiveBeatsUpdate, now_us: int) -> None:
        """``update`` arrived at ``now_us``: a beat already due fires now, late."""
        key = (update.session, update.generation)
        if key <= self._generation:
            return
        self._generation = key
        self._pending = []
        for k, (at, bib) in enumerate(zip(update.times_us, update.beat_in_bar, strict=True)):
            index = update.first_index + k
            if index in self._done:
                continue
            if now_us - at > LATE_SKIP_US:
                self._done.add(index)  # skipped, as the firmware does
                continue
            self._pending.append((max(at, now_us), index, bib))

    def run_until(self, now_us: int) -> None:
        keep = []
        for at, index, bib in self._pending:
            if at > now_us:
                keep.append((at, index, bib))
            elif index not in self._done:
                self._done.add(index)
                self.fired.append((at, index, bib))
        self._pending = keep


@dataclass
class ReplayRun:
    led_us: np.ndarray  # what the model device fired (agent µs; sample 0 heard at 0)
    led_bib: np.ndarray
    tracker: list[HeardBeat]  # what the tracker reported, heard and decided times
    messages: int
    states: list[tuple[int, str]]  # (agent µs, state) at each change
    refused_presses: int = 0


def replay(signal: np.ndarray, rate: int, block: int = 512, poll_ms: float = 10.0,
           network_ms: float = 5.0, coast_s: float = 4.0,
           correction_us: int = 1000, tempo_hint: float | None = None,
           presses: list[tuple[float, int | None]] | None = None,
           find_bars: bool = True, input_latency_ms: float = 0.0) -> ReplayRun:
    clock = [0]
    tracker: list[HeardBeat] = []
    source = TrackerBeatSource(rate, coast_s=coast_s, on_beat=tracker.append,
                               now_us=lambda: clock[0], tempo_hint=tempo_hint,
                               find_bars=find_bars)
    sender = LiveBeatSender(source, correction_us=correction_us, session=1,
                            now_us=lambda: clock[0])
    device = ModelDevice()
    in_flight: list[tuple[int, LiveBeatsUpdate]] = []
    states: list[tuple[int, str]] = []
    poll_us, net_us = int(poll_ms * 1000), int(network_ms * 1000)
    latency_us = int(input_latency_ms * 1000)
    next_poll = 0
    waiting = sorted((round(at_s * 1e6), bpb) for at_s, bpb in presses or [])
    refused = 0

    def heard_us(frame: float) -> float:
        return frame / rate * 1e6

    def advance(to_us: int) -> None:
        nonlocal next_poll, refused
        while next_poll <= to_us:
            clock[0] = next_poll
            while waiting and waiting[0][0] <= next_poll:
                at, bpb = waiting.pop(0)
                try:
                    source.set_downbeat(at, bpb)
                except ValueError:
                    refused += 1
            for at, arrived in [m for m in in_flight if m[0] <= next_poll]:
                device.run_until(at)
                device.receive(arrived, at)
            in_flight[:] = [m for m in in_flight if m[0] > next_poll]
            device.run_until(next_poll)
            update = sender.step(next_poll)
            if not states or states[-1][1] != source.state:
                states.append((next_poll, str(source.state)))
            if update is not None:
                in_flight.append((next_poll + net_us, update))
            next_poll += poll_us

    try:
        for start in range(0, len(signal), block):
            chunk = signal[start:start + block]
            end_us = int((start + len(chunk)) / rate * 1e6) + latency_us
            advance(end_us)
            clock[0] = end_us
            source.feed(chunk, start, heard_us)
        advance(int(len(signal) / rate * 1e6) + int((coast_s + 2) * 1e6))
    finally:
        source.close()
    fired = sorted(device.fired)
    return ReplayRun(np.array([f[0] for f in fired], dtype=float),
                     np.array([f[2] for f in fired], dtype=np.int64), tracker,
                     sender.sent_messages, states, refused)
