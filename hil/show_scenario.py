"""Sound against light: what the show scenario (hil/tests/test_sound_to_light.py) and the
show bench (bench/show.py) share.

- ``click_song``: a generated song (demo drums, bass and chords, kept quiet) with a
  sharp click on every known beat, so the capture's onsets are the beats; its bundle
  is built from the known beats (the truth), so the lights' error is the system's, not
  the analyzer's.
  ``gridcast.agent.simulation.sound_report.sound_to_light`` compares the LED frames
  with the onsets found in the room's capture (``clicks.find_onsets``).
- ``gap_samples``: at a gapless switch, the capture's distance between the last click
  of one track and the first of the next, minus what it is without a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridcast.agent.audio.capture import Capture
from gridcast.agent.audio.clicks import click_train
from gridcast.agent.show.set_list import ShowTrack
from gridcast.host.evaluation.demo_audio import render
from gridcast.protocol import bundle_builder, keys

MUSIC_PEAK = 0.12  # under the onset finder's 0.2 × peak: only the clicks are onsets


@dataclass
class ClickSong:
    name: str
    samples: np.ndarray  # float32 mono
    rate_hz: int
    beats_s: np.ndarray
    click_index: np.ndarray  # sample of each click

    def track(self, key: bytes, version: int = 1) -> ShowTrack:
        seconds = len(self.samples) / self.rate_hz
        n = len(self.beats_s)
        rng = np.random.default_rng(len(self.name))
        env = tuple(rng.random(int(seconds * 50)) for _ in range(3))
        bpm = 60.0 / float(np.median(np.diff(self.beats_s))) if n > 1 else 120.0
        source = bundle_builder.BundleSource(
            self.name, bytes(32), version, 1_795_000_000, seconds, bpm, self.beats_s,
            [i % 4 + 1 for i in range(n)], rng.random(n), 50.0, env)
        bundle = bundle_builder.build(source, key, keys.key_id(key))
        samples, rate = self.samples, float(self.rate_hz)
        return ShowTrack(self.name, self.name, bundle, version, self.beats_s.tolist(),
                         lambda: (samples, rate))


def click_song(name: str, seconds: float, bpm: float, rate_hz: int = 48000, seed: int = 1,
               first_beat_s: float = 0.5) -> ClickSong:
    """``seconds`` of music at ``bpm`` with a click on each beat from ``first_beat_s``."""
    music, _, _ = render(seconds=seconds, bpm=bpm, sample_rate=rate_hz, seed=seed)
    music = music[:round(seconds * rate_hz)].astype(np.float32)
    music *= MUSIC_PEAK / max(float(np.abs(music).max()), 1e-9)
    beats = np.arange(first_beat_s, seconds - 0.05, 60.0 / bpm)
    clicks, index = click_train(rate_hz, beats, seconds)
    return ClickSong(name, music + clicks, rate_hz, beats, index)


def gap_samples(capture: Capture, onsets: np.ndarray, switch_heard_us: float,
                before: ClickSong, after: ClickSong) -> float:
    """Capture frames between the last click of ``before`` and the first of ``after``
    around a switch, minus the distance without silence (both songs at the room's
    frame rate: the output writes them sample for sample)."""
    heard = capture.heard_us(onsets)
    first = int(np.argmin(np.abs(heard - (switch_heard_us + after.click_index[0]
                                          / after.rate_hz * 1e6))))
    expected = len(before.samples) - before.click_index[-1] + after.click_index[0]
    return float(onsets[first] - onsets[first - 1] - expected)


def first_nonzero_s(song: ClickSong) -> float:
    """Where the song's first audible sample is (s)."""
    return float(np.argmax(np.abs(song.samples) > 1e-4)) / song.rate_hz


def heard_first_sound_us(capture: Capture) -> float:
    """When the capture's first audible sample was heard (agent µs)."""
    index = int(np.argmax(np.abs(capture.samples) > 1e-4))
    return float(capture.heard_us(index))
