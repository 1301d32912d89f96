"""Light against sound on simulated devices: when each LED beat frame showed (the
simulator's true-time log) against when the sound it belongs to was heard in the room
(a ``Capture`` of what played).

- ``sound_to_light``: per device, LED frame true time − nearest heard beat (ms), with
  p50/p99/max and counts, and each frame's delay after its due tick (``late_us`` of the
  LED log, for ``led_report.timing_problems``); frames while JACK's clock settles after
  an xrun are left out.
- ``song_start_index``: where a known song begins in a capture, by cross-correlation
  (to a fraction of a sample), so the heard time of any song position follows without
  an onset finder: ``capture.heard_us(start + position_s · capture.rate_hz)``.

Used by ``gridcast demo`` and the show scenarios and bench (hil/, bench/show.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gridcast.agent.audio.capture import Capture
from gridcast.agent.simulation.devices import SimDevice
from gridcast.agent.simulation.led_report import read_led_log

MATCH_US = 50_000  # an LED frame further than this from any heard beat is unmatched
CORRELATE_S = 4.0  # seconds of the song's opening matched against the capture


def sound_to_light(devices: list[SimDevice], heard_us: np.ndarray,
                   capture: Capture | None = None) -> dict[str, dict]:
    """Per device: LED frame true time − nearest heard onset (ms) for every matched beat
    frame, and the figures. With ``capture``, frames while JACK's clock was settling after
    an xrun (``Capture.settled``: the room's truth is off by up to 16 ms then) are left
    out and counted as ``unsettled_frames``."""
    heard = np.sort(np.asarray(heard_us, dtype=np.float64))
    out = {}
    for dev in devices:
        lines = read_led_log(dev.led_log)
        times = np.asarray([line["true_time_us"] for line in lines], dtype=np.float64)
        delays = np.asarray([line.get("late_us") for line in lines], dtype=object)
        unsettled = 0
        if capture is not None and times.size:
            keep = capture.settled(times)
            unsettled = int((~keep).sum())
            times = times[keep]
            delays = delays[keep]
        errors = np.zeros(0)
        matched_delays: list[int | None] = []
        if times.size and heard.size:
            k = np.searchsorted(heard, times)
            left = heard[np.clip(k - 1, 0, heard.size - 1)]
            right = heard[np.clip(k, 0, heard.size - 1)]
            nearest = np.where(np.abs(times - left) < np.abs(times - right), left, right)
            error = times - nearest
            matched = np.abs(error) <= MATCH_US
            errors = error[matched] / 1e3
            matched_delays = list(delays[matched])
            late = np.stack([times[matched], errors])[:, np.abs(errors) > 2.0]
        figures: dict[str, Any] = {"sound_beats": int(errors.size), "led_frames": int(times.size),
                   "unmatched_frames": int(times.size - errors.size),
                   "unsettled_frames": unsettled}
        if errors.size:
            magnitude = np.abs(errors)
            figures |= {"sound_error_p50_ms": round(float(np.percentile(magnitude, 50)), 3),
                        "sound_error_p99_ms": round(float(np.percentile(magnitude, 99)), 3),
                        "sound_error_max_ms": round(float(magnitude.max()), 3),
                        "sound_error_mean_ms": round(float(errors.mean()), 3)}
        out[dev.id] = figures | {"errors_ms": errors,
                                 "delays_us": matched_delays,  # aligned with errors_ms
                                 # (true µs, error ms) of each frame over 2 ms
                                 "over_2ms_at_us": late if errors.size else np.zeros((2, 0)),
                                 "unmatched_at_us": times[~matched] if errors.size
                                 else times}
    return out



def song_start_index(capture: Capture, song: np.ndarray, song_rate_hz: float,
                     search_s: float | None = None) -> float:
    """The (fractional) capture index where sample 0 of ``song`` (mono float) was heard.

    The song's first sounding ``CORRELATE_S`` seconds, resampled to the capture's rate,
    are cross-correlated with the capture (FFT), and the peak refined by a parabola
    through its neighbours. ``search_s`` limits the search to the capture's start.
    Raises ValueError when the song is silent or the capture too short.
    """
    from math import gcd

    from scipy import signal

    song = np.asarray(song, dtype=np.float64)
    sounding = np.flatnonzero(np.abs(song) > 1e-4)
    if not sounding.size:
        raise ValueError("the song is silent: nothing to find in the capture")
    first = int(sounding[0])
    piece = song[first:first + int(CORRELATE_S * song_rate_hz)]
    rate = int(capture.rate_hz)
    up, down = rate, round(song_rate_hz)
    g = gcd(up, down)
    piece = signal.resample_poly(piece, up // g, down // g) if up != down else piece
    heard = capture.samples.astype(np.float64)
    if search_s is not None:
        heard = heard[:int(search_s * rate) + piece.size]
    if heard.size < piece.size:
        raise ValueError("the capture is shorter than the song's opening")
    corr = signal.correlate(heard, piece, mode="valid", method="fft")
    k = int(np.argmax(corr))
    shift = 0.0
    if 0 < k < corr.size - 1:
        a, b, c = corr[k - 1], corr[k], corr[k + 1]
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator else 0.0
    return k + shift - first * rate / song_rate_hz
