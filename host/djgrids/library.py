"""What reading a whole DJ library gives: the tracks that could be read, and the others
with the reason each could not."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from gridcast.host.djgrids.grid import DjTrack


@dataclass(frozen=True)
class Unreadable:
    """A track (or a part of the library) that could not be read, and why."""

    track_id: str
    what: str  # the track's name or location, or "library"
    reason: str


@dataclass
class Library:
    """A DJ library file as read: ``tracks`` usable, ``unreadable`` reported, ``warnings``
    about the file itself (an unknown version, a truncated end)."""

    path: str
    source_format: str
    version: str = ""
    tracks: list[DjTrack] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def path_from_file_url(url: str) -> str:
    """``file://localhost/Users/me/a%20b.mp3`` -> ``/Users/me/a b.mp3``; Windows drive
    paths (``file://localhost/C:/Music/x.mp3``) keep their drive (``C:/Music/x.mp3``)."""
    if not url:
        return ""
    if url.startswith("file://"):
        rest = url[len("file://"):]
        rest = rest[len("localhost"):] if rest.startswith("localhost") else rest
    else:
        rest = url
    path = urllib.parse.unquote(rest)
    while path.startswith("//"):  # pyrekordbox writes file://localhost//Users/...
        path = path[1:]
    if len(path) > 3 and path[0] == "/" and path[2] == ":" and path[1].isalpha():
        path = path[1:]
    return path


def file_url_from_path(path: str) -> str:
    """The inverse of :func:`path_from_file_url`, as rekordbox writes it."""
    path = path.replace("\\", "/")
    if len(path) > 1 and path[1] == ":":
        path = "/" + path
    return "file://localhost" + urllib.parse.quote(path, safe="/:")
