"""The operator's tempo hint in live mode: the tempo range the tracker follows around it.

Kept apart from the tracker's beat source (gridcast.agent.tracker_beat_source), which
loads the native extension, so that the daemon and the CLI can check a hint without it.
"""

from __future__ import annotations

from gridcast.host.analysis.params import AnalyzerParams

HINT_RANGE = AnalyzerParams.hint_range  # as `gridcast analyze --tempo-hint`: hint / 1.3 .. x 1.3
HINT_MIN_BPM, HINT_MAX_BPM = 40.0, 230.0  # the tracker's range stays within 30..300 BPM


def hint_range(tempo_hint: float | None) -> tuple[float, float] | None:
    """The tracker's (min_bpm, max_bpm) for a tempo hint (None: no hint, the tracker's own
    defaults). ValueError outside HINT_MIN_BPM..HINT_MAX_BPM."""
    if tempo_hint is None:
        return None
    if not HINT_MIN_BPM <= tempo_hint <= HINT_MAX_BPM:
        raise ValueError(f"tempo hint {tempo_hint:g} BPM: give {HINT_MIN_BPM:g}-"
                         f"{HINT_MAX_BPM:g} BPM")
    return tempo_hint / HINT_RANGE, tempo_hint * HINT_RANGE
