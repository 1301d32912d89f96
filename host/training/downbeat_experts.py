"""Fit a learned accent expert for the bar stage and score it against the shipped one.

    python -m gridcast.host.training.downbeat_experts TRAIN_DIR TEST_DIR[,TEST_DIR...] \
        [--weight 1.0] [--l2 100] [--cache-dir /tmp/downbeat-cache]

The shipped bar stage (host/analysis/downbeats.py) scores each beat by the beat
network's downbeat activation plus hand-set accents (bass onset, harmonic
change). This script learns the accents instead: a logistic model over
beat-synchronous features (below), fitted on TRAIN_DIR's annotated and tracked
beats, whose log-odds (minus the training rate of downbeats) are added at the
bar lines with ``--weight``. It prints, for every test folder, the downbeat F
of the shipped stage and of the learned one, on the tracked beats and on the
annotated beats. docs/analysis.md lists what it measured (issue 16): the
learned accents were no better, so none ship. Needs no extra package.

Features per beat, z-scored per track (so they say where in the track a bar
line is, not how loud it is): the beat activation, bass / mid / high SuperFlux
at the beat, the change of band energy from the previous beat interval, and
harmonic change over 1-4 beats either side; each also at the two beats either
side (context). The downbeat activation is left out: it is already the
decoder's main evidence.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from dataclasses import dataclass

import numpy as np

from gridcast.host.analysis import analyzer, audio, beat_network, downbeats, features
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.cli import output as console
from gridcast.host.evaluation import evaluate

CONTEXT = (-2, -1, 1, 2)
HARMONIC_SPANS = (1, 2, 3, 4)
MATCH_S = 0.07  # a tracked beat takes the label of an annotated beat this close (mir_eval's window)
MIN_BEATS = 8


@dataclass
class ClipData:
    id: str
    feats: features.Features
    activation: np.ndarray  # (frames, 2) beat network output
    tracked: np.ndarray  # beat times from the analyzer
    ref: np.ndarray
    ref_bib: np.ndarray | None


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def beat_features(feats: features.Features, activation: np.ndarray,
                  times_s: np.ndarray) -> np.ndarray:
    """(beats, 11 x (1 + len(CONTEXT))) features, see the module docstring."""
    n = len(times_s)
    idx = downbeats.beat_frames(times_s, feats)
    edges = np.r_[idx, feats.n_frames]
    beat = np.clip([activation[max(0, i - 2):i + 3, 0].max() for i in idx], 1e-4, 1 - 1e-4)
    flux = np.log1p([feats.band_flux[max(0, i - 3):i + 4].max(axis=0) for i in idx])
    energy = np.array([feats.band_energy_db[edges[k]:max(edges[k] + 1, edges[k + 1])].mean(0)
                       for k in range(n)])
    energy_change = energy - np.r_[energy[:1], energy[:-1]]
    chroma, _ = downbeats.beat_synchronous(feats, times_s)
    harmonic = np.stack([downbeats.harmonic_change(chroma, s) for s in HARMONIC_SPANS], axis=1)
    x = np.column_stack([_z(np.log(beat / (1 - beat))), _z(flux), _z(energy_change), harmonic])
    parts = [x] + [x[np.clip(np.arange(n) + k, 0, n - 1)] for k in CONTEXT]
    return np.concatenate(parts, axis=1)


def labels(times_s: np.ndarray, ref: np.ndarray, ref_bib: np.ndarray) -> np.ndarray:
    """1.0 where a beat lies within MATCH_S of an annotated downbeat."""
    j = np.abs(times_s[:, None] - ref[None, :]).argmin(axis=1)
    return ((np.abs(times_s - ref[j]) < MATCH_S) & (ref_bib[j] == 1)).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Weights then bias, by Newton's method with an L2 penalty on the weights."""
    a = np.c_[x, np.ones(len(x))]
    beta = np.zeros(a.shape[1])
    penalty = l2 * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-a @ beta))
        step = np.linalg.solve((a * (p * (1 - p))[:, None]).T @ a + penalty,
                               a.T @ (p - y) + penalty @ beta)
        beta -= step
        if np.abs(step).max() < 1e-6:
            break
    return beta


def load_clips(folder: str, cache_dir: str | None, params: AnalyzerParams) -> list[ClipData]:
    """Features, network activation and tracked beats of every clip (cached on disk)."""
    cache = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        key = hashlib.sha256(f"{os.path.abspath(folder)} {params.digest()}".encode()).hexdigest()
        cache = os.path.join(cache_dir, key[:16] + ".pkl")
        if os.path.exists(cache):
            with open(cache, "rb") as f:
                return list(pickle.load(f))
    out = []
    clips = evaluate.load_dataset(folder)
    with console.progress(len(clips), f"analysing {folder}") as bar:
        for clip in clips:
            info = audio.probe(clip.audio_path, 1e5)
            feats = features.extract(audio.iter_mono_blocks(info), info.sample_rate, info.frames)
            activation = beat_network.activations(feats.band_mag)
            tracked = analyzer.analyze_features(feats, params).beats
            out.append(ClipData(clip.id, feats, activation, tracked, clip.beats,
                                clip.beat_in_bar))
            console.advance(bar)
    if cache:
        with open(cache, "wb") as f:
            pickle.dump(out, f)
    return out


def training_set(clips: list[ClipData]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for c in clips:
        if c.ref_bib is None:
            continue
        for times in (c.ref, c.tracked):
            if len(times) >= MIN_BEATS:
                xs.append(beat_features(c.feats, c.activation, times))
                ys.append(labels(times, c.ref, c.ref_bib))
    return np.vstack(xs), np.concatenate(ys)


def bar_positions(c: ClipData, times_s: np.ndarray, params: AnalyzerParams,
                  expert: tuple[np.ndarray, float, float] | None) -> np.ndarray:
    """The shipped bar stage; with ``expert`` (beta, training rate, weight) the learned
    accents replace the hand-set ones."""
    if expert is None or len(times_s) < MIN_BEATS:
        return downbeats.beat_in_bar_from_activation(
            times_s, c.activation[:, 1], c.feats.frame_rate_hz, c.feats,
            params.downbeat_accent_weight)
    beta, rate, weight = expert
    log_odds = (beat_features(c.feats, c.activation, times_s) @ beta[:-1] + beta[-1]
                - np.log(rate / (1 - rate)))
    return downbeats.beat_in_bar_from_activation(times_s, c.activation[:, 1],
                                                 c.feats.frame_rate_hz,
                                                 extra_log_odds=weight * log_odds)


def downbeat_f(clips: list[ClipData], params: AnalyzerParams,
               expert: tuple[np.ndarray, float, float] | None, given_beats: bool) -> float:
    scores = []
    for c in clips:
        if c.ref_bib is None:
            continue
        times = c.ref if given_beats else c.tracked
        f = evaluate.score(c.ref, c.ref_bib, times, bar_positions(c, times, params, expert))
        scores.append(f["downbeat_f"] or 0.0)
    return float(np.mean(scores)) if scores else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("train", help="corpus folder to fit on (audio/, annotations/)")
    parser.add_argument("test", help="comma-separated folders to score")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--l2", type=float, default=100.0)
    parser.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    params = AnalyzerParams()
    x, y = training_set(load_clips(args.train, args.cache_dir, params))
    beta = fit_logistic(x, y, args.l2)
    expert = (beta, float(y.mean()), args.weight)
    console.info(f"fitted on {len(y)} beats of {args.train} ({y.mean():.3f} downbeats)")
    print(f"{'set':40s} {'shipped':>8s} {'learned':>8s} {'shipped*':>9s} {'learned*':>9s}")
    for folder in args.test.split(","):
        clips = load_clips(folder, args.cache_dir, params)
        row = [downbeat_f(clips, params, e, given) for given in (False, True)
               for e in (None, expert)]
        print(f"{folder[-40:]:40s} " + " ".join(f"{v:8.3f}" for v in row))
    print("* on the annotated beats")


if __name__ == "__main__":
    main()
