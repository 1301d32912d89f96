"""What every DJ format is read into: a track's grid, cues and phrases, and where it came from.

A grid is either a list of tempo markers (rekordbox XML, Traktor, Serato: beats are
generated between them) or an explicit list of beats (rekordbox ANLZ PQTZ, one entry
per beat). Times are seconds from the start of the decoded audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.djgrids.errors import DjGridError

# A generated beat closer than this fraction of a beat period before the next marker is
# that marker's own beat (the markers' times are rounded to 1 ms in the files).
MARKER_SNAP_FRACTION = 0.25
MIN_BPM, MAX_BPM = 20.0, 400.0


@dataclass(frozen=True)
class TempoMarker:
    """From ``time_s`` on, beats every 60 / ``bpm`` s; the marker's beat is ``beat`` (1 = the
    downbeat) of a bar of ``meter`` beats."""

    time_s: float
    bpm: float
    beat: int = 1
    meter: int = 4


@dataclass(frozen=True)
class Phrase:
    """A DJ tool's phrase: ``label`` as the tool names it, mapped to a beat-map ``role``."""

    start_s: float
    end_s: float
    label: str
    role: str


@dataclass
class DjTrack:
    """One track of a DJ library or analysis file, as read, before any audio is opened."""

    source_format: str  # "rekordbox-xml", "rekordbox-anlz", "traktor-nml" or "serato"
    source_file: str
    track_id: str = ""
    title: str = ""
    artist: str = ""
    location: str = ""  # the audio file's path as the library names it (may not exist here)
    duration_s: float = 0.0  # 0 when the library does not say
    markers: list[TempoMarker] = field(default_factory=list)
    beats_s: np.ndarray | None = None  # explicit beats, when the format lists each one
    beat_in_bar: np.ndarray | None = None
    cues: list[Cue] = field(default_factory=list)
    phrases: list[Phrase] = field(default_factory=list)
    phrase_source: str = ""  # "rekordbox" when phrases came from its analysis
    phrase_mood: str = ""  # rekordbox's mood of the track: "high", "mid" or "low"
    notes: list[str] = field(default_factory=list)  # what was skipped while reading

    @property
    def has_grid(self) -> bool:
        return bool(self.markers) or (self.beats_s is not None and len(self.beats_s) > 0)

    def describe(self) -> str:
        """``Artist - Title`` or the location's file name, for messages."""
        if self.title:
            return f"{self.artist} - {self.title}" if self.artist else self.title
        return self.location.rsplit("/", 1)[-1] or f"track {self.track_id}"


def check_marker(marker: TempoMarker, where: str) -> None:
    """DjGridError naming ``where`` unless the marker is usable."""
    if not (np.isfinite(marker.time_s) and np.isfinite(marker.bpm)):
        raise DjGridError(f"{where}: tempo marker with a non-finite time or BPM")
    if not MIN_BPM <= marker.bpm <= MAX_BPM:
        raise DjGridError(f"{where}: tempo {marker.bpm:g} BPM at {marker.time_s:.3f} s is "
                          f"outside {MIN_BPM:g}-{MAX_BPM:g} BPM")
    if not 1 <= marker.meter <= 16 or not 1 <= marker.beat <= marker.meter:
        raise DjGridError(f"{where}: beat {marker.beat} of a {marker.meter}-beat bar at "
                          f"{marker.time_s:.3f} s is not a bar position")


def beats_from_markers(markers: list[TempoMarker], end_s: float) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Beat times (s) and bar positions from tempo markers, from 0 s to ``end_s``.

    Before the first marker the grid runs backwards at the first tempo (DJ tools draw
    it to the start of the track); between markers at each marker's tempo; after the
    last one at its tempo until ``end_s``. Bar positions count on from each marker's own.
    """
    if not markers:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    ordered = sorted(markers, key=lambda m: m.time_s)
    t = np.array([m.time_s for m in ordered])
    period = 60.0 / np.array([m.bpm for m in ordered])
    first_beat = np.array([m.beat for m in ordered])
    meter = np.array([m.meter for m in ordered])
    # Beats of marker i: t[i] + k * period[i] for k = 0 .. n[i] - 1, all at once. Between
    # markers k runs while the beat is before the next marker's snap zone; after the last
    # one until end_s.
    stop = np.r_[t[1:] - MARKER_SNAP_FRACTION * period[:-1], np.nan]
    n = np.ones(len(t), dtype=np.int64)
    mid = stop[:-1] > t[:-1]
    n[:-1][mid] = np.maximum(1, np.ceil((stop[:-1][mid] - t[:-1][mid]) / period[:-1][mid]))
    if end_s >= t[-1]:
        n[-1] = int(np.floor((end_s + 1e-9 - t[-1]) / period[-1])) + 1
    n_before = int(np.floor(t[0] / period[0] + 1e-9))
    seg = np.repeat(np.arange(len(t)), n)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)
    k = np.r_[np.arange(-n_before, 0), k]  # drawn back to the start at the first tempo
    seg = np.r_[np.zeros(n_before, dtype=np.int64), seg]
    beats = t[seg] + k * period[seg]
    bib = ((first_beat[seg] - 1 + k) % meter[seg] + 1).astype(np.int64)
    inside = (beats >= 0) & (beats <= max(end_s, 0.0) + 1e-9)
    beats, bib = beats[inside], bib[inside]
    order = np.argsort(beats, kind="stable")
    beats, bib = beats[order], bib[order]
    keep = np.r_[True, np.diff(beats) > 1e-6]  # two markers on one instant: one beat
    return beats[keep], bib[keep]


def track_beats(track: DjTrack, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The track's beats (s) and bar positions up to ``end_s``, whichever way it stores them."""
    if track.beats_s is not None and len(track.beats_s):
        beats = np.asarray(track.beats_s, dtype=np.float64)
        bib = (np.asarray(track.beat_in_bar, dtype=np.int64) if track.beat_in_bar is not None
               else (np.arange(len(beats)) % 4 + 1))
        keep = (beats >= 0) & (beats <= end_s + 1e-9) if end_s > 0 else beats >= 0
        return beats[keep], bib[keep]
    return beats_from_markers(track.markers, end_s)
