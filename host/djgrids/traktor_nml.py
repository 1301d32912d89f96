"""Traktor collections (collection.nml): grid markers, tempo and cues.

``NML VERSION="19"`` > ``COLLECTION`` > ``ENTRY`` (TITLE, ARTIST) with ``LOCATION``
(VOLUME, DIR with ``/:`` between folders, FILE), ``INFO`` (PLAYTIME_FLOAT in s),
``TEMPO BPM`` (the track's tempo) and ``CUE_V2`` marks (START and LEN in ms, TYPE 0 cue,
4 grid marker, 5 loop; HOTCUE -1 for none). A grid marker (TYPE 4) sits on a downbeat
and may carry its own ``GRID BPM``; several grid markers make a variable grid.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack, TempoMarker, check_marker
from gridcast.host.djgrids.library import Library, Unreadable

FORMAT = "traktor-nml"
KNOWN_VERSIONS = tuple(str(v) for v in range(14, 21))  # Traktor 2.6 .. 3.x
TYPE_CUE, TYPE_GRID, TYPE_LOOP = "0", "4", "5"


def read(path: str) -> Library:
    """Every entry of the collection at ``path`` that can be read; the others reported."""
    lib = Library(path=path, source_format=FORMAT)
    stack: list[str] = []
    index = 0
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                stack.append(elem.tag)
                if len(stack) == 1:
                    _check_root(elem, lib)
                continue
            stack.pop()
            if elem.tag == "ENTRY" and stack[-1:] == ["COLLECTION"]:
                index += 1
                _read_entry(elem, str(index), lib)
                elem.clear()
    except ET.ParseError as exc:
        if not stack and index == 0 and not lib.version:
            raise DjGridError(f"{path}: not a Traktor collection ({exc}); export it again "
                              "from Traktor") from exc
        lib.unreadable.append(Unreadable("", "library", f"malformed XML ({exc}): entries "
                                         "after it could not be read"))
    except OSError as exc:
        raise DjGridError(f"{path}: cannot read the collection ({exc.strerror})") from exc
    return lib


def _check_root(elem: ET.Element, lib: Library) -> None:
    if elem.tag != "NML":
        raise DjGridError(f"{lib.path}: not a Traktor collection (the root is <{elem.tag}>, "
                          "expected <NML>)")
    lib.version = elem.get("VERSION", "")
    if lib.version not in KNOWN_VERSIONS:
        lib.warnings.append(f"{lib.path}: unknown NML version {lib.version!r} (gridcast knows "
                            f"{KNOWN_VERSIONS[0]}-{KNOWN_VERSIONS[-1]}): reading what it can")


def location_path(loc: ET.Element | None) -> str:
    """The audio file's path from a ``LOCATION``: ``C:`` + folders on Windows, folders from
    the root elsewhere (other macOS volumes are found by file name + duration)."""
    if loc is None:
        return ""
    folders = loc.get("DIR", "").replace("/:", "/")
    volume = loc.get("VOLUME", "")
    prefix = volume if volume.endswith(":") else ""
    return prefix + folders + loc.get("FILE", "")


def _float(elem: ET.Element, name: str, where: str, default: float | None = None) -> float:
    raw = elem.get(name)
    if raw in (None, ""):
        if default is None:
            raise DjGridError(f"{where}: <{elem.tag}> has no {name}")
        return default
    try:
        return float(str(raw))
    except ValueError:
        raise DjGridError(f"{where}: <{elem.tag}> {name}={raw!r} is not a number") from None


def _read_entry(elem: ET.Element, index: str, lib: Library) -> None:
    track = DjTrack(source_format=FORMAT, source_file=lib.path, track_id=index,
                    title=elem.get("TITLE", ""), artist=elem.get("ARTIST", ""),
                    location=location_path(elem.find("LOCATION")))
    where = f"{lib.path}: entry {index} ({track.describe()})"
    try:
        info = elem.find("INFO")
        if info is not None:
            track.duration_s = _float(info, "PLAYTIME_FLOAT", where,
                                      _float(info, "PLAYTIME", where, 0.0))
        tempo = elem.find("TEMPO")
        track_bpm = _float(tempo, "BPM", where, 0.0) if tempo is not None else 0.0
        for cue in elem.iter("CUE_V2"):
            kind = cue.get("TYPE", TYPE_CUE)
            start_s = _float(cue, "START", where) / 1000.0
            if kind == TYPE_GRID:
                grid = cue.find("GRID")
                bpm = _float(grid, "BPM", where, track_bpm) if grid is not None else track_bpm
                if bpm <= 0:
                    raise DjGridError(f"{where}: grid marker at {start_s:.3f} s has no tempo")
                marker = TempoMarker(time_s=start_s, bpm=bpm)
                check_marker(marker, where)
                track.markers.append(marker)
            elif kind in (TYPE_CUE, TYPE_LOOP):
                track.cues.append(_cue(cue, start_s, kind, where))
    except DjGridError as exc:
        lib.unreadable.append(Unreadable(index, track.describe(), str(exc)))
        return
    if not track.markers:
        lib.unreadable.append(Unreadable(index, track.describe(),
                                         f"{where}: no grid marker (not analyzed in Traktor)"))
        return
    track.markers.sort(key=lambda m: m.time_s)
    track.cues.sort(key=lambda c: c.time_s)
    lib.tracks.append(track)


def _cue(cue: ET.Element, start_s: float, kind: str, where: str) -> Cue:
    length_s = _float(cue, "LEN", where, 0.0) / 1000.0
    is_loop = kind == TYPE_LOOP and length_s > 0
    hot = int(_float(cue, "HOTCUE", where, -1.0)) >= 0
    color = cue.get("COLOR", "")
    return Cue(time_s=start_s, name=cue.get("NAME", "") if cue.get("NAME") != "n.n." else "",
               kind="loop" if is_loop else ("hot" if hot else "memory"),
               color=color.lower() if color.startswith("#") and len(color) == 7 else "",
               end_s=start_s + length_s if is_loop else None)
