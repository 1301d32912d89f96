"""Which reader a file needs, and the grid of one audio file from any of them."""

from __future__ import annotations

import os

from gridcast.host.djgrids import rekordbox_anlz, rekordbox_xml, serato_tags, traktor_nml
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack
from gridcast.host.djgrids.library import Library
from gridcast.host.djgrids.matching import find_track

LIBRARY_EXTENSIONS = {".xml": rekordbox_xml.read, ".nml": traktor_nml.read}
ANLZ_EXTENSIONS = (".dat", ".ext", ".2ex")
TAGGED_AUDIO_EXTENSIONS = (".mp3", ".flac", ".m4a", ".mp4", ".aif", ".aiff", ".ogg", ".wav")
OWN_TAGS = "serato"  # --grid-from serato: each audio file's own Serato tags
KINDS = ("a rekordbox XML collection (.xml), a Traktor collection (.nml), a rekordbox "
         "analysis file (ANLZ*.DAT/.EXT) or an audio file with Serato tags")


def kind_of(path: str) -> str:
    """"library", "anlz" or "serato"; DjGridError naming what is accepted otherwise."""
    ext = os.path.splitext(path)[1].lower()
    if ext in LIBRARY_EXTENSIONS:
        return "library"
    if ext in ANLZ_EXTENSIONS:
        return "anlz"
    if ext in TAGGED_AUDIO_EXTENSIONS:
        return "serato"
    raise DjGridError(f"{path}: unknown grid source; give {KINDS}")


def read_library(path: str) -> Library:
    """A whole rekordbox XML or Traktor NML collection."""
    if not os.path.isfile(path):
        raise DjGridError(f"{path}: no such file (give a rekordbox XML or a Traktor NML)")
    reader = LIBRARY_EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if reader is None:
        raise DjGridError(f"{path}: not a collection file; give a rekordbox XML (.xml) or a "
                          "Traktor collection (.nml)")
    return reader(path)


def describes_one_track(grid_from: str) -> bool:
    """Whether ``grid_from`` holds one track's grid (an ANLZ file, one tagged audio file),
    so that it cannot serve several audio files."""
    return grid_from != OWN_TAGS and kind_of(grid_from) in ("anlz", "serato")


_read_libraries: dict[tuple[str, int, int], Library] = {}


def cached_library(path: str) -> Library:
    """read_library once per file version: a folder of audio matched against one library
    parses it once."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _read_libraries:
        _read_libraries.clear()
        _read_libraries[key] = read_library(path)
    return _read_libraries[key]


def grid_for_audio(grid_from: str, audio_path: str, duration_s: float | None) -> DjTrack:
    """The DJ grid of ``audio_path`` from ``grid_from`` (a library: matched by location,
    then by file name and duration; ``serato``: the audio file's own tags)."""
    if grid_from == OWN_TAGS:
        return serato_tags.read(audio_path)
    if not os.path.exists(grid_from):
        raise DjGridError(f"{grid_from}: no such file (--grid-from takes {KINDS})")
    kind = kind_of(grid_from)
    if kind == "library":
        return find_track(cached_library(grid_from), audio_path, duration_s)
    if kind == "anlz":
        return rekordbox_anlz.read(grid_from)
    return serato_tags.read(grid_from)
