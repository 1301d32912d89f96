"""Manual corrections to a beat map, recorded as a new version.

A correction never edits a map in place: it returns a new BeatMap whose
``version`` is one higher and whose ``history`` says exactly what changed.
The override file (JSON) may hold these keys, all optional:

    {"offset_ms": 12.5,          shift every beat (positive = later)
     "tempo_bpm": 128,           tempo hint: analyze again near this tempo
     "delete_beats": [12.34],    remove the beat nearest each time (within 70 ms)
     "add_beats": [13.02],       insert beats at these times
     "meter": 3,                 beats per bar
     "downbeat_at": 1.92}        the beat nearest this time becomes a downbeat
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridcast.host.analysis.analyzer import global_tempo, local_tempo
from gridcast.host.beatmaps.beatmap import BeatMap
from gridcast.host.errors import BeatMapError

MATCH_WINDOW_S = 0.070
ALLOWED_KEYS = ("offset_ms", "tempo_bpm", "delete_beats", "add_beats", "meter", "downbeat_at")


@dataclass(frozen=True)
class Corrections:
    offset_ms: float = 0.0
    tempo_bpm: float | None = None
    delete_beats: tuple[float, ...] = ()
    add_beats: tuple[float, ...] = ()
    meter: int | None = None
    downbeat_at: float | None = None
    source: str = field(default="", compare=False)

    def is_empty(self) -> bool:
        return self == Corrections()

    def edits(self) -> dict[str, Any]:
        """What this correction changes, as stored in the map's history."""
        out: dict[str, Any] = {}
        for key in ALLOWED_KEYS:
            value = getattr(self, key)
            if value not in (None, 0.0, ()):
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def merged(self, other: Corrections) -> Corrections:
        """``other``'s values win where set (command-line flags over a file)."""
        values = {k: getattr(self, k) for k in ALLOWED_KEYS}
        for k in ALLOWED_KEYS:
            if getattr(other, k) not in (None, 0.0, ()):
                values[k] = getattr(other, k)
        return Corrections(**values, source=other.source or self.source)


def load_override_file(path: str) -> Corrections:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise BeatMapError(f"{path}: cannot read override file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise BeatMapError(f"{path}: override file is not valid JSON: {exc.msg} at line "
                           f"{exc.lineno} column {exc.colno}") from exc
    return parse_overrides(data, path)


def parse_overrides(data: Any, source: str) -> Corrections:
    if not isinstance(data, dict):
        raise BeatMapError(f"{source}: override file must hold a JSON object, "
                           f"got {type(data).__name__}")
    unknown = sorted(set(data) - set(ALLOWED_KEYS))
    if unknown:
        raise BeatMapError(f"{source}: unknown key {unknown[0]!r} in override file "
                           f"(allowed: {', '.join(ALLOWED_KEYS)})")

    def number(key: str, lo: float, hi: float) -> float | None:
        v = data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise BeatMapError(f"{source}: `{key}` must be a number in [{lo}, {hi}], got {v!r}")
        return float(v)

    def times(key: str) -> tuple[float, ...]:
        v = data.get(key, [])
        if not isinstance(v, list):
            raise BeatMapError(f"{source}: `{key}` must be a list of times in seconds")
        for i, t in enumerate(v):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0:
                raise BeatMapError(f"{source}: `{key}[{i}]` must be a time >= 0 s, got {t!r}")
        return tuple(float(t) for t in v)

    meter = number("meter", 1, 16)
    if meter is not None and meter != int(meter):
        raise BeatMapError(f"{source}: `meter` must be a whole number of beats, got {meter}")
    return Corrections(
        offset_ms=number("offset_ms", -2000, 2000) or 0.0,
        tempo_bpm=number("tempo_bpm", 20, 400),
        delete_beats=times("delete_beats"),
        add_beats=times("add_beats"),
        meter=int(meter) if meter is not None else None,
        downbeat_at=number("downbeat_at", 0, 1e6),
        source=source,
    )


def apply(base: BeatMap, corr: Corrections) -> BeatMap:
    """The corrected map (beat edits, offset, bar phase); ``base`` is not modified."""
    out = copy.deepcopy(base)
    beats, bib, strength = out.beats.copy(), out.beat_in_bar.copy(), out.beat_strength.copy()
    for t in corr.delete_beats:
        if len(beats) == 0:
            break
        i = int(np.argmin(np.abs(beats - t)))
        if abs(beats[i] - t) > MATCH_WINDOW_S:
            raise BeatMapError(f"{corr.source or 'correction'}: no beat within 70 ms of "
                               f"{t:.3f} s to delete (nearest at {beats[i]:.3f} s)")
        beats, bib, strength = np.delete(beats, i), np.delete(bib, i), np.delete(strength, i)
    if corr.add_beats:
        beats = np.r_[beats, corr.add_beats]
        strength = np.r_[strength, np.full(len(corr.add_beats), 0.5)]
        order = np.argsort(beats, kind="stable")
        beats, strength = beats[order], strength[order]
        bib = np.zeros(len(beats), dtype=np.int64)  # re-derived below
    beats = beats + corr.offset_ms / 1000.0
    keep = beats >= 0
    beats, strength = beats[keep], strength[keep]
    meter = corr.meter or (base.meter if base.meter > 0 else 4)
    if corr.meter or corr.downbeat_at is not None or corr.add_beats or len(bib) != len(beats):
        anchor = 0
        if corr.downbeat_at is not None and len(beats):
            anchor = int(np.argmin(np.abs(beats - corr.downbeat_at)))
        elif len(base.downbeats) and len(beats):
            anchor = int(np.argmin(np.abs(beats - base.downbeats[0])))
        bib = (np.arange(len(beats)) - anchor) % meter + 1
    else:
        bib = bib[keep]
    out.beats, out.beat_in_bar, out.beat_strength = beats, bib.astype(np.int64), strength
    out.tempo_curve_times = beats
    out.tempo_curve_bpm = local_tempo(beats, np.zeros(0))
    out.tempo_bpm = global_tempo(beats)
    return out
