"""Live mode's bar position, found in the recent audio (gridcast.agent.live_bars)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.signal import resample_poly

from gridcast.agent.live_bars import LiveBars
from gridcast.host.evaluation import demo_audio
from gridcast.host.evaluation.evaluate import score
from gridcast.host.live.replay import replay

RATE = 44_100
BLOCK = 512


def song(beats_per_bar: int, bpm: float, seconds: float = 40.0):
    """The demo song at 44.1 kHz: kick, snare, hats, bass and a chord per bar."""
    signal, beats, bib = demo_audio.render(seconds, bpm, beats_per_bar)
    return resample_poly(signal, 2, 1).astype(np.float32), beats, bib


@pytest.mark.parametrize(("beats_per_bar", "bpm"), [(4, 112.0), (3, 100.0)])
def test_the_devices_show_the_bar_found_in_the_audio(beats_per_bar, bpm):
    """No press and no map: the LED beats shown as the one are the song's downbeats, in
    4/4 and in 3/4. (The tracker's own guess, counting bass accents, scores 0 and 0.32
    here: the kick falls on 1 and 3.)"""
    signal, beats, bib = song(beats_per_bar, bpm)
    run = replay(signal, RATE, coast_s=2.0)
    scores = score(beats, bib, run.led_us / 1e6, run.led_bib)  # from 5 s on (mir_eval)
    assert scores["f_measure"] > 0.9
    assert scores["downbeat_f"] > 0.9, scores
    late = run.led_us > 10e6
    assert set(run.led_bib[late]) == set(range(1, beats_per_bar + 1))
    guess = replay(signal, RATE, coast_s=2.0, find_bars=False)
    assert score(beats, bib, guess.led_us / 1e6, guess.led_bib)["downbeat_f"] < 0.5


def feed(bars: LiveBars, signal: np.ndarray, first: int = 0) -> None:
    for start in range(0, len(signal), BLOCK):
        bars.feed(signal[start:start + BLOCK], first + start)


def test_the_bar_is_counted_on_from_the_window_read_last():
    signal, beats, bib = song(4, 120.0, seconds=16.0)
    bars = LiveBars(RATE)
    assert bars.bar_of(0) is None  # nothing read yet
    feed(bars, signal)
    indices = []
    for t in beats:
        indices.append(bars.beat(t * RATE))
        bars.read_if_due()
    assert bars.windows > 0 and bars.anchor is not None
    # the first beat of the music is left out; every later one gets its bar position
    found = [bars.bar_of(i) for i in indices[1:]]
    assert all(f is not None and f[1] == 4 for f in found), found
    assert [f[0] for f in found if f is not None] == list(bib[1:])


def test_a_break_in_the_music_and_lost_input_start_the_bar_afresh():
    signal, beats, _ = song(4, 120.0, seconds=16.0)
    bars = LiveBars(RATE)
    feed(bars, signal)
    for t in beats:
        bars.beat(t * RATE)
        bars.read_if_due()
    assert bars.anchor is not None
    # four seconds without a beat: new music, found afresh; its first beat is left out
    bars.beat((beats[-1] + 4.0) * RATE)
    assert bars.anchor is None and bars._beats == []
    bars.beat((beats[-1] + 4.5) * RATE)
    assert len(bars._beats) == 1
    # input that does not follow the last block (frames lost): the features start again
    feed(bars, signal[:RATE], first=len(signal) + 10 * RATE)
    assert bars.anchor is None and bars._beats == []


def test_the_status_says_where_the_bar_comes_from():
    """The tracker's guess until a window is read, then the audio, then the press."""
    from gridcast.agent.live_mode import status_line
    from gridcast.agent.tracker_beat_source import TrackerBeatSource

    signal, beats, _ = song(4, 112.0, seconds=24.0)
    source = TrackerBeatSource(RATE, now_us=lambda: 0)
    assert source.bar_from == "tracker"
    for start in range(0, len(signal), BLOCK):
        source.feed(signal[start:start + BLOCK], start, lambda frame: frame / RATE * 1e6)
    assert source.bar_from == "audio" and source.beats_per_bar == 4
    line = status_line({"state": "locked", "tempo_bpm": 112.0, "confidence": 0.9,
                        "messages": 3, "beats_per_bar": source.beats_per_bar,
                        "bar_from": source.bar_from})
    assert "4/bar (audio)" in line, line
    source.set_downbeat(beats[-4] * 1e6, 4)
    assert source.bar_from == "press"
    source.close()


class HeldReads:
    """The bar Viterbi held until ``release`` is set: a read the test can catch in the
    middle. ``readers``: the threads that read; ``started``: one has begun."""

    def __init__(self, monkeypatch) -> None:
        from gridcast.host.analysis import downbeats

        self.started, self.release = threading.Event(), threading.Event()
        self.readers: list[str] = []
        real = downbeats.beat_in_bar_from_activation

        def held(*args, **kwargs):
            self.readers.append(threading.current_thread().name)
            self.started.set()
            assert self.release.wait(timeout=30), "the test never released the read"
            return real(*args, **kwargs)

        monkeypatch.setattr(downbeats, "beat_in_bar_from_activation", held)


def fed_with_beats(bars: LiveBars, signal: np.ndarray, beats: np.ndarray) -> LiveBars:
    """The whole signal, then every beat, each followed by read_if_due."""
    feed(bars, signal)
    for t in beats:
        bars.beat(t * RATE)
        bars.read_if_due()
    return bars


def test_the_worker_reads_the_window_while_the_input_goes_on(monkeypatch):
    """With worker=True a due window is read in the worker thread: the caller (live
    mode's input reader) goes on feeding while it reads, and the bar found is the one
    the caller's own thread would have found."""
    signal, beats, _ = song(4, 120.0, seconds=16.0)
    inline = fed_with_beats(LiveBars(RATE), signal, beats)
    held = HeldReads(monkeypatch)
    bars = LiveBars(RATE, worker=True)
    try:
        fed_with_beats(bars, signal, beats)  # returns while the worker is held in its read
        assert held.started.wait(timeout=30)
        assert held.readers == ["gc-live-bars"] and bars.anchor is None
        held.release.set()
        assert bars.wait_idle()
        bars.read_if_due()  # the newest due window, now that the worker is free
        assert bars.wait_idle()
        assert bars.anchor == inline.anchor and bars.windows == 2
        assert [bars.bar_of(i) for i in range(len(beats))] == \
            [inline.bar_of(i) for i in range(len(beats))]
    finally:
        held.release.set()
        bars.close()


def test_a_window_read_before_new_music_is_dropped(monkeypatch):
    """A restart while the worker reads: the old music's bar is not put on the new."""
    signal, beats, _ = song(4, 120.0, seconds=16.0)
    held = HeldReads(monkeypatch)
    bars = LiveBars(RATE, worker=True)
    try:
        fed_with_beats(bars, signal, beats)
        assert held.started.wait(timeout=30)
        bars.restart()  # new music while the window is read
        held.release.set()
        assert bars.wait_idle()
        assert bars.anchor is None and bars.windows == 0
    finally:
        held.release.set()
        bars.close()
