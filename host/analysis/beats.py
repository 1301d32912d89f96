"""Beat tracking: onset strength and the beat network -> metrical HMM -> beats and tempo."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from gridcast.host.analysis import beat_hmm
from gridcast.host.analysis.params import AnalyzerParams


@dataclass(frozen=True)
class BeatTrack:
    times_s: np.ndarray  # (n,) beat times
    interval_s: np.ndarray  # (n,) beat period the decoder was in at each beat
    ternary: np.ndarray  # (n,) bool: subdivision in three at that beat


def tempo_range(params: AnalyzerParams) -> tuple[float, float]:
    if params.tempo_hint_bpm:
        return (max(params.min_bpm / 2, params.tempo_hint_bpm / params.hint_range),
                min(params.max_bpm * 2, params.tempo_hint_bpm * params.hint_range))
    return params.min_bpm, params.max_bpm


@lru_cache(maxsize=8)
def _space(frame_rate_hz: float, params: AnalyzerParams) -> beat_hmm.StateSpace:
    lo_bpm, hi_bpm = tempo_range(params)
    min_interval = max(2, round(60 * frame_rate_hz / hi_bpm))
    max_interval = max(min_interval + 1, round(60 * frame_rate_hz / lo_bpm))
    bpm = 60 * frame_rate_hz / np.arange(min_interval, max_interval + 1)
    centre = params.tempo_hint_bpm or params.prior_bpm
    weight = params.hint_prior_weight if params.tempo_hint_bpm else params.prior_weight
    log_prior = -0.5 * (np.log2(bpm / centre) / params.prior_sigma_oct) ** 2 * weight
    return beat_hmm.make_state_space(min_interval, max_interval, params.transition_lambda,
                                     log_prior, params.family_switch_logp, params.beat_window)


def observation_log_likelihoods(strength: np.ndarray, params: AnalyzerParams) -> np.ndarray:
    """Per frame and phase class: log P(strength | class), a Bernoulli onset model."""
    p = np.asarray(params.class_onset_prob)
    s = strength[:, None]
    return np.log(1e-6 + s * p[None, :] + (1 - s) * (1 - p[None, :]))


def activation_log_likelihoods(activation: np.ndarray, params: AnalyzerParams) -> np.ndarray:
    """Per frame and phase class: the network's beat probability a for BEAT states,
    (1 - a) / (lambda - 1) for all others (Böck et al.'s DBN observation)."""
    a = np.clip(activation.astype(np.float64), 1e-4, 1 - 1e-4)
    out = np.empty((len(a), beat_hmm.N_CLASSES))
    out[:] = np.log((1 - a) / (params.activation_lambda - 1))[:, None]
    out[:, beat_hmm.BEAT] = np.log(a)
    return out


def track(strength: np.ndarray, frame_rate_hz: float, params: AnalyzerParams,
          activation: np.ndarray | None = None) -> BeatTrack:
    """Decode beats from the onset strength and, when given, the network's activation.

    The two are weighted experts: the onset model knows where notes start on any
    material; the network knows which of them are beats on material like what it
    was trained on, and says little elsewhere (its activation stays low).
    """
    space = _space(frame_rate_hz, params)
    log_obs = params.onset_weight * observation_log_likelihoods(strength, params)
    if activation is not None and params.network_weight > 0:
        log_obs += params.network_weight * activation_log_likelihoods(activation, params)
    frames, states, _ = beat_hmm.decode(space, log_obs)
    return BeatTrack(frames / frame_rate_hz,
                     space.intervals[states] / frame_rate_hz,
                     space.families[states] == beat_hmm.TERNARY)


def track_own_tempo(strength: np.ndarray, frame_rate_hz: float, params: AnalyzerParams,
                    activation: np.ndarray | None = None) -> BeatTrack:
    """``track``, then (without a tempo hint, when ``own_tempo_prior_weight`` > 0) again
    with the tempo prior centred on the first pass's median tempo: the track's own tempo
    keeps quiet stretches (a break without drums) from wandering to another tempo
    octave, while no fixed centre pushes a slow song to twice its tempo."""
    first = track(strength, frame_rate_hz, params, activation)
    if params.tempo_hint_bpm or params.own_tempo_prior_weight <= 0 or len(first.times_s) < 4:
        return first
    bpm = round(60.0 / float(np.median(first.interval_s)), 1)
    span = params.own_tempo_range
    return track(strength, frame_rate_hz, replace(
        params, prior_bpm=bpm, prior_weight=params.own_tempo_prior_weight,
        min_bpm=max(params.min_bpm, bpm / span), max_bpm=min(params.max_bpm, bpm * span)),
        activation)


REFINE_FRAMES = 3  # search +-30 ms at 100 frames/s: inside mir_eval's 70 ms window
REFINE_MIN_PEAK = 0.2  # weaker peaks are not trusted to carry the beat


def refine_to_onsets(times_s: np.ndarray, raw_strength: np.ndarray,
                     frame_rate_hz: float) -> np.ndarray:
    """Move each beat onto the onset peak next to it, with sub-frame precision.

    The decoder works on a 10 ms grid of smoothed onsets; lights are judged to the
    millisecond, so each beat moves to the parabolic peak of the unsmoothed onset
    strength within REFINE_FRAMES frames, where there is a clear one.
    """
    out = times_s.copy()
    n = len(raw_strength)
    for k, t in enumerate(times_s):
        centre = round(t * frame_rate_hz)
        lo, hi = max(1, centre - REFINE_FRAMES), min(n - 1, centre + REFINE_FRAMES + 1)
        if hi <= lo:
            continue
        j = lo + int(np.argmax(raw_strength[lo:hi]))
        peak = raw_strength[j]
        if peak < REFINE_MIN_PEAK:
            continue
        left, right = raw_strength[j - 1], raw_strength[j + 1]
        curvature = left - 2 * peak + right
        delta = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        out[k] = (j + float(np.clip(delta, -0.5, 0.5))) / frame_rate_hz
    # Refinement must not reorder beats; where it would, keep the grid times.
    bad = np.flatnonzero(np.diff(out) <= 0)
    out[bad + 1] = times_s[bad + 1]
    return out
