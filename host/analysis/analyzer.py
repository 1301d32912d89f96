"""Audio file -> BeatMap: the whole offline analysis in one call."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from gridcast.host.analysis import audio, beat_network, beats, downbeats, envelopes, features, onset
from gridcast.host.analysis import structure as phrase_structure
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.beatmaps.beatmap import BeatMap

ANALYZER_NAME = "gridcast"
ANALYZER_VERSION = "0.5.2"  # 0.2: per-bin flux; 0.2.1: bar phase over half bars; 0.3: beat network;
# 0.4: two-network ensemble, network weight 0.75, downbeat accents 1.0; 0.5: phrases, sections;
# 0.5.1: faster float32 ELU and log in features/network, least-squares tempo curve in closed
# form (beats move by < 1e-7 s on the dev sets, bars and sections unchanged); 0.5.2: no tempo
# prior without a hint (slow songs no longer pushed to twice their tempo)
SILENCE_DBFS = -60.0  # a file whose loudest frame is below this is treated as silence
ACTIVE_DB_BELOW_PEAK = 40.0  # frames this far under the loudest are "not playing"
# Below this rhythmic contrast (see rhythmic_contrast) the beats are a guess: white
# noise scored 0.63-1.64 in 12 trials of 10 and 60 s, the median development clip
# 4.3. Music buried in noise or without onsets can score as low as noise (3 of 43
# development clips do), so weak evidence warns, it does not delete beats.
WEAK_CONTRAST = 1.8
CONTRAST_BLOCK_FRAMES = 8  # shuffled blocks keep the shape of single onsets, not rhythm
CONTRAST_SHUFFLES = 4
TEMPO_CURVE_HALF_WINDOW = 4  # beats each side


def analyze_file(path: str, params: AnalyzerParams | None = None,
                 max_duration_s: float = audio.DEFAULT_MAX_DURATION_S,
                 sha256: str | None = None) -> BeatMap:
    params = params or AnalyzerParams()
    info = audio.probe(path, max_duration_s)
    started = time.process_time()
    # One thread per analysis: batches run one file per core, and BLAS threads on
    # these small matrices only burn CPU time spinning.
    with threadpool_limits(limits=1):
        feats = features.extract(audio.iter_mono_blocks(info), info.sample_rate, info.frames)
        beatmap = analyze_features(feats, params)
    beatmap.metadata.update({
        "audio_file": path.rsplit("/", 1)[-1],
        "audio_sha256": sha256 or audio.file_sha256(path),
        "duration_s": round(info.duration_s, 4),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "cpu_s": round(time.process_time() - started, 4),
    })
    beatmap.warnings = [f"{path}: {w}" for w in beatmap.warnings]
    return beatmap


def analyze_features(feats: features.Features, params: AnalyzerParams,
                     progress: Callable[[str], None] | None = None) -> BeatMap:
    warnings: list[str] = []
    env = envelopes.band_envelopes(feats, params.envelope_rate_hz)
    strength = onset.onset_strength(feats, params)
    peak_dbfs = 20 * np.log10(max(float(feats.rms.max(initial=0.0)), 1e-12))
    beat_times = np.zeros(0)
    intervals = np.zeros(0)
    activation: np.ndarray | None = None
    if peak_dbfs < SILENCE_DBFS:
        warnings.append(f"silent (peak level {peak_dbfs:.0f} dBFS): no beats")
        confidence = 0.0
    else:
        activation = beat_network.activations(feats.band_mag)
        tracked = beats.track_own_tempo(strength, feats.frame_rate_hz, params, activation[:, 0])
        keep = _in_active_region(tracked.times_s, feats)
        beat_times, intervals = tracked.times_s[keep], tracked.interval_s[keep]
        beat_times = beats.refine_to_onsets(beat_times, onset.onset_strength(
            feats, params, smoothing=False), feats.frame_rate_hz)
        confidence = rhythmic_contrast(strength, feats.frame_rate_hz, params)
        if confidence < WEAK_CONTRAST:
            warnings.append(f"weak beat evidence (rhythmic contrast {confidence:.2f} < "
                            f"{WEAK_CONTRAST}): noise, free time or a very quiet beat; "
                            "check the beats or give --tempo-hint")
    bib = (downbeats.beat_in_bar_from_activation(beat_times, activation[:, 1],
                                                 feats.frame_rate_hz, feats,
                                                 params.downbeat_accent_weight)
           if activation is not None else downbeats.beat_in_bar(feats, beat_times))
    parts = phrase_structure.analyze(feats, beat_times, bib)  # phrases and sections
    return BeatMap(
        phrases=parts.phrases_s, sections=parts.sections,
        beats=beat_times,
        beat_in_bar=bib,
        beat_strength=beat_strengths(strength, beat_times, feats.frame_rate_hz),
        tempo_bpm=global_tempo(beat_times),
        tempo_curve_times=beat_times,
        tempo_curve_bpm=local_tempo(beat_times, intervals),
        envelope_rate_hz=params.envelope_rate_hz,
        envelopes=env,
        metadata={"analyzer": {"name": ANALYZER_NAME, "version": ANALYZER_VERSION,
                               "params": params.to_dict(), "params_digest": params.digest()},
                  "frame_rate_hz": feats.frame_rate_hz,
                  "beat_confidence": round(float(confidence), 4),
                  "peak_dbfs": round(float(peak_dbfs), 2)},
        history=[{"version": 1, "change": "analysis"}],
        warnings=warnings,
    )


def _in_active_region(times_s: np.ndarray, feats: features.Features) -> np.ndarray:
    """Beats inside the part of the track where something plays (not in silent intros)."""
    level = 20 * np.log10(np.maximum(feats.rms, 1e-12))
    active = np.flatnonzero(level > level.max() - ACTIVE_DB_BELOW_PEAK)
    if len(active) == 0:
        return np.zeros(len(times_s), dtype=bool)
    first, last = active[0] / feats.frame_rate_hz, active[-1] / feats.frame_rate_hz
    return (times_s >= first - 0.05) & (times_s <= last + 0.05)


def _peak_near(strength: np.ndarray, times_s: np.ndarray, rate: float) -> np.ndarray:
    idx = np.round(times_s * rate).astype(int)
    return np.array([strength[max(0, i - 3):i + 4].max(initial=0.0) for i in idx])


def _autocorrelation_peak(x: np.ndarray, lo: int, hi: int) -> float:
    x = x - x.mean()
    spectrum = np.fft.rfft(x, 2 * len(x))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:len(x)]
    if acf[0] <= 0 or lo >= len(x):
        return 0.0
    return float(acf[lo:min(hi + 1, len(x))].max() / acf[0])


def rhythmic_contrast(strength: np.ndarray, rate: float, params: AnalyzerParams) -> float:
    """How much more periodic the onsets are than the same onsets in random order.

    The autocorrelation peak over the tempo range, divided by the same peak after
    shuffling blocks of CONTRAST_BLOCK_FRAMES frames (with a fixed seed: the same
    file gives the same figure). Noise scores about 1 at any length, a beat more.
    The autocorrelation alone grew for noise as tracks got shorter.
    """
    lo, hi = round(60 * rate / params.max_bpm), round(60 * rate / params.min_bpm)
    n_blocks = len(strength) // CONTRAST_BLOCK_FRAMES
    if n_blocks < 4 or hi >= len(strength):
        return 0.0
    real = _autocorrelation_peak(strength, lo, hi)
    blocks = strength[:n_blocks * CONTRAST_BLOCK_FRAMES].reshape(n_blocks, -1)
    rng = np.random.default_rng(0)
    shuffled = float(np.mean([
        _autocorrelation_peak(blocks[rng.permutation(n_blocks)].ravel(), lo, hi)
        for _ in range(CONTRAST_SHUFFLES)]))
    return real / shuffled if shuffled > 0 else 0.0


def beat_strengths(strength: np.ndarray, times_s: np.ndarray, rate: float) -> np.ndarray:
    if len(times_s) == 0:
        return np.zeros(0)
    peaks = _peak_near(strength, times_s, rate)
    return np.clip(peaks / (np.percentile(peaks, 95) + 1e-9), 0.0, 1.0)


def global_tempo(times_s: np.ndarray) -> float:
    if len(times_s) < 2:
        return 0.0
    return float(60.0 / np.median(np.diff(times_s)))


def local_tempo(times_s: np.ndarray, intervals_s: np.ndarray) -> np.ndarray:
    """Tempo at each beat: 60 / slope of a line fitted to the neighbouring beats.

    A least-squares line through the beats within TEMPO_CURVE_HALF_WINDOW of each
    beat gives a curve that follows real tempo changes but not the jitter of single
    beats. All beats at once: the slope is the centred cross-product over the
    centred square sum of each window (windows are shorter at the ends).
    """
    n = len(times_s)
    if n < 3:
        return 60.0 / intervals_s if len(intervals_s) == n and n else np.zeros(n)
    idx = np.arange(n)[:, None] + np.arange(-TEMPO_CURVE_HALF_WINDOW,
                                            TEMPO_CURVE_HALF_WINDOW + 1)[None, :]
    inside = (idx >= 0) & (idx < n)
    k = idx.astype(np.float64)
    t = np.asarray(times_s, dtype=np.float64)[np.clip(idx, 0, n - 1)]
    count = inside.sum(axis=1)
    k_mean = np.where(inside, k, 0.0).sum(axis=1) / count
    t_mean = np.where(inside, t, 0.0).sum(axis=1) / count
    dk = np.where(inside, k - k_mean[:, None], 0.0)
    slope = (dk * (t - t_mean[:, None])).sum(axis=1) / (dk * dk).sum(axis=1)
    safe = np.where(slope > 0, slope, 1.0)
    return np.where(slope > 0, 60.0 / safe, 0.0)
