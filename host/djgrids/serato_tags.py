"""Serato's tags in the audio file: ``Serato BeatGrid`` and ``Serato Markers2``.

Written from the reverse-engineered layout (Holzhaus/serato-tags, docs/):

- MP3 and AIFF: ID3 GEOB frames with those descriptions; FLAC: the Vorbis comments
  ``SERATO_BEATGRID`` / ``SERATO_MARKERS_V2``; MP4: ``----:com.serato.dj:beatgrid`` /
  ``markersv2``. FLAC and MP4 values are base64 (no padding, newlines every 72
  characters) of ``application/octet-stream\\0\\0<name>\\0<the GEOB payload>``.
- BeatGrid: ``01 00``, u32 number of markers, then 8 bytes a marker: f32 position (s)
  and u32 beats to the next marker, except the last: f32 position and f32 BPM; one
  footer byte. All big-endian.
- Markers2: ``01 01`` then base64 (newlines every 72 characters, sometimes one
  character too long) of ``01 01`` and entries ``NAME\\0``, u32 length, data:
  ``CUE`` (index u8 at 1, position u32 ms at 2, RGB at 7, name from 12, NUL-ended),
  ``LOOP`` (index at 1, start ms at 2, end ms at 6, name from 19), ``COLOR``, ``BPMLOCK``.

The tags are read with mutagen (the ``dj`` extra).
"""

from __future__ import annotations

import base64
import binascii
import struct

from gridcast.host.beatmaps.beatmap import Cue
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack, TempoMarker, check_marker
from gridcast.host.extras import require

FORMAT = "serato"
BEATGRID = "Serato BeatGrid"
MARKERS2 = "Serato Markers2"
_VORBIS = {BEATGRID: "SERATO_BEATGRID", MARKERS2: "SERATO_MARKERS_V2"}
_MP4 = {BEATGRID: "----:com.serato.dj:beatgrid", MARKERS2: "----:com.serato.dj:markersv2"}
_ENVELOPE_PREFIX = b"application/octet-stream\x00\x00"


def parse_beatgrid(data: bytes, where: str) -> list[TempoMarker]:
    """Tempo markers from a ``Serato BeatGrid`` payload; beats between two markers are
    spread evenly (the BPM of a non-terminal marker follows from the next one)."""
    if len(data) < 6 or data[:2] != b"\x01\x00":
        raise DjGridError(f"{where}: Serato BeatGrid has an unknown header "
                          f"{data[:2].hex(' ') or 'none'} (expected 01 00)")
    (count,) = struct.unpack(">I", data[2:6])
    if count == 0:
        return []
    if len(data) < 6 + 8 * count:
        raise DjGridError(f"{where}: Serato BeatGrid says {count} markers but holds "
                          f"{(len(data) - 6) // 8}")
    raw = [data[6 + 8 * i:14 + 8 * i] for i in range(count)]
    positions = [struct.unpack(">f", r[:4])[0] for r in raw]
    markers: list[TempoMarker] = []
    beat = 1
    for i in range(count):
        if i + 1 < count:
            (n_beats,) = struct.unpack(">I", raw[i][4:])
            span = positions[i + 1] - positions[i]
            if n_beats == 0 or span <= 0:
                raise DjGridError(f"{where}: Serato BeatGrid marker {i} spans {n_beats} "
                                  f"beats in {span:.3f} s")
            bpm = 60.0 * n_beats / span
        else:
            (bpm,) = struct.unpack(">f", raw[i][4:])
            n_beats = 0
        marker = TempoMarker(time_s=float(positions[i]), bpm=float(bpm), beat=beat)
        check_marker(marker, where)
        markers.append(marker)
        beat = (beat - 1 + n_beats) % 4 + 1
    return markers


def _b64decode(text: bytes) -> bytes:
    text = bytes(c for c in text if c not in b"\n\r\x00 ")
    if len(text) % 4 == 1:
        text += b"A"  # Serato sometimes writes one character too many (see the module doc)
    return base64.b64decode(text + b"=" * (-len(text) % 4))


def parse_markers2(data: bytes, where: str) -> list[Cue]:
    """Hot cues and loops from a ``Serato Markers2`` payload."""
    if data[:2] != b"\x01\x01":
        raise DjGridError(f"{where}: Serato Markers2 has an unknown header "
                          f"{data[:2].hex(' ') or 'none'} (expected 01 01)")
    end = data.find(b"\x00", 2)
    try:
        body = _b64decode(data[2:end if end >= 0 else len(data)])
    except (binascii.Error, ValueError) as exc:
        raise DjGridError(f"{where}: Serato Markers2 is not valid base64 ({exc})") from exc
    if body[:2] != b"\x01\x01":
        raise DjGridError(f"{where}: Serato Markers2 content has an unknown version "
                          f"{body[:2].hex(' ')}")
    cues: list[Cue] = []
    i = 2
    while i < len(body) and body[i] != 0:
        name_end = body.find(b"\x00", i)
        if name_end < 0 or name_end + 5 > len(body):
            break  # a truncated entry: keep what came before it
        name = body[i:name_end].decode("ascii", "replace")
        (length,) = struct.unpack(">I", body[name_end + 1:name_end + 5])
        entry = body[name_end + 5:name_end + 5 + length]
        i = name_end + 5 + length
        if name == "CUE" and len(entry) >= 12:
            (pos_ms,) = struct.unpack(">I", entry[2:6])
            cues.append(Cue(time_s=pos_ms / 1000.0, name=_cstring(entry[12:]), kind="hot",
                            color="#" + entry[7:10].hex()))
        elif name == "LOOP" and len(entry) >= 19:
            start_ms, end_ms = struct.unpack(">II", entry[2:10])
            if end_ms > start_ms:
                cues.append(Cue(time_s=start_ms / 1000.0, name=_cstring(entry[19:]),
                                kind="loop", end_s=end_ms / 1000.0))
    return sorted(cues, key=lambda c: c.time_s)


def _cstring(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].decode("utf-8", "replace")


def _unwrap(value: bytes | str, tag: str, where: str) -> bytes:
    """FLAC / MP4 values: base64 of ``application/octet-stream\\0\\0<tag>\\0<payload>``."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    try:
        decoded = _b64decode(raw)
    except (binascii.Error, ValueError) as exc:
        raise DjGridError(f"{where}: {tag} is not valid base64 ({exc})") from exc
    head = _ENVELOPE_PREFIX + tag.encode() + b"\x00"
    return decoded[len(head):] if decoded.startswith(head) else decoded


def read_payloads(path: str) -> dict[str, bytes]:
    """The raw ``Serato BeatGrid`` / ``Serato Markers2`` payloads found in ``path``."""
    require("mutagen", "reading Serato tags")
    import mutagen

    try:
        audio = mutagen.File(path)
    except (mutagen.MutagenError, OSError) as exc:
        raise DjGridError(f"{path}: cannot read its tags ({exc})") from exc
    if audio is None or audio.tags is None:
        return {}
    tags = audio.tags
    out: dict[str, bytes] = {}
    for tag in (BEATGRID, MARKERS2):
        if hasattr(tags, "getall"):  # ID3 (MP3, AIFF, WAV)
            frames = tags.getall(f"GEOB:{tag}")
            if frames:
                out[tag] = bytes(frames[0].data)
        elif _VORBIS[tag] in tags or _VORBIS[tag].lower() in tags:
            values = tags.get(_VORBIS[tag]) or tags.get(_VORBIS[tag].lower())
            out[tag] = _unwrap(values[0], tag, path)
        elif _MP4[tag] in tags:
            out[tag] = _unwrap(bytes(tags[_MP4[tag]][0]), tag, path)
    return out


def read(path: str) -> DjTrack:
    """The grid and cues Serato stored in the audio file at ``path``."""
    payloads = read_payloads(path)
    if BEATGRID not in payloads:
        raise DjGridError(f"{path}: no Serato BeatGrid tag (analyze the track in Serato, or "
                          "give a rekordbox or Traktor library with --grid-from)")
    track = DjTrack(source_format=FORMAT, source_file=path, location=path,
                    markers=parse_beatgrid(payloads[BEATGRID], path))
    if not track.markers:
        raise DjGridError(f"{path}: the Serato BeatGrid tag holds no marker")
    if MARKERS2 in payloads:
        try:
            track.cues = parse_markers2(payloads[MARKERS2], path)
        except DjGridError as exc:
            track.notes.append(f"cues skipped: {exc}")
    return track


def build_beatgrid(markers: list[tuple[float, int]], last: tuple[float, float]) -> bytes:
    """A ``Serato BeatGrid`` payload: ``markers`` as (position s, beats to the next),
    ``last`` as (position s, BPM). Used by tests and to write grids back."""
    out = b"\x01\x00" + struct.pack(">I", len(markers) + 1)
    for pos, beats in markers:
        out += struct.pack(">fI", pos, beats)
    return out + struct.pack(">ff", *last) + b"\x00"


def build_markers2(cues: list[Cue]) -> bytes:
    """A ``Serato Markers2`` payload with these hot cues (and loops)."""
    body = b"\x01\x01" + b"COLOR\x00" + struct.pack(">I", 4) + b"\x00\xff\xff\xff"
    for index, cue in enumerate(cues):
        name = cue.name.encode() + b"\x00"
        rgb = bytes.fromhex(cue.color[1:]) if len(cue.color) == 7 else b"\xcc\x00\x00"
        if cue.kind == "loop" and cue.end_s is not None:
            data = (b"\x00" + bytes([index]) + struct.pack(">II", round(cue.time_s * 1000),
                                                           round(cue.end_s * 1000))
                    + b"\xff\xff\xff\xff\x00\x27\xaa\xe1\x00" + name)
            body += b"LOOP\x00" + struct.pack(">I", len(data)) + data
        else:
            data = (b"\x00" + bytes([index]) + struct.pack(">I", round(cue.time_s * 1000))
                    + b"\x00" + rgb + b"\x00\x00" + name)
            body += b"CUE\x00" + struct.pack(">I", len(data)) + data
    encoded = base64.b64encode(body + b"\x00").rstrip(b"=")
    lines = b"\n".join(encoded[i:i + 72] for i in range(0, len(encoded), 72))
    return b"\x01\x01" + lines + b"\x00"
