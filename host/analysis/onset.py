"""The beat observation: one onset-strength curve in [0, 1] per frame.

Bass onsets weigh most because kick drums and bass notes mark beats in most
styles, while hi-hats and strummed chords often sit on off-beats.
"""

from __future__ import annotations

import numpy as np

from gridcast.host.analysis.features import Features
from gridcast.host.analysis.params import AnalyzerParams


def local_positive(x: np.ndarray, window: int) -> np.ndarray:
    """Remove a moving average, keep what rises above it, scale by the 99th percentile."""
    x = x.astype(np.float64)
    if len(x) == 0:
        return x
    mean = np.convolve(x, np.ones(window) / window, mode="same")
    y = np.maximum(x - mean, 0.0)
    return y / (np.percentile(y, 99) + 1e-9)


def smooth(x: np.ndarray, frames: int) -> np.ndarray:
    """Hann smoothing: tolerates the 10-30 ms timing spread of played notes."""
    if frames <= 1 or len(x) == 0:
        return x
    kernel = np.hanning(frames + 2)[1:-1]
    return np.convolve(x, kernel / kernel.sum(), mode="same")


def onset_strength(features: Features, params: AnalyzerParams,
                   smoothing: bool = True) -> np.ndarray:
    """Weighted band flux, locally normalised (and smoothed), clipped to [0, 1]."""
    if features.n_frames == 0:
        return np.zeros(0)
    combined = np.asarray(sum(w * local_positive(features.band_flux[:, i],
                                                 params.local_mean_frames)
                              for i, w in enumerate(params.band_weights)))
    if smoothing:
        combined = smooth(combined, params.smoothing_frames)
    return np.clip(combined / (np.percentile(combined, 99) + 1e-9), 0.0, 1.0)
