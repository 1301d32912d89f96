"""BeatMap -> bundle: the host's side of protocol.bundle_builder."""

from __future__ import annotations

import datetime as dt
import os
import re

from gridcast.host.beatmaps.beatmap import BeatMap
from gridcast.protocol import bundle_format
from gridcast.protocol.bundle_builder import BundleSource

_TRACK_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def default_track_id(bm: BeatMap) -> str:
    """The audio file's name without extension, reduced to [A-Za-z0-9._-], max 64."""
    stem = os.path.splitext(str(bm.metadata.get("audio_file", "")))[0]
    name = _TRACK_ID_CHARS.sub("-", stem).strip("-")[:64]
    return name or str(bm.metadata.get("audio_sha256", "track"))[:16]


def created_seconds(bm: BeatMap) -> int:
    """The map's own creation time, so that the same map always gives the same bundle."""
    text = bm.metadata.get("created_at")
    if not isinstance(text, str):
        return 0
    try:
        return int(dt.datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def source_from_map(bm: BeatMap, track_id: str | None = None,
                    min_firmware: str = "0.1.0") -> BundleSource:
    sha_hex = str(bm.metadata.get("audio_sha256", ""))
    sha = bytes.fromhex(sha_hex) if len(sha_hex) == 64 else bytes(32)
    duration = max(bm.duration_s, float(bm.beats[-1]) if len(bm.beats) else 0.0)
    end_us = round(duration * 1e6)
    sections = [s for s in bm.sections  # those that keep a microsecond inside the track
                if s.start_s >= 0.0 and round(s.start_s * 1e6) < min(round(s.end_s * 1e6), end_us)]
    return BundleSource(
        track_id=track_id or default_track_id(bm),
        audio_sha256=sha,
        bundle_version=bm.version,
        created_s=created_seconds(bm),
        duration_s=duration,
        tempo_bpm=bm.tempo_bpm,
        beats_s=bm.beats,
        beat_in_bar=bm.beat_in_bar,
        strength=bm.beat_strength,
        envelope_rate_hz=bm.envelope_rate_hz,
        envelopes=(bm.envelopes["bass"], bm.envelopes["mid"], bm.envelopes["high"]),
        min_firmware=bundle_format.version_to_int(min_firmware),
        # Structure: sections clipped to the track (an imported grid may overrun it).
        section_starts_s=[min(s.start_s, duration) for s in sections],
        section_ends_s=[min(s.end_s, duration) for s in sections],
        section_roles=[s.role for s in sections],
        section_energy=[s.energy for s in sections],
        phrases_s=[float(t) for t in bm.phrases if 0.0 <= t <= duration],
    )
