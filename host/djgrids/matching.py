"""Which library track is this audio file, and where is the audio of a library track.

A library names its files by the paths of the DJ's machine. The same path is the best
match; when the music moved (another drive, another computer), the file name with
a duration within DURATION_TOLERANCE_S of the library's is the next best.
"""

from __future__ import annotations

import os
import unicodedata

from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack
from gridcast.host.djgrids.library import Library

# rekordbox stores whole seconds (TotalTime), Traktor fractions: 1.5 s covers both, and
# the different encoder padding of a re-encoded copy.
DURATION_TOLERANCE_S = 1.5


def _norm(path: str) -> str:
    """Paths compared as the same file: separators, Unicode form (macOS writes NFD), case
    of a Windows drive letter."""
    path = unicodedata.normalize("NFC", path.replace("\\", "/"))
    if len(path) > 1 and path[1] == ":":
        path = path[0].upper() + path[1:]
    return os.path.normpath(path) if path else ""


def _name(path: str) -> str:
    return unicodedata.normalize("NFC", path.replace("\\", "/").rsplit("/", 1)[-1]).casefold()


def find_track(lib: Library, audio_path: str, duration_s: float | None) -> DjTrack:
    """The one track of ``lib`` that is ``audio_path``; DjGridError when none or several."""
    wanted = _norm(os.path.abspath(audio_path))
    by_path = [t for t in lib.tracks if t.location and _norm(t.location) == wanted]
    if len(by_path) == 1:
        return by_path[0]
    candidates = by_path or [t for t in lib.tracks if _name(t.location) == _name(audio_path)]
    if duration_s is not None:
        candidates = [t for t in candidates if not t.duration_s
                      or abs(t.duration_s - duration_s) <= DURATION_TOLERANCE_S]
    if len(candidates) == 1:
        return candidates[0]
    skipped = [u for u in lib.unreadable if _name(u.what) == _name(audio_path)
               or u.what.endswith(os.path.basename(audio_path))]
    if not candidates:
        hint = f" (it is there but unreadable: {skipped[0].reason})" if skipped else ""
        raise DjGridError(f"{lib.path}: no track matches {audio_path} by location or by file "
                          f"name and duration{hint}; check that the library holds it")
    ids = ", ".join(f"{t.track_id} ({t.location})" for t in candidates[:5])
    raise DjGridError(f"{lib.path}: {len(candidates)} tracks match {audio_path}: {ids}; "
                      "give the library entry's exact location or remove the duplicates")


class AudioFinder:
    """Where a library track's audio is on this machine: its own location when that exists,
    else the file under ``audio_root`` whose path ends the same way (longest match)."""

    def __init__(self, audio_root: str | None) -> None:
        self.root = audio_root
        self._by_name: dict[str, list[str]] = {}
        if audio_root:
            for folder, dirs, files in os.walk(audio_root):
                dirs.sort()
                for f in sorted(files):
                    self._by_name.setdefault(_name(f), []).append(os.path.join(folder, f))

    def find(self, track: DjTrack) -> str | None:
        if track.location and os.path.isfile(track.location):
            return track.location
        if not self.root or not track.location:
            return None
        options = self._by_name.get(_name(track.location), [])
        if len(options) <= 1:
            return options[0] if options else None
        wanted = _norm(track.location).split("/")

        def shared_tail(path: str) -> int:
            parts = _norm(path).split("/")
            n = 0
            while n < min(len(parts), len(wanted)) and \
                    parts[-1 - n].casefold() == wanted[-1 - n].casefold():
                n += 1
            return n

        ranked = sorted(options, key=shared_tail, reverse=True)
        if shared_tail(ranked[0]) == shared_tail(ranked[1]):
            return None  # two files fit equally well: no guess
        return ranked[0]
