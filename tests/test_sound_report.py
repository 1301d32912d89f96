"""Where a known song starts in a capture, and the light-to-sound error from it."""

from __future__ import annotations

import numpy as np
import pytest

from gridcast.agent.audio.capture import Capture
from gridcast.agent.simulation.sound_report import song_start_index
from gridcast.host.evaluation.demo_audio import render


def _capture(samples: np.ndarray, rate: int, buffer: int = 1024) -> Capture:
    starts = np.arange(0, samples.size, buffer, dtype=np.int64)
    return Capture(samples.astype(np.float32), rate, starts, starts * 1e6 / rate + 5e6,
                   np.full(starts.size, 1e6 / rate), starts, 0, 0, [], 0)


@pytest.mark.parametrize(("song_rate", "room_rate"), [(48000, 48000), (22050, 48000)])
def test_song_start_is_found_to_a_fraction_of_a_sample(song_rate: int, room_rate: int):
    from scipy import signal

    song, _, _ = render(seconds=6.0, bpm=120.0, sample_rate=song_rate, seed=3)
    resampled = signal.resample_poly(song, 320, 147) if song_rate != room_rate else song
    offset = 12_345  # frames of silence and noise before the song in the room
    rng = np.random.default_rng(1)
    room = np.concatenate([np.zeros(offset), resampled, np.zeros(room_rate)])
    room += rng.normal(0, 1e-3, room.size)  # the room's noise floor
    capture = _capture(room, room_rate)
    start = song_start_index(capture, song, song_rate)
    assert abs(start - offset) < 0.25
    # a beat 2 s into the song is heard 2 s after the song's start
    heard = capture.heard_us(start + 2.0 * room_rate)
    assert heard == pytest.approx(5e6 + (offset + 2.0 * room_rate) * 1e6 / room_rate, abs=10)


def test_a_silent_song_is_refused():
    with pytest.raises(ValueError, match="silent"):
        song_start_index(_capture(np.zeros(48000), 48000), np.zeros(1000), 48000)
