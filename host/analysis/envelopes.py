"""Bass / mid / high energy envelopes for lighting, in [0, 1] at a fixed rate."""

from __future__ import annotations

import numpy as np

from gridcast.host.analysis.features import Features

BANDS = ("bass", "mid", "high")
FLOOR_PERCENTILE = 5.0
CEIL_PERCENTILE = 99.5


def band_envelopes(features: Features, rate_hz: float) -> dict[str, np.ndarray]:
    """Energy per band resampled to ``rate_hz`` and scaled per track to [0, 1].

    Scaling per track (5th to 99.5th percentile of the band's dB level) makes a
    quiet recording drive the lights as fully as a loud one.
    """
    n_out = int(np.floor(features.n_frames * rate_hz / features.frame_rate_hz))
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(BANDS):
        db = features.band_energy_db[:, i].astype(np.float64)
        if n_out == 0:
            out[name] = np.zeros(0, dtype=np.float32)
            continue
        # Average the frames that fall in each output period (anti-aliasing by boxcar).
        edges = np.round(np.arange(n_out + 1) * features.frame_rate_hz / rate_hz).astype(int)
        sums = np.add.reduceat(db, edges[:-1])
        resampled = sums / np.maximum(np.diff(edges), 1)
        lo, hi = np.percentile(db, [FLOOR_PERCENTILE, CEIL_PERCENTILE])
        scaled = (resampled - lo) / max(hi - lo, 1e-6)
        out[name] = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    return out
