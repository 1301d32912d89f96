"""A short synthetic song with exactly known beats: the demo's own audio.

Drums (kick on 1 and 3, snare on 2 and 4, hi-hat eighths), a bass note on
every beat and a chord per bar following I-V-vi-IV. Deterministic, so the demo
can score its own beat map against the truth.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 22_050
PROGRESSION = ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12))  # semitones above the root
ROOT_HZ = 110.0  # A2


def _env(n: int, sr: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr))


def render(seconds: float = 20.0, bpm: float = 112.0, beats_per_bar: int = 4,
           sample_rate: int = SAMPLE_RATE, seed: int = 7) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Return (mono float32 signal, beat times in s, beat_in_bar)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n + sample_rate, dtype=np.float64)
    period = 60.0 / bpm
    lead_in = 0.5
    beats = np.arange(lead_in, seconds - 0.2, period)
    bib = np.arange(len(beats)) % beats_per_bar + 1

    def add(at_s: float, sound: np.ndarray) -> None:
        i = round(at_s * sample_rate)
        out[i:i + len(sound)] += sound[:len(out) - i]

    t_kick = np.arange(int(0.25 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-t_kick * 30)) * t_kick) * _env(
        len(t_kick), sample_rate, 0.08)
    snare = rng.standard_normal(int(0.18 * sample_rate)) * _env(
        int(0.18 * sample_rate), sample_rate, 0.05) * 0.5
    hat = np.diff(rng.standard_normal(int(0.05 * sample_rate) + 1)) * _env(
        int(0.05 * sample_rate), sample_rate, 0.012) * 0.15
    for k, (t, pos) in enumerate(zip(beats, bib, strict=True)):
        chord = PROGRESSION[(k // beats_per_bar) % len(PROGRESSION)]
        if pos in (1, 3):
            add(t, kick * 0.9)
        else:
            add(t, snare)
        add(t, hat)
        add(t + period / 2, hat * 0.7)
        bass_hz = ROOT_HZ * 2 ** (chord[0] / 12) / 2
        nb = int(period * 0.9 * sample_rate)
        tb = np.arange(nb) / sample_rate
        add(t, 0.35 * np.sin(2 * np.pi * bass_hz * tb) * _env(nb, sample_rate, 0.3))
        if pos == 1:
            npad = int(period * beats_per_bar * sample_rate)
            tp = np.arange(npad) / sample_rate
            pad = sum(np.sin(2 * np.pi * ROOT_HZ * 2 ** (s / 12) * 2 * tp) for s in chord)
            add(t, 0.06 * pad * _env(npad, sample_rate, 1.5))
    signal = out[:n]
    signal = 0.8 * signal / (np.max(np.abs(signal)) + 1e-9)
    return signal.astype(np.float32), beats, bib
