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

The grid editor (agent/map_api.py) adds edits of one map at a time: ``move_beat``,
``shift_grid``, ``set_downbeat``, ``regrid`` (a tapped tempo), ``split_section``,
``merge_sections``, ``set_section_role``. Each refuses what would break the map
(beats out of order, a split outside any section) with a BeatMapError and leaves the
base as it was. ``save_version`` stores the result as the next version (the previous
file kept as ``<name>.v<N>.json``, the history saying what, who and when), and ``undo``
restores the version before the last edit as a new version, so the trail keeps both.
"""

from __future__ import annotations

import copy
import datetime as dt
import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridcast.host.analysis.analyzer import global_tempo, local_tempo
from gridcast.host.beatmaps import beatmap
from gridcast.host.beatmaps.beatmap import ENVELOPE_BANDS, SECTION_ROLES, BeatMap, Section
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


# -- edits from the grid editor (agent/map_api.py) ----------------------------------------
# Each takes a map and returns a new one (the base is not modified), or raises
# BeatMapError saying why the edit is refused; ``save_version`` then stores it.

def check_order(beats: np.ndarray) -> None:
    """Refuse beats that are not strictly ascending as the file stores them (0.1 ms)."""
    steps = np.diff(np.round(beats, 4))
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise BeatMapError(f"beat {i + 1} would be at or after beat {i + 2} "
                           f"({beats[i]:.4f} s >= {beats[i + 1]:.4f} s): beats must "
                           "stay in order; move it less far or delete a beat first")


def _retime(out: BeatMap) -> BeatMap:
    """Tempo fields from the (edited) beats; refuses beats that are not ascending."""
    check_order(out.beats)
    out.tempo_curve_times = out.beats.copy()
    out.tempo_curve_bpm = local_tempo(out.beats, np.zeros(0))
    out.tempo_bpm = global_tempo(out.beats)
    return out


def move_beat(base: BeatMap, index: int, to_s: float) -> BeatMap:
    """Beat ``index`` (0-based) moved to ``to_s`` seconds; it must stay between its
    neighbours (an edit that would reorder beats is refused, the base kept)."""
    if not 0 <= index < len(base.beats):
        raise BeatMapError(f"no beat {index} (the map has {len(base.beats)} beats)")
    if not np.isfinite(to_s) or to_s < 0:
        raise BeatMapError(f"a beat cannot move to {to_s!r} s (times are >= 0)")
    out = copy.deepcopy(base)
    out.beats[index] = to_s
    return _retime(out)


def shift_grid(base: BeatMap, offset_ms: float) -> BeatMap:
    """Every beat and phrase start shifted by ``offset_ms`` (beats before 0 s are dropped)."""
    out = apply(base, Corrections(offset_ms=offset_ms))
    shifted = out.phrases + offset_ms / 1000.0
    out.phrases = shifted[shifted >= 0]
    return out


def set_downbeat(base: BeatMap, at_s: float, meter: int | None = None) -> BeatMap:
    """The beat nearest ``at_s`` becomes a downbeat; bars are renumbered from it."""
    if len(base.beats) == 0:
        raise BeatMapError("the map has no beats to put a downbeat on")
    return apply(base, Corrections(downbeat_at=at_s, meter=meter))


def regrid(base: BeatMap, tempo_bpm: float, anchor_s: float) -> BeatMap:
    """A constant-tempo grid (a tapped tempo) through the beat nearest ``anchor_s``, over
    the whole track; that beat keeps its place in the bar, the others follow the meter
    (a map without beats gets a grid with a downbeat at ``anchor_s``)."""
    if not 20 <= tempo_bpm <= 400:
        raise BeatMapError(f"tempo {tempo_bpm!r} BPM is out of range (20-400)")
    if not np.isfinite(anchor_s) or anchor_s < 0:
        raise BeatMapError(f"a tempo cannot be anchored at {anchor_s!r} s (times are >= 0)")
    out = copy.deepcopy(base)
    if len(base.beats) == 0:  # a map without beats: the grid starts a bar at anchor_s
        base = copy.deepcopy(base)
        base.beats, base.beat_in_bar = np.array([anchor_s]), np.ones(1, dtype=np.int64)
        base.beat_strength = np.ones(1)
    i = int(np.argmin(np.abs(base.beats - anchor_s)))
    anchor, period = float(base.beats[i]), 60.0 / tempo_bpm
    end = max(base.duration_s, float(base.beats[-1]))
    ks = np.arange(-int(anchor / period), int((end - anchor) / period) + 1)
    beats = anchor + ks * period
    beats = beats[(beats >= 0) & (beats <= end)]
    meter = out.meter or 4  # out still holds the original beats here
    k0 = int(np.argmin(np.abs(beats - anchor)))
    phase = int(base.beat_in_bar[i]) - 1
    out.beats = beats
    out.beat_in_bar = ((np.arange(len(beats)) - k0 + phase) % meter + 1).astype(np.int64)
    # Strength from the old beat nearest each new one: the accents stay where they were.
    nearest = np.clip(np.searchsorted(base.beats, beats), 0, len(base.beats) - 1)
    left = np.clip(nearest - 1, 0, len(base.beats) - 1)
    closer = np.where(np.abs(base.beats[left] - beats) < np.abs(base.beats[nearest] - beats),
                      left, nearest)
    out.beat_strength = base.beat_strength[closer].copy()
    return _retime(out)


def _energy(bm: BeatMap, start_s: float, end_s: float) -> float:
    """Mean band envelope over [start_s, end_s), 0..1 (the envelopes are per-track scaled)."""
    lo, hi = int(start_s * bm.envelope_rate_hz), int(end_s * bm.envelope_rate_hz)
    parts = [bm.envelopes[k][lo:max(hi, lo + 1)] for k in ENVELOPE_BANDS]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return float(np.clip(values.mean(), 0, 1)) if values.size else 0.0


def split_section(base: BeatMap, at_s: float) -> BeatMap:
    """The section holding ``at_s`` cut in two there (both keep its role). A map without
    sections gets two, 0..at_s and at_s..end, role ``other``."""
    out = copy.deepcopy(base)
    end = max(base.duration_s, float(base.beats[-1]) if len(base.beats) else 0.0)
    if not out.sections:
        if not 0 < at_s < end:
            raise BeatMapError(f"split at {at_s:.3f} s: outside the track (0-{end:.3f} s)")
        out.sections = [Section(0.0, at_s, "other", _energy(base, 0.0, at_s), "edit"),
                        Section(at_s, end, "other", _energy(base, at_s, end), "edit")]
        return out
    for i, sec in enumerate(out.sections):
        if sec.start_s < at_s < sec.end_s:
            first = Section(sec.start_s, at_s, sec.role, _energy(base, sec.start_s, at_s),
                            "edit")
            second = Section(at_s, sec.end_s, sec.role, _energy(base, at_s, sec.end_s), "edit")
            out.sections[i:i + 1] = [first, second]
            return out
    raise BeatMapError(f"split at {at_s:.3f} s: no section spans that time (split inside "
                       "a section, not on its edge)")


def merge_sections(base: BeatMap, index: int) -> BeatMap:
    """Section ``index`` and the next one become one (the first's role)."""
    if not 0 <= index < len(base.sections) - 1:
        raise BeatMapError(f"merge: no sections {index} and {index + 1} (the map has "
                           f"{len(base.sections)})")
    out = copy.deepcopy(base)
    a, b = out.sections[index], out.sections[index + 1]
    out.sections[index:index + 2] = [Section(a.start_s, b.end_s, a.role,
                                             _energy(base, a.start_s, b.end_s), "edit")]
    return out


def set_section_role(base: BeatMap, index: int, role: str) -> BeatMap:
    if not 0 <= index < len(base.sections):
        raise BeatMapError(f"no section {index} (the map has {len(base.sections)})")
    if role not in SECTION_ROLES:
        raise BeatMapError(f"unknown role {role!r}; use one of {', '.join(SECTION_ROLES)}")
    out = copy.deepcopy(base)
    sec = out.sections[index]
    out.sections[index] = Section(sec.start_s, sec.end_s, role, sec.energy, "edit")
    return out


# -- versions on disk ------------------------------------------------------------------------

def kept_version_path(path: str, version: int) -> str | None:
    """Where version ``version`` of the map at ``path`` was kept, or None (the newest
    copy when a version number was kept twice)."""
    root, ext = os.path.splitext(path)
    candidates = [p for p in glob.glob(f"{glob.escape(root)}.v{version}*{ext}")
                  if re.fullmatch(rf"\.v{version}(-\d+)?", p[len(root):-len(ext) or None])]
    return max(candidates, key=os.path.getmtime) if candidates else None


def save_version(path: str, current: BeatMap, edited: BeatMap, change: str,
                 edits: dict[str, Any], by: str) -> BeatMap:
    """Store ``edited`` as version ``current.version + 1`` at ``path``: the history gets
    ``{version, change, edits, by, created_at}``, the previous file is kept as
    ``<name>.v<N>.<ext>`` (as analysis does), and the swap is atomic. Beats out of order
    raise BeatMapError and nothing is written."""
    from gridcast.host.library.batch import _kept_version_path

    check_order(edited.beats)  # every edit: a map that would not load is never written
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    edited.version = current.version + 1
    edited.history = [*current.history, {"version": edited.version, "change": change,
                                         "edits": edits, "by": by, "created_at": now}]
    staged = path + ".new"
    beatmap.save(edited, staged, beatmap.format_for(path))
    if os.path.exists(path):
        os.replace(path, _kept_version_path(path, current.version))
    os.replace(staged, path)
    return edited


def undo_target(bm: BeatMap) -> int:
    """The version an undo restores: the one before the newest edit not yet undone."""
    entries = {e.get("version"): e for e in bm.history if isinstance(e, dict)}
    version = bm.version
    while entries.get(version, {}).get("change") == "undo":
        version = int(entries[version]["edits"]["restores"])
    if version <= 1:
        raise BeatMapError(f"nothing to undo: version {bm.version} is the map as first made")
    return version - 1


def undo(path: str, current: BeatMap, by: str) -> BeatMap:
    """A new version equal to the one before the last edit (the trail keeps both)."""
    target = undo_target(current)
    kept = kept_version_path(path, target)
    if kept is None:
        raise BeatMapError(f"{path}: version {target} is not kept beside the map "
                           f"(no {os.path.splitext(path)[0]}.v{target} file), so it cannot "
                           "be restored")
    restored = beatmap.load(kept)
    return save_version(path, current, restored, "undo",
                        {"restores": target, "undoes": current.version}, by)
