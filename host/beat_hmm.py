"""Global beat decoding: Viterbi over a (meter family, tempo, phase) state space.

The state space follows Krebs, Böck and Widmer (2015, "An efficient state space
model for joint tempo and meter tracking"): for every beat interval tau (in
frames) there are tau phase states; phase advances one state per frame and the
tempo may change only at a beat, so a whole track decodes in one pass.

What gridcast adds is a metrical observation model. Each phase state belongs to
a *class*: the beat itself, a subdivision (half beat for a binary family; the
two thirds of a ternary family, "swing"/compound), or nothing. Onsets on
subdivisions are expected, so tracking the eighth notes (twice too fast) no
longer explains the music better than tracking the beat: the tempo prior and
the relative strength of onsets decide instead. Without it, any tracker whose
only evidence is "onset here" prefers the fastest pulse with onsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

# Phase classes.
BEAT, HALF, THIRD_1, THIRD_2, NONE = 0, 1, 2, 3, 4
N_CLASSES = 5
BINARY, TERNARY = 0, 1


@dataclass(frozen=True)
class StateSpace:
    intervals: np.ndarray  # (k,) int64: beat interval of each tempo state, in frames
    families: np.ndarray  # (k,) int64: BINARY or TERNARY
    offsets: np.ndarray  # (k + 1,) int64: first phase state of each tempo; last = n states
    state_class: np.ndarray  # (n states,) int8: phase class of every state
    neighbours: np.ndarray  # (k, m) int64: tempo states one may come from at a beat (-1 pads)
    log_trans: np.ndarray  # (k, m) float64: log P(this tempo | neighbour) at a beat
    log_prior_per_frame: np.ndarray  # (k,) float64: tempo prior, paid per frame

    @property
    def n_states(self) -> int:
        return int(self.offsets[-1])


def phase_classes(tau: int, family: int, window: float) -> np.ndarray:
    """Class of each of the tau phase states of one tempo (window: half-width as a fraction)."""
    phase = np.arange(tau) / tau
    cls = np.full(tau, NONE, dtype=np.int8)
    half_w = max(window, 0.5 / tau)  # at least the state itself

    def near(x: float) -> np.ndarray:
        d = np.abs(phase - x)
        return np.minimum(d, 1 - d) <= half_w + 1e-12

    if family == BINARY:
        cls[near(0.5)] = HALF
    else:
        cls[near(1 / 3)] = THIRD_1
        cls[near(2 / 3)] = THIRD_2
    cls[near(0.0)] = BEAT
    return cls


def make_state_space(min_interval: int, max_interval: int, transition_lambda: float,
                     log_prior_per_frame: np.ndarray, family_switch_logp: float,
                     window: float, max_ratio_step: float = 0.12) -> StateSpace:
    """Tempo states for both families over [min_interval, max_interval] frames.

    ``log_prior_per_frame`` has one value per interval (shared by the families).
    """
    taus = np.arange(min_interval, max_interval + 1, dtype=np.int64)
    intervals = np.concatenate([taus, taus])
    families = np.concatenate([np.full(len(taus), BINARY), np.full(len(taus), TERNARY)])
    prior = np.concatenate([log_prior_per_frame, log_prior_per_frame]).astype(np.float64)
    offsets = np.concatenate([[0], np.cumsum(intervals)]).astype(np.int64)
    state_class = np.concatenate([phase_classes(int(t), int(f), window)
                                  for t, f in zip(intervals, families, strict=True)])
    k = len(intervals)
    rows: list[list[tuple[int, float]]] = []
    for i in range(k):
        cands = []
        for j in range(k):
            step = abs(intervals[i] / intervals[j] - 1.0)
            if step > max_ratio_step:
                continue
            logp = -transition_lambda * step
            if families[i] != families[j]:
                logp += family_switch_logp
            cands.append((j, logp))
        rows.append(cands)
    m = max(len(r) for r in rows)
    neighbours = np.full((k, m), -1, dtype=np.int64)
    log_trans = np.full((k, m), -np.inf)
    for i, cands in enumerate(rows):
        for c, (j, logp) in enumerate(cands):
            neighbours[i, c] = j
            log_trans[i, c] = logp
    # Normalise over destinations: from j, the probabilities of going to each i sum to 1.
    out_norm = np.full(k, -np.inf)
    for i in range(k):
        for c in range(m):
            j = neighbours[i, c]
            if j >= 0:
                out_norm[j] = np.logaddexp(out_norm[j], log_trans[i, c])
    for i in range(k):
        for c in range(m):
            j = neighbours[i, c]
            if j >= 0:
                log_trans[i, c] -= out_norm[j]
    return StateSpace(intervals, families, offsets, state_class, neighbours, log_trans, prior)


def decode(space: StateSpace, log_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most likely beats given ``log_obs`` (frames x N_CLASSES).

    Returns beat frames, the tempo-state index at each beat, and the path score.
    """
    if log_obs.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return _viterbi(space.intervals, space.offsets, space.state_class, space.neighbours,
                    space.log_trans, space.log_prior_per_frame,
                    np.ascontiguousarray(log_obs, dtype=np.float64))


@numba.njit(cache=True)
def _viterbi(intervals, offsets, state_class, neighbours, log_trans, prior, log_obs):
    k = len(intervals)
    n_states = offsets[-1]
    n = log_obs.shape[0]
    score = np.empty(n_states)
    new = np.empty(n_states)
    back = np.empty((n, k), dtype=np.int16)  # best previous tempo state when a beat starts
    for i in range(k):
        for p in range(intervals[i]):
            s = offsets[i] + p
            score[s] = -np.log(intervals[i]) + prior[i] + log_obs[0, state_class[s]]
    path_score = np.zeros(n)
    for t in range(1, n):
        obs = log_obs[t]
        for i in range(k):
            o = offsets[i]
            best = -np.inf
            arg = i
            for c in range(neighbours.shape[1]):
                j = neighbours[i, c]
                if j < 0:
                    break
                cand = score[offsets[j] + intervals[j] - 1] + log_trans[i, c]
                if cand > best:
                    best = cand
                    arg = j
            back[t, i] = arg
            new[o] = best + obs[state_class[o]] + prior[i]
            for p in range(1, intervals[i]):
                new[o + p] = score[o + p - 1] + obs[state_class[o + p]] + prior[i]
        tmp = score
        score = new
        new = tmp
        # Keep scores near zero: subtract the best (does not change the argmax path).
        m = score.max()
        path_score[t] = m
        score -= m
    best_s = np.argmax(score)
    i = 0
    while offsets[i + 1] <= best_s:
        i += 1
    p = best_s - offsets[i]
    beat_frames = np.empty(n, dtype=np.int64)
    beat_states = np.empty(n, dtype=np.int64)
    nb = 0
    for t in range(n - 1, -1, -1):
        if p == 0:
            beat_frames[nb] = t
            beat_states[nb] = i
            nb += 1
            if t > 0:
                i = back[t, i]
                p = intervals[i] - 1
        else:
            p -= 1
    return beat_frames[:nb][::-1].copy(), beat_states[:nb][::-1].copy(), path_score
