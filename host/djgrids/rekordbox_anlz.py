"""rekordbox analysis files (ANLZnnnn.DAT / .EXT): beat grid, cues and phrases.

Read with pyrekordbox (the ``dj`` extra). The .DAT holds the beat grid (PQTZ: every
beat with its bar position, tempo and time in ms), the cues (PCOB) and the audio
file's path (PPTH); the .EXT next to it holds named, coloured cues (PCO2) and the
phrase analysis (PSSI). Given either file, the other one beside it is read too.

PSSI phrases name a kind whose label depends on the track's mood (Deep Symmetry's
djl-analysis "Song Structure" and crate-digger's rekordbox_anlz.ksy):

- high mood (up-down style, EDM): 1 Intro, 2 Up, 3 Down, 5 Chorus, 6 Outro;
- mid mood: 1 Intro, 2-7 Verse 1-6, 8 Bridge, 9 Chorus, 10 Outro;
- low mood: 1 Intro, 2-4 Verse 1, 5-7 Verse 2, 8 Bridge, 9 Chorus, 10 Outro.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack, Phrase
from gridcast.host.extras import require

FORMAT = "rekordbox-anlz"
MOOD_HIGH, MOOD_MID, MOOD_LOW = 1, 2, 3
MOOD_NAMES = {MOOD_HIGH: "high", MOOD_MID: "mid", MOOD_LOW: "low"}
_HIGH_LABELS = {1: "Intro", 2: "Up", 3: "Down", 5: "Chorus", 6: "Outro"}
_MID_LABELS = {1: "Intro", 2: "Verse 1", 3: "Verse 2", 4: "Verse 3", 5: "Verse 4",
               6: "Verse 5", 7: "Verse 6", 8: "Bridge", 9: "Chorus", 10: "Outro"}
_LOW_LABELS = {1: "Intro", 2: "Verse 1", 3: "Verse 1", 4: "Verse 1", 5: "Verse 2",
               6: "Verse 2", 7: "Verse 2", 8: "Bridge", 9: "Chorus", 10: "Outro"}
LABELS = {MOOD_HIGH: _HIGH_LABELS, MOOD_MID: _MID_LABELS, MOOD_LOW: _LOW_LABELS}
# rekordbox's label -> the beat map's section role (docs/dj_grids.md). In the high mood
# (EDM) the chorus is the drop; a DJ's "up" is the build-up and "down" the break.
_ROLE_OF_LABEL = {"Intro": "intro", "Up": "buildup", "Down": "break", "Bridge": "bridge",
                  "Outro": "outro"}


def phrase_label(mood: int, kind: int) -> str:
    """rekordbox's name of phrase ``kind`` in a track of ``mood`` (``Kind 4`` if unknown)."""
    return LABELS.get(mood, _MID_LABELS).get(kind, f"Kind {kind}")


def phrase_role(mood: int, label: str) -> str:
    """The beat-map section role of a rekordbox phrase label."""
    if label == "Chorus":
        return "drop" if mood == MOOD_HIGH else "chorus"
    if label.startswith("Verse"):
        return "verse"
    return _ROLE_OF_LABEL.get(label, "other")


def _parse(path: str) -> Any:
    from pyrekordbox.anlz import AnlzFile

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DjGridError(f"{path}: cannot read the analysis file ({exc.strerror})") from exc
    if data[:4] != b"PMAI":
        raise DjGridError(f"{path}: not a rekordbox analysis file (it does not start with "
                          "PMAI)")
    try:
        return AnlzFile.parse(data)
    except Exception as exc:  # construct raises many types for damaged files
        raise DjGridError(f"{path}: damaged rekordbox analysis file "
                          f"({type(exc).__name__}: {exc})") from exc


def _sibling(path: str) -> str | None:
    root, ext = os.path.splitext(path)
    for other in ((".EXT", ".ext") if ext.upper() == ".DAT" else (".DAT", ".dat")):
        if os.path.exists(root + other):
            return root + other
    return None


def read(path: str) -> DjTrack:
    """Grid, cues and phrases from the ANLZ file at ``path`` and its .DAT/.EXT sibling."""
    require("pyrekordbox", "reading rekordbox analysis files")
    files = [path] + ([s] if (s := _sibling(path)) else [])
    parsed = [(p, _parse(p)) for p in files]
    track = DjTrack(source_format=FORMAT, source_file=path,
                    track_id=os.path.basename(os.path.dirname(path)))
    for _, anlz in parsed:
        if "PPTH" in anlz and not track.location:
            track.location = str(anlz.get("PPTH") or "")
        if "PQTZ" in anlz and track.beats_s is None:
            _read_grid(anlz.get_tag("PQTZ").content, track)
    if track.beats_s is None or not len(track.beats_s):
        raise DjGridError(f"{path}: no beat grid (PQTZ) in the analysis file"
                          + (f" or in {os.path.basename(files[1])}" if len(files) > 1 else ""))
    # The named, coloured cues of the .EXT (PCO2) when there are any, else the .DAT's.
    for tag_type in ("PCO2", "PCOB"):
        for _, anlz in parsed:
            if tag_type in anlz and not track.cues:
                for tag in anlz.getall_tags(tag_type):
                    track.cues.extend(_cues(tag.content, extended=tag_type == "PCO2"))
    track.cues.sort(key=lambda c: c.time_s)
    for p, anlz in parsed:
        if "PSSI" in anlz:
            try:
                _read_phrases(anlz.get_tag("PSSI").content, track)
            except (DjGridError, IndexError, ValueError) as exc:
                track.notes.append(f"{p}: phrases skipped ({exc})")
            break
    return track


def _read_grid(content: Any, track: DjTrack) -> None:
    entries = content.entries
    times = np.array([e.time for e in entries], dtype=np.float64) / 1000.0
    bib = np.array([e.beat for e in entries], dtype=np.int64)
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        raise DjGridError(f"{track.source_file}: beat grid times are not ascending")
    if len(bib) and (bib.min() < 1 or bib.max() > 16):
        raise DjGridError(f"{track.source_file}: beat grid bar positions outside 1-16")
    track.beats_s, track.beat_in_bar = times, bib


def _cues(content: Any, extended: bool) -> list[Cue]:
    out: list[Cue] = []
    for e in content.entries:
        if not extended and str(getattr(e, "status", "enabled")) == "disabled":
            continue
        is_loop = (str(e.type) == "loop" or e.type == 2) and 0 <= e.loop_time < 0xFFFFFFFF \
            and e.loop_time > e.time
        color = ""
        if extended and (e.color_red or e.color_green or e.color_blue):
            color = f"#{e.color_red:02x}{e.color_green:02x}{e.color_blue:02x}"
        name = str(getattr(e, "comment", "") or "").rstrip("\x00")
        out.append(Cue(time_s=e.time / 1000.0, name=name,
                       kind="loop" if is_loop else ("hot" if e.hot_cue else "memory"),
                       color=color, end_s=e.loop_time / 1000.0 if is_loop else None))
    return out


def _read_phrases(content: Any, track: DjTrack) -> None:
    mood = int(content.mood)
    if mood not in MOOD_NAMES:
        raise DjGridError(f"unknown phrase mood {mood}")
    beats = track.beats_s
    if beats is None or not len(beats):
        return
    entries = sorted(content.entries, key=lambda e: e.beat)

    def at(beat_number: int) -> float:
        return float(beats[min(max(beat_number, 1), len(beats)) - 1])

    for i, e in enumerate(entries):
        start = at(e.beat)
        end = at(entries[i + 1].beat) if i + 1 < len(entries) else (
            at(int(content.end_beat)) if content.end_beat > e.beat else float(beats[-1]))
        if end <= start:
            continue
        label = phrase_label(mood, int(e.kind))
        track.phrases.append(Phrase(start, end, label, phrase_role(mood, label)))
    track.phrase_source = "rekordbox"
    track.phrase_mood = MOOD_NAMES[mood]
