"""Click trains: make them, find their onsets in a recording, match them to a schedule.

A click here is a short rectangular pulse whose first sample is at half height.
Band-limited by a resampler or a converter, its rising edge stays centred on that
sample, so the point where the
envelope first reaches half the click's peak is an unbiased onset estimate, found to a
fraction of a sample by interpolating between the two samples around it. The same
finder works for other sharp onsets (drum hits) with the same caveat: it reports where
the attack reaches half its peak.
"""

from __future__ import annotations

import numpy as np

CLICK_MS = 2.0
CLICK_LEVEL = 0.8


def click_train(rate_hz: int, onsets_s: np.ndarray, seconds: float, click_ms: float = CLICK_MS,
                level: float = CLICK_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """A float32 buffer with a click starting at each onset (rounded to a sample).

    Returns (buffer, the sample index of each click).
    """
    signal = np.zeros(round(seconds * rate_hz), np.float32)
    indices = np.round(np.asarray(onsets_s) * rate_hz).astype(np.int64)
    width = max(1, round(click_ms * 1e-3 * rate_hz))
    for index in indices:
        signal[index:index + width] = level
        # A half step first: the edge's midpoint then falls on the sample itself, so
        # the band-limited click reaches half its peak exactly at ``index``.
        signal[index] = level / 2
    return signal, indices


def find_onsets(samples: np.ndarray, rate_hz: float, threshold: float = 0.2,
                min_gap_s: float = 0.05, rise_s: float = 0.002) -> np.ndarray:
    """Sample positions (fractional) of sharp onsets in ``samples``.

    An onset is where ``|x|`` rises past ``threshold`` × its overall peak, at least
    ``min_gap_s`` after the previous one. Its position is where ``|x|`` first reaches
    half of the peak within ``rise_s`` after that crossing, interpolated between the
    two samples around it.
    """
    envelope = np.abs(np.asarray(samples, dtype=np.float64))
    if envelope.size < 2 or envelope.max() <= 0:
        return np.zeros(0)
    level = threshold * envelope.max()
    above = envelope >= level
    rising = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    gap, rise = int(min_gap_s * rate_hz), max(2, int(rise_s * rate_hz))
    onsets: list[float] = []
    last = -gap - 1
    for crossing in rising:
        i = int(crossing)
        if i - last <= gap:
            continue
        last = i
        back = max(1, i - rise)
        window = envelope[back:i + rise]
        half = 0.5 * float(window.max())
        j = back + int(np.argmax(window >= half))
        below, at = float(envelope[j - 1]), float(envelope[j])
        onsets.append(j - 1 + (half - below) / (at - below) if at > below else float(j))
    return np.asarray(onsets)


def match_onsets(heard_us: np.ndarray, expected_us: np.ndarray,
                 tolerance_us: float = 20_000.0) -> tuple[np.ndarray, int, int]:
    """Pair each expected instant with the nearest heard onset within ``tolerance_us``.

    Returns (heard − expected in µs for each matched click, clicks missing, extra onsets).
    """
    heard = np.sort(np.asarray(heard_us, dtype=np.float64))
    errors = []
    used = 0
    for expected in np.asarray(expected_us, dtype=np.float64):
        if heard.size == 0:
            break
        k = int(np.argmin(np.abs(heard - expected)))
        if abs(heard[k] - expected) <= tolerance_us:
            errors.append(heard[k] - expected)
            used += 1
    missing = len(expected_us) - len(errors)
    return np.asarray(errors), missing, heard.size - used
