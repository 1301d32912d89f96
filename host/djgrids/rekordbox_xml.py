"""rekordbox XML collections (File > Export Collection in xml format): grids and cues.

The layout (rekordbox's "XML format list"): ``DJ_PLAYLISTS Version="1.0.0"`` >
``COLLECTION`` > ``TRACK`` (TrackID, Name, Artist, TotalTime in s, Location as a
file URL) with ``TEMPO`` children (Inizio: start s, Bpm, Metro "4/4", Battito: the
marker's beat in its bar) and ``POSITION_MARK`` children (Name, Type 0 cue / 4 loop,
Start and End in s, Num -1 memory or 0-7 hot cue, Red/Green/Blue). rekordbox writes one
TEMPO per tempo change, so a variable grid has many.

Read with the standard library's incremental parser: a file that breaks off or turns
malformed halfway still gives every track before the damage, and a track whose values
are wrong is reported alone.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack, TempoMarker, check_marker
from gridcast.host.djgrids.library import Library, Unreadable, path_from_file_url

FORMAT = "rekordbox-xml"
KNOWN_VERSIONS = ("1.0.0",)
CUE_TYPE_LOOP = "4"
# Cue and loop; the fade-in (1), fade-out (2) and load (3) marks are not cues.
CUE_TYPES_READ = ("0", "4")


def read(path: str) -> Library:
    """Every track of the collection at ``path`` that can be read; the others reported."""
    lib = Library(path=path, source_format=FORMAT)
    stack: list[str] = []
    seen_root = False
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                stack.append(elem.tag)
                if len(stack) == 1:
                    seen_root = True
                    _check_root(elem, lib)
                continue
            stack.pop()
            if elem.tag == "TRACK" and stack[-1:] == ["COLLECTION"]:
                _read_track(elem, lib)
                elem.clear()  # a large collection is read in constant memory
            elif elem.tag == "COLLECTION":
                elem.clear()
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 0
        if not seen_root:
            raise DjGridError(f"{path}: not a rekordbox XML collection ({exc}); export it "
                              "again from rekordbox (File > Export Collection in xml format)"
                              ) from exc
        lib.unreadable.append(Unreadable("", "library", f"malformed XML at line {line} ({exc}): "
                                         "tracks after it could not be read"))
    except OSError as exc:
        raise DjGridError(f"{path}: cannot read the collection ({exc.strerror})") from exc
    return lib


def _check_root(elem: ET.Element, lib: Library) -> None:
    if elem.tag != "DJ_PLAYLISTS":
        raise DjGridError(f"{lib.path}: not a rekordbox XML collection (the root is "
                          f"<{elem.tag}>, expected <DJ_PLAYLISTS>)")
    lib.version = elem.get("Version", "")
    if lib.version not in KNOWN_VERSIONS:
        lib.warnings.append(f"{lib.path}: unknown rekordbox XML version {lib.version!r} "
                            f"(gridcast knows {', '.join(KNOWN_VERSIONS)}): reading what it "
                            "can")


def _number(elem: ET.Element, name: str, where: str, default: float | None = None) -> float:
    raw = elem.get(name)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise DjGridError(f"{where}: <{elem.tag}> has no {name}")
    try:
        return float(raw)
    except ValueError:
        raise DjGridError(f"{where}: <{elem.tag}> {name}={raw!r} is not a number") from None


def _read_track(elem: ET.Element, lib: Library) -> None:
    track_id = elem.get("TrackID", "")
    track = DjTrack(source_format=FORMAT, source_file=lib.path, track_id=track_id,
                    title=elem.get("Name", ""), artist=elem.get("Artist", ""),
                    location=path_from_file_url(elem.get("Location", "")))
    where = f"{lib.path}: track {track_id or '?'} ({track.describe()})"
    try:
        track.duration_s = _number(elem, "TotalTime", where, 0.0)
        for tempo in elem.iter("TEMPO"):
            track.markers.append(_marker(tempo, where))
        for mark in elem.iter("POSITION_MARK"):
            cue = _cue(mark, where)
            if cue is not None:
                track.cues.append(cue)
    except DjGridError as exc:
        lib.unreadable.append(Unreadable(track_id, track.describe(), str(exc)))
        return
    if not track.markers:
        lib.unreadable.append(Unreadable(track_id, track.describe(),
                                         f"{where}: no beat grid (not analyzed in rekordbox)"))
        return
    track.cues.sort(key=lambda c: c.time_s)
    lib.tracks.append(track)


def _marker(tempo: ET.Element, where: str) -> TempoMarker:
    metro = tempo.get("Metro", "4/4")
    try:
        meter = int(metro.split("/")[0])
    except ValueError:
        raise DjGridError(f"{where}: <TEMPO> Metro={metro!r} is not a time signature") from None
    marker = TempoMarker(time_s=_number(tempo, "Inizio", where),
                         bpm=_number(tempo, "Bpm", where),
                         beat=int(_number(tempo, "Battito", where, 1.0)), meter=meter)
    check_marker(marker, where)
    return marker


def _cue(mark: ET.Element, where: str) -> Cue | None:
    kind_code = mark.get("Type", "0")
    if kind_code not in CUE_TYPES_READ:
        return None
    start = _number(mark, "Start", where)
    num = int(_number(mark, "Num", where, -1.0))
    end = _number(mark, "End", where, -1.0)
    is_loop = kind_code == CUE_TYPE_LOOP and end > start
    color = ""
    if all(mark.get(c) not in (None, "") for c in ("Red", "Green", "Blue")):
        rgb = [int(_number(mark, c, where)) & 0xFF for c in ("Red", "Green", "Blue")]
        color = "#{:02x}{:02x}{:02x}".format(*rgb)
    kind = "loop" if is_loop else ("hot" if num >= 0 else "memory")
    return Cue(time_s=start, name=mark.get("Name", ""), kind=kind, color=color,
               end_s=end if is_loop else None)
