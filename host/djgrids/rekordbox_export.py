"""Beat maps -> a rekordbox XML collection (File > Import in rekordbox), to check a grid
there: TEMPO markers and POSITION_MARK cues.

rekordbox stores a marker's start in ms (Inizio, 3 decimals) and its tempo to 0.01 BPM,
and draws beats at that tempo until the next marker. The exporter puts a marker on a
beat, extends its run of beats as far as one rounded tempo keeps every beat within
MAX_ERROR_S, then starts the next: a steady grid gives one marker per tempo change, a
played one (an analyzed live recording) a marker on most beats.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

import numpy as np

from gridcast.host.atomic_file import write_atomically
from gridcast.host.beatmaps.beatmap import BeatMap
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import MARKER_SNAP_FRACTION, MAX_BPM, MIN_BPM, TempoMarker
from gridcast.host.djgrids.library import file_url_from_path
from gridcast.protocol.version import __version__

MAX_ERROR_S = 0.0009  # under the 1 ms round-trip target, with Inizio's own 0.5 ms rounding
MAX_HOT_CUES = 8


def _fits(beats: np.ndarray, bib: np.ndarray, i: int, j: int, start: float, meter: int,
          ) -> tuple[bool, float]:
    """Whether one marker at beats[i] (rounded ``start``) reproduces beats i..j, and its BPM."""
    bpm = round(60.0 * (j - i) / float(beats[j] - start), 2) if j > i else \
        round(60.0 / float(beats[i + 1] - beats[i]), 2)
    if bpm <= 0:
        return False, bpm
    k = np.arange(j - i + 1)
    err = np.abs(start + k * 60.0 / bpm - beats[i:j + 1])
    same_bars = np.array_equal(bib[i:j + 1], (bib[i] - 1 + k) % meter + 1)
    return bool(err.max() <= MAX_ERROR_S and same_bars), bpm


def _bpm_below(interval_s: float) -> float:
    """The largest 0.01-BPM tempo whose beat period is longer than ``interval_s``, within
    the 20-400 BPM a marker may have."""
    return float(np.clip(np.floor(6000.0 / interval_s - 1e-9) / 100.0, MIN_BPM, MAX_BPM))


def tempo_markers(beats: np.ndarray, beat_in_bar: np.ndarray,
                  end_s: float | None = None) -> list[TempoMarker]:
    """Markers that reproduce ``beats`` within MAX_ERROR_S (greedy: few of them).

    rekordbox also draws beats before the first marker and after the last one up to the
    track's end (``end_s``): where the map has none there, the edge marker's tempo is
    set just slow enough that rekordbox draws none either.
    """
    markers = _greedy(beats, beat_in_bar)
    if len(beats) < 5:
        return markers
    meter = markers[0].meter
    head: list[TempoMarker] = []
    lo, hi = 0, len(beats)
    if markers[0].time_s >= 60.0 / markers[0].bpm - 1e-9:
        interval = max(beats[1] - beats[0], markers[0].time_s + 1e-3)
        head = [TempoMarker(markers[0].time_s, _bpm_below(interval), int(beat_in_bar[0]),
                            meter)]
        lo = 1
        markers = _greedy(beats[lo:], beat_in_bar[lo:])
    if end_s is not None:
        last = markers[-1]
        drawn = int(np.floor((end_s - last.time_s) * last.bpm / 60.0 + 1e-9)) + 1
        if drawn > int(np.sum(beats >= last.time_s - 1e-6)):
            hi = len(beats) - 1
            tail = TempoMarker(round(float(beats[-1]), 3),
                               _bpm_below(end_s - float(beats[-1]) + 1e-3),
                               int(beat_in_bar[-1]), meter)
            markers = [*_greedy(beats[lo:hi], beat_in_bar[lo:hi]), tail]
    return head + markers


def _greedy(beats: np.ndarray, beat_in_bar: np.ndarray) -> list[TempoMarker]:
    n = len(beats)
    if n < 2:
        raise DjGridError("a grid needs at least two beats to export")
    meter = max(int(beat_in_bar.max()), 1)
    markers: list[TempoMarker] = []
    i = 0
    while i < n:
        start = round(float(beats[i]), 3)
        if i == n - 1:
            bpm = markers[-1].bpm if markers else round(60.0 / float(beats[1] - beats[0]), 2)
            markers.append(TempoMarker(start, bpm, int(beat_in_bar[i]), meter))
            break
        ok, bpm = _fits(beats, beat_in_bar, i, i + 1, start, meter)
        good = i + 1 if ok else i
        if ok:  # the longest run: steps doubling until one fails, then halving back
            step, bad = 1, n
            while good + step < n:
                fits, b = _fits(beats, beat_in_bar, i, good + step, start, meter)
                if not fits:
                    bad = good + step
                    break
                good, bpm, step = good + step, b, step * 2
            while bad - good > 1:
                mid = (good + bad) // 2
                fits, b = _fits(beats, beat_in_bar, i, mid, start, meter)
                good, bad, bpm = (mid, bad, b) if fits else (good, mid, bpm)
        # The run's last beat starts the next tempo when the gaps after it agree with each
        # other but not with this run: the next marker goes there (as rekordbox puts it).
        # And rekordbox draws the run's tempo up to the next marker, so a next beat later
        # than that would snap to also ends the run one beat earlier.
        period = 60.0 / bpm
        if good + 1 < n and good > i:
            gap = beats[good + 1] - beats[good]
            new_tempo_here = good - i >= 2 and good + 2 < n and \
                abs(gap - period) > MAX_ERROR_S and \
                abs(gap - (beats[good + 2] - beats[good + 1])) <= MAX_ERROR_S
            if gap > (1 + MARKER_SNAP_FRACTION) * period or new_tempo_here:
                good -= 1  # the tempo that fits the longer run fits this one too
        # A gap of more than 3 s (a silence in an analyzed map) is a 20 BPM marker: the
        # slowest a rekordbox grid may be (it draws a beat every 3 s in the gap).
        markers.append(TempoMarker(start, float(np.clip(bpm, MIN_BPM, MAX_BPM)),
                                   int(beat_in_bar[i]), meter))
        i = good + 1
    return markers


def _track_element(bm: BeatMap, map_path: str, track_id: int,
                   sections_as_cues: bool) -> ET.Element:
    found = bm.metadata.get("grid_source")
    src: dict = found if isinstance(found, dict) else {}
    audio_file = str(bm.metadata.get("audio_file", ""))
    location = src.get("location") or os.path.abspath(
        os.path.join(os.path.dirname(map_path), audio_file))
    # Whole seconds, as rekordbox stores them, never ending before the last beat.
    total_s = math.ceil(max(bm.duration_s, float(bm.beats[-1]) if len(bm.beats) else 0.0)
                        - 1e-9)
    track = ET.Element("TRACK", {
        "TrackID": str(track_id),
        "Name": src.get("title") or os.path.splitext(audio_file)[0],
        "Artist": src.get("artist", ""),
        "Kind": (os.path.splitext(audio_file)[1].lstrip(".").upper() + " File").strip(),
        "TotalTime": str(total_s),
        "AverageBpm": f"{bm.tempo_bpm:.2f}",
        "Location": file_url_from_path(location),
        "Comments": f"gridcast map v{bm.version}",
    })
    for m in tempo_markers(bm.beats, bm.beat_in_bar, float(total_s)):
        ET.SubElement(track, "TEMPO", {"Inizio": f"{m.time_s:.3f}", "Bpm": f"{m.bpm:.2f}",
                                       "Metro": f"{m.meter}/4", "Battito": str(m.beat)})
    if sections_as_cues:  # rekordbox's XML has no phrases: memory cues named by role
        for sec in bm.sections:
            ET.SubElement(track, "POSITION_MARK", {"Name": sec.role, "Type": "0",
                                                   "Start": f"{sec.start_s:.3f}", "Num": "-1"})
    hot = 0
    for cue in bm.cues:
        attrs = {"Name": cue.name, "Type": "4" if cue.kind == "loop" else "0",
                 "Start": f"{cue.time_s:.3f}", "Num": "-1"}
        if cue.end_s is not None:
            attrs["End"] = f"{cue.end_s:.3f}"
        if cue.kind == "hot" and hot < MAX_HOT_CUES:
            attrs["Num"], hot = str(hot), hot + 1
        if len(cue.color) == 7:
            r, g, b = (int(cue.color[k:k + 2], 16) for k in (1, 3, 5))
            attrs.update({"Red": str(r), "Green": str(g), "Blue": str(b)})
        ET.SubElement(track, "POSITION_MARK", attrs)
    return track


def collection_xml(maps: list[tuple[str, BeatMap]], sections_as_cues: bool = False) -> bytes:
    """The rekordbox XML of these (map path, map) pairs, TrackIDs 1, 2, ...; with
    ``sections_as_cues`` each section's start is also a memory cue named by its role."""
    root = ET.Element("DJ_PLAYLISTS", {"Version": "1.0.0"})
    ET.SubElement(root, "PRODUCT", {"Name": "gridcast", "Version": __version__,
                                    "Company": "gridcast"})
    coll = ET.SubElement(root, "COLLECTION", {"Entries": str(len(maps))})
    for n, (path, bm) in enumerate(maps, start=1):
        try:
            coll.append(_track_element(bm, path, n, sections_as_cues))
        except DjGridError as exc:
            raise DjGridError(f"{path}: {exc}") from exc
    playlists = ET.SubElement(root, "PLAYLISTS")
    node = ET.SubElement(playlists, "NODE", {"Type": "0", "Name": "ROOT", "Count": "1"})
    plist = ET.SubElement(node, "NODE", {"Name": "gridcast", "Type": "1", "KeyType": "0",
                                         "Entries": str(len(maps))})
    for n in range(1, len(maps) + 1):
        ET.SubElement(plist, "TRACK", {"Key": str(n)})
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write(maps: list[tuple[str, BeatMap]], out_path: str, sections_as_cues: bool = False,
          ) -> None:
    """Write the collection atomically (a failed export leaves no half file)."""
    write_atomically(out_path, collection_xml(maps, sections_as_cues))
