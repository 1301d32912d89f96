"""Shared fixtures: small audio files made on the spot (nothing binary is committed)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from gridcast.host import demo_audio

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def click_track(bpm: float, seconds: float, sr: int = 22050, start_s: float = 0.5,
                accent_every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decaying noise bursts on every beat, louder on every ``accent_every``-th."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    beats = np.arange(start_s, seconds - 0.1, 60.0 / bpm)
    n = int(0.03 * sr)
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.006 * sr))
    for k, t in enumerate(beats):
        i = round(t * sr)
        gain = 0.8 if k % accent_every == 0 else 0.4
        x[i:i + len(burst)] += (gain * burst[:len(x) - i]).astype(np.float32)
    return x, beats


@pytest.fixture(scope="session")
def demo_song(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("demo")
    signal, beats, bib = demo_audio.render(seconds=12.0)
    path = str(folder / "song.wav")
    sf.write(path, signal, demo_audio.SAMPLE_RATE)
    return path, beats, bib


@pytest.fixture
def song_copy(tmp_path, demo_song) -> str:
    """A private copy of the demo song in this test's folder."""
    import shutil

    target = tmp_path / "song.wav"
    shutil.copy(demo_song[0], target)
    return str(target)
