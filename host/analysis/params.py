"""Analyzer parameters: one frozen record, stored in every beat map's metadata.

Defaults were chosen on the development sets as a whole (see docs/analysis.md);
they are not tuned per clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class AnalyzerParams:
    min_bpm: float = 50.0
    max_bpm: float = 220.0
    # Tempo prior: log-normal (sigma in octaves), paid per frame. Around a tempo hint with
    # hint_prior_weight. Without a hint (analyzer 0.5.2): a first decode with
    # prior_weight around prior_bpm (0: no fixed centre, so a slow song is not pushed to
    # twice its tempo), then a second around the first's median tempo with
    # own_tempo_prior_weight, within / and x own_tempo_range of it (quiet stretches
    # keep the track's tempo). docs/analysis.md, "The tempo prior".
    prior_bpm: float = 110.0
    prior_sigma_oct: float = 0.8
    prior_weight: float = 0.0
    hint_prior_weight: float = 0.05
    own_tempo_prior_weight: float = 0.05
    own_tempo_range: float = 1.5
    # A tempo hint (BPM) narrows the tempo range to hint / hint_range .. hint * hint_range.
    tempo_hint_bpm: float | None = None
    hint_range: float = 1.3
    # Onset strength: weights of the bass / mid / high flux, smoothing in frames.
    band_weights: tuple[float, float, float] = (2.0, 1.0, 0.5)
    smoothing_frames: int = 5
    local_mean_frames: int = 50
    # HMM: tempo change penalty at a beat, beat window (fraction of a period),
    # log-penalty for switching between binary and ternary subdivision.
    transition_lambda: float = 100.0
    beat_window: float = 1 / 32
    family_switch_logp: float = -5.0
    # Expected onset probability per phase class: beat, half, first third, second third, none.
    class_onset_prob: tuple[float, float, float, float, float] = (0.9, 0.4, 0.3, 0.5, 0.1)
    # The decoder's evidence is the onset model above plus the beat network's
    # activation a (log a at the beat, log((1 - a) / (lambda - 1)) elsewhere), weighted.
    onset_weight: float = 1.0
    network_weight: float = 0.75
    activation_lambda: float = 16.0
    # Bar positions: the network's downbeat activation, plus this much of the bass
    # onset and harmonic change accent (z-scored) at a bar line.
    downbeat_accent_weight: float = 1.0
    envelope_rate_hz: float = 50.0

    def with_hint(self, tempo_hint_bpm: float | None) -> AnalyzerParams:
        return replace(self, tempo_hint_bpm=tempo_hint_bpm)

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Short stable hash, used as part of the analysis cache key."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
