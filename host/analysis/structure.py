"""Phrases and sections: where the music changes every 4, 8 or 16 bars, and what each part is.

1. Beat-synchronous features, one row per beat of the map: the bass / mid /
   high energy (dB), the timbre (24 log bands, dB), chroma (harmony) and onset
   density (band flux), each column z-scored over the track, each kind with
   the same weight.
2. Novelty before each beat: how far the mean of the rows after it lies from
   the mean of the rows before it, over windows of 1 and 4 bars (chroma only in
   the 4-bar one: inside a phrase the chords change every bar), each scale
   divided by its median (a track that changes a little everywhere does not
   look like one that changes a lot at a few places); the map's downbeats get
   a bonus, since phrases start on the one.
3. Phrase starts: a dynamic programme over beats that takes a boundary where
   the novelty is above a threshold, with a prior for phrases of 4, 8 and 16
   bars (12 and other whole bars pay a penalty, a beat more or less a small
   one; under 4 bars only at the ends). Working on beats, not on the map's
   bars, keeps a phrase start where the music changes when the bar phase is
   wrong somewhere; the bonus keeps it on the map's downbeat otherwise.
4. Roles per phrase, from its energy level (mean dB over the spectrum against
   the track's quietest and loudest phrase), its trend and its place: loud
   phrases are drops (chorus when no build-up or jump in energy leads into
   them); the phrases right before a drop whose high band and onsets rise are a
   build-up; before the first drop is the intro, after the last the outro, and
   the quieter parts in between are breaks (verse when nearly as loud as the
   drops). Neighbouring phrases with the same role make one section, and
   neighbouring build-up phrases one phrase (a roll that doubles its rate half-way
   is still one build-up); a last phrase under 2 bars is dropped (it is where the
   music stops).

Times are seconds; sections tile the track from 0 to its end. The thresholds
were set on composed tracks (host/training/structure_corpus.py, seeds 0-28);
bench/structure.py reports held-out seeds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from gridcast.host.analysis.features import N_LOG_BANDS, Features
from gridcast.host.beatmaps.beatmap import BeatMap, Section

MIN_BARS = 8  # fewer bars of beats than this: no structure
NOVELTY_SCALES_BARS = (1, 4)  # windows either side of a beat, in bars
SLIP_PENALTY = 0.3  # a phrase one beat longer or shorter than whole bars
PHRASE_PRIOR = {4: 0.0, 8: 0.0, 16: 0.0, 12: -0.5}  # bonus per phrase length (bars)
OTHER_LENGTH_PENALTY = -1.5
MIN_PHRASE_BARS = 4  # shorter phrases only at the start and the end of the track
MAX_PHRASE_BARS = 32
LAST_PHRASE_MIN_BARS = 2  # a "phrase" that starts where the music stops is none
KIND_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # energy, timbre, chroma, onset density
HARMONY_FROM_BARS = 4  # novelty windows shorter than this leave chroma out
MIN_LEVEL_SPAN_DB = 10.0  # composed tracks span 13-60 dB between phrases


@dataclass(frozen=True)
class StructureParams:
    boundary_threshold: float = 1.8  # novelty (in medians) a phrase start must exceed
    drop_level: float = 0.7  # energy (0..1 over the track's phrases) of a drop
    break_level: float = 0.65  # below this between drops: a break, else a verse
    rise_z: float = 0.5  # rise of the high band over a build-up (z units per phrase)
    drop_jump: float = 0.3  # energy jump that makes a loud phrase a drop without a build-up
    loud_rise_z: float = 1.0  # rise that makes a loud phrase before a drop a build-up
    scales: tuple[int, ...] = NOVELTY_SCALES_BARS
    downbeat_bonus: float = 0.5  # novelty added at the map's downbeats


@dataclass
class Structure:
    phrases_s: np.ndarray  # phrase starts (downbeats), seconds
    sections: list[Section]
    novelty: np.ndarray  # before each beat, and the end (for plots and tuning)
    downbeats_s: np.ndarray


def beat_features(feats: Features, beats_s: np.ndarray, end_s: float) -> np.ndarray:
    """(beats, columns): energy, timbre, chroma and onset density per beat, z-scored."""
    rate = feats.frame_rate_hz
    edges = np.clip(np.round(np.r_[beats_s, end_s] * rate).astype(int), 0, feats.n_frames)
    timbre = 20 * np.log10(feats.band_mag + 1e-4)
    chroma = feats.chroma / (np.linalg.norm(feats.chroma, axis=1, keepdims=True) + 1e-9)
    cols = np.concatenate([feats.band_energy_db, timbre, chroma, feats.band_flux], axis=1)
    csum = np.r_[np.zeros((1, cols.shape[1])), np.cumsum(cols, axis=0, dtype=np.float64)]
    hi = np.maximum(edges[1:], edges[:-1] + 1)
    lo = np.minimum(edges[:-1], len(cols) - 1)
    rows = (csum[np.minimum(hi, len(cols))] - csum[lo]) / np.maximum(
        np.minimum(hi, len(cols)) - lo, 1)[:, None]
    rows = (rows - rows.mean(axis=0)) / (rows.std(axis=0) + 1e-6)
    # Each kind has its say (KIND_WEIGHTS), however many columns it has.
    e, t, c, f = KIND_WEIGHTS
    weights = np.r_[np.full(3, e / 3), np.full(timbre.shape[1], t / timbre.shape[1]),
                    np.full(12, c / 12), np.full(3, f / 3)]
    return rows * np.sqrt(weights)


def novelty(rows: np.ndarray, scales: tuple[int, ...], harmony_from: int = 0) -> np.ndarray:
    """Per beat line k (before row k; 0 and len are the ends): the change in the mean
    features across it, over windows of ``scales`` rows, each scale in its own medians.
    Windows shorter than ``harmony_from`` rows leave chroma out: inside a phrase the
    chords change every bar or two, so only windows that hold a whole progression
    compare harmony."""
    n = len(rows)
    total = np.zeros(n + 1)
    csum = np.r_[np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)]
    k = np.arange(1, n)
    timbre_end = 3 + N_LOG_BANDS
    for w in scales:
        a, b = np.maximum(0, k - w), np.minimum(n, k + w)
        before = (csum[k] - csum[a]) / (k - a)[:, None]
        after = (csum[b] - csum[k]) / (b - k)[:, None]
        change = after - before
        if w < harmony_from:
            change[:, timbre_end:timbre_end + 12] = 0.0
        nov = np.r_[0.0, np.linalg.norm(change, axis=1), 0.0]
        med = np.median(nov[1:n]) if n > 1 else 0.0
        total += nov / (med + 1e-6)
    return total / len(scales)


def length_prior(meter: int) -> dict[int, float]:
    """Score of a phrase of each length in beats: whole bars, 4, 8, 16 preferred; one
    beat more or less (a beat the tracker added or missed) costs a little."""
    prior: dict[int, float] = {}
    for bars in range(MIN_PHRASE_BARS, MAX_PHRASE_BARS + 1):
        base = PHRASE_PRIOR.get(bars, OTHER_LENGTH_PENALTY)
        for slip in (-1, 0, 1):
            length = bars * meter + slip
            prior[length] = max(prior.get(length, -np.inf), base - SLIP_PENALTY * abs(slip))
    return prior


def phrase_starts(nov: np.ndarray, threshold: float, prior: dict[int, float],
                  min_last: int = 0) -> list[int]:
    """Indices (0 first) of phrase starts: the best path of boundaries, each worth its
    novelty minus ``threshold``, each phrase worth the prior of its length. The first
    phrase may have any length (a pickup, beats tracked late), the last one any from
    ``min_last`` beats (where the music stops is not a phrase)."""
    n = len(nov) - 1
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    longest = max(prior)
    for j in range(1, n + 1):
        gain = 0.0 if j == n else nov[j] - threshold
        if j == n or j <= longest:  # from the start, or to the end: any length
            for i in range(max(0, j - longest) if j == n else 0, j):
                if i == 0 or (j == n and j - i >= min_last):
                    score = best[i] + gain
                    if score > best[j]:
                        best[j], back[j] = score, i
        for length, bonus in prior.items():
            i = j - length
            if i > 0 and best[i] > -np.inf and best[i] + bonus + gain > best[j]:
                best[j], back[j] = best[i] + bonus + gain, i
        if best[j] == -np.inf:  # nothing fits: a phrase of the longest length
            i = max(0, j - longest)
            best[j], back[j] = best[i] + OTHER_LENGTH_PENALTY + gain, i
    out, j = [], n
    while j > 0:
        j = int(back[j])
        out.append(j)
    return sorted(out)


def _slope(values: np.ndarray) -> float:
    """Rise from the first to the last bar of a least-squares line (same units)."""
    if len(values) < 2:
        return 0.0
    k = np.arange(len(values))
    return float(np.polyfit(k, values, 1)[0] * (len(values) - 1))


def assign_roles(level: np.ndarray, rise: np.ndarray, p: StructureParams) -> list[str]:
    """Role of each phrase from its energy ``level`` (0..1) and high-band ``rise``."""
    n = len(level)
    loud = level >= p.drop_level
    roles = ["verse"] * n
    if not loud.any():
        roles = ["intro"] + ["verse"] * (n - 2) + ["outro"] if n > 2 else ["verse"] * n
        return roles
    first, last = int(np.argmax(loud)), n - 1 - int(np.argmax(loud[::-1]))
    for i in range(n):
        if loud[i]:
            roles[i] = "drop"
        elif i < first:
            roles[i] = "intro"
        elif i > last:
            roles[i] = "outro"
        else:
            roles[i] = "break" if level[i] < p.break_level else "verse"
    # Build-ups: the phrases leading into a drop while the high band rises. A loud
    # phrase that rises steeply into another loud one is a build-up too (a roll over
    # the full beat).
    for i in range(n - 1):
        if loud[i] and loud[i + 1] and rise[i] >= p.loud_rise_z and (i == 0 or not loud[i - 1]):
            roles[i] = "buildup"
    for i in range(n):
        if roles[i] == "drop" and i > 0 and roles[i - 1] != "drop":
            j = i - 1
            while j >= 0 and roles[j] != "drop" and rise[j] >= p.rise_z:
                roles[j] = "buildup"
                j -= 1
    # A run of loud phrases is a drop when a build-up or a jump in energy leads into it,
    # else a chorus (a song's loud part that arrives without one).
    for i in range(n):
        if roles[i] == "drop" and (i == 0 or roles[i - 1] != "drop"):
            led_in = i > 0 and (roles[i - 1] == "buildup" or level[i] - level[i - 1] >= p.drop_jump)
            j = i
            while j < n and roles[j] == "drop":
                roles[j] = "drop" if led_in else "chorus"
                j += 1
    return roles


def analyze(feats: Features, beats_s: np.ndarray, beat_in_bar: np.ndarray,
            params: StructureParams | None = None) -> Structure:
    """Phrases and sections of a track from its features and the map's beats."""
    p = params or StructureParams()
    end_s = feats.n_frames / feats.frame_rate_hz
    beats_s = np.asarray(beats_s, dtype=np.float64)
    bib = np.asarray(beat_in_bar)
    meter = int(bib.max()) if len(bib) and bib.max() >= 2 else 4
    if len(beats_s) < MIN_BARS * meter:
        return Structure(np.zeros(0), [], np.zeros(0), np.zeros(0))
    beat_len = float(np.median(np.diff(beats_s)))
    last_end = min(end_s, float(beats_s[-1]) + beat_len)
    rows = beat_features(feats, beats_s, last_end)
    nov = novelty(rows, tuple(w * meter for w in p.scales), HARMONY_FROM_BARS * meter)
    # Within a bar of either end the windows hold too few beats to say anything.
    nov[:meter] = 0.0
    nov[-meter:] = 0.0
    nov[:-1] += p.downbeat_bonus * (bib == 1)
    starts = phrase_starts(nov, p.boundary_threshold, length_prior(meter),
                           LAST_PHRASE_MIN_BARS * meter)
    bounds = [*starts, len(beats_s)]
    level, rise = _phrase_levels(feats, beats_s, last_end, rows, bounds)
    roles = assign_roles(level, rise, p)
    # A build-up is one gesture, however often its roll doubles: one phrase.
    keep = [k for k in range(len(roles)) if k == 0 or not roles[k] == roles[k - 1] == "buildup"]
    starts, roles = [starts[k] for k in keep], [roles[k] for k in keep]
    bounds = [*starts, len(beats_s)]
    level, rise = _phrase_levels(feats, beats_s, last_end, rows, bounds)
    sections: list[Section] = []
    for k, role in enumerate(roles):
        a = 0.0 if k == 0 else float(beats_s[bounds[k]])
        b = end_s if k == len(roles) - 1 else float(beats_s[bounds[k + 1]])
        if sections and sections[-1].role == role:
            prev = sections[-1]
            span_a, span_b = prev.end_s - prev.start_s, b - a
            prev.energy = (prev.energy * span_a + level[k] * span_b) / (span_a + span_b)
            prev.end_s = b
        elif b > a:
            sections.append(Section(a, b, role, float(level[k]), "analysis"))
    return Structure(beats_s[starts], sections, nov, beats_s[bib == 1])


def _phrase_levels(feats: Features, beats_s: np.ndarray, end_s: float, rows: np.ndarray,
                   bounds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per phrase: loudness scaled to 0..1 over the track's phrases, and the rise of the
    high band and onset density through it (z units)."""
    rate = feats.frame_rate_hz
    # Loudness over the spectrum as a whole (mean dB of the log bands), not the power
    # sum, which the kick alone would decide: a drop is full where an intro is thin.
    loud_db = (20 * np.log10(feats.band_mag.astype(np.float64) + 1e-4)).mean(axis=1)
    edges = np.clip(np.round(np.r_[beats_s, end_s] * rate).astype(int), 0, feats.n_frames)
    beat_db = np.array([loud_db[a:max(a + 1, b)].mean() for a, b in itertools.pairwise(edges)])
    e, _, _, f = KIND_WEIGHTS  # undo the weights: high dB + high flux, z units
    high = rows[:, 2] / np.sqrt(e / 3) + rows[:, -1] / np.sqrt(f / 3)
    levels, rises = [], []
    for a, b in itertools.pairwise(bounds):
        levels.append(float(np.mean(beat_db[a:b])))
        rises.append(_slope(high[a:b]) / 2)
    lv = np.array(levels)
    # 0 for the quietest phrase, 1 for the loudest, but a span under MIN_LEVEL_SPAN_DB
    # counts as that much: a clip that never changes much is all loud, not half silent.
    lv = np.clip(1.0 + (lv - lv.max()) / max(float(lv.max() - lv.min()), MIN_LEVEL_SPAN_DB),
                 0.0, 1.0)
    return lv, np.array(rises)


def describe(bm: BeatMap) -> str:
    """One line for a map's sections: role and length in bars (beats where there are no
    downbeats), e.g. ``intro 16 bars | buildup 8 | drop 16 | outro 8``; empty without."""
    parts: list[str] = []
    downbeats = bm.downbeats
    for sec in bm.sections:
        bars = int(np.sum((downbeats >= sec.start_s) & (downbeats < sec.end_s)))
        if not len(downbeats):
            bars = int(np.sum((bm.beats >= sec.start_s) & (bm.beats < sec.end_s)))
        parts.append(f"{sec.role} {bars}" + (" bars" if not parts else ""))
    if not parts:
        return ""
    return f"{len(bm.phrases)} phrases; " + " | ".join(parts)
