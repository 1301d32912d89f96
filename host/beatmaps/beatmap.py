"""The BeatMap: what analysis produces and every later step consumes.

Stored as JSON (readable; the default) or msgpack, both from the same plain
dictionary; the layout is documented in docs/beatmap.md. Files are written
atomically (temporary file + rename), so a failed run never leaves a
half-written map in place of a good one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from gridcast.host.atomic_file import write_atomically
from gridcast.host.errors import BeatMapError

FORMAT = "gridcast.beatmap"
FORMAT_VERSION = 1
ENVELOPE_BANDS = ("bass", "mid", "high")
# Roles a section can take; `other` when nothing fits (or a DJ tool's label is unknown).
SECTION_ROLES = ("intro", "verse", "buildup", "drop", "chorus", "break", "bridge", "outro",
                 "other")
CUE_KINDS = ("hot", "memory", "loop")


def _rounded(values: Any, digits: int) -> list[float]:
    """Plain floats rounded to ``digits`` decimals (numpy: a 10-minute map's envelopes
    are ~90,000 numbers)."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


@dataclass
class Section:
    """A stretch of the track with one role, from `start_s` to `end_s` (seconds).

    `energy` is 0..1 (the section's loudness against the track's); `source` says
    who placed it: "analysis", "rekordbox", "traktor", "serato" or "edit".
    """

    start_s: float
    end_s: float
    role: str
    energy: float
    source: str = "analysis"

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(float(self.start_s), 4), "end_s": round(float(self.end_s), 4),
                "role": self.role, "energy": round(float(self.energy), 3),
                "source": self.source}


@dataclass
class Cue:
    """A DJ cue point at `time_s` (seconds); loops also have `end_s`."""

    time_s: float
    name: str = ""
    kind: str = "memory"
    color: str = ""  # "#rrggbb" or empty
    end_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"time_s": round(float(self.time_s), 4), "name": self.name,
                             "kind": self.kind, "color": self.color}
        if self.end_s is not None:
            d["end_s"] = round(float(self.end_s), 4)
        return d


@dataclass
class BeatMap:
    beats: np.ndarray  # seconds, ascending
    beat_in_bar: np.ndarray  # 1 = downbeat
    beat_strength: np.ndarray  # [0, 1]
    tempo_bpm: float
    tempo_curve_times: np.ndarray  # seconds
    tempo_curve_bpm: np.ndarray
    envelope_rate_hz: float
    envelopes: dict[str, np.ndarray]  # bass / mid / high in [0, 1]
    metadata: dict[str, Any]
    version: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Structure (optional; empty when not analyzed or imported).
    phrases: np.ndarray = field(default_factory=lambda: np.zeros(0))  # phrase starts, seconds
    sections: list[Section] = field(default_factory=list)  # ordered, non-overlapping
    cues: list[Cue] = field(default_factory=list)

    @property
    def meter(self) -> int:
        return int(self.beat_in_bar.max()) if len(self.beat_in_bar) else 0

    @property
    def downbeats(self) -> np.ndarray:
        return self.beats[self.beat_in_bar == 1]

    @property
    def duration_s(self) -> float:
        return float(self.metadata.get("duration_s", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "tempo_bpm": round(float(self.tempo_bpm), 3),
            "meter": self.meter,
            "beats": _rounded(self.beats, 4),
            "beat_in_bar": np.asarray(self.beat_in_bar, dtype=np.int64).tolist(),
            "beat_strength": _rounded(self.beat_strength, 3),
            "tempo_curve": {
                "times": _rounded(self.tempo_curve_times, 4),
                "bpm": _rounded(self.tempo_curve_bpm, 2),
            },
            "envelopes": {
                "frame_rate_hz": self.envelope_rate_hz,
                **{k: _rounded(self.envelopes[k], 3) for k in ENVELOPE_BANDS},
            },
            "metadata": self.metadata,
            "history": self.history,
            "warnings": self.warnings,
            "phrases": _rounded(self.phrases, 4),
            "sections": [sec.to_dict() for sec in self.sections],
            "cues": [cue.to_dict() for cue in self.cues],
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "<map>") -> BeatMap:
        return _parse(d, source)


def _parse(d: Any, source: str) -> BeatMap:
    def fail(where: str, problem: str) -> BeatMapError:
        return BeatMapError(f"{source}: {problem} at `$.{where}`")

    if not isinstance(d, dict):
        raise BeatMapError(f"{source}: a beat map must be an object, got {type(d).__name__}")
    if d.get("format") != FORMAT:
        raise fail("format",
                   f"expected {FORMAT!r}, got {d.get('format')!r} (not a gridcast beat map)")
    if d.get("format_version") != FORMAT_VERSION:
        raise fail("format_version", f"unsupported version {d.get('format_version')!r}; "
                   f"this gridcast reads {FORMAT_VERSION}")

    def numbers(value: Any, where: str, kind: type = float) -> np.ndarray:
        if not isinstance(value, list):
            raise fail(where, f"expected a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise fail(f"{where}[{i}]", f"expected a finite number, got {v!r}")
        return np.asarray(value, dtype=np.float64 if kind is float else np.int64)

    beats = numbers(d.get("beats"), "beats")
    if len(beats) > 1 and np.any(np.diff(beats) <= 0):
        i = int(np.flatnonzero(np.diff(beats) <= 0)[0]) + 1
        raise fail(f"beats[{i}]", "beat times must be strictly ascending")
    bib = numbers(d.get("beat_in_bar"), "beat_in_bar", int)
    strength = numbers(d.get("beat_strength", [1.0] * len(beats)), "beat_strength")
    for name, arr in (("beat_in_bar", bib), ("beat_strength", strength)):
        if len(arr) != len(beats):
            raise fail(name, f"has {len(arr)} entries but there are {len(beats)} beats")
    if len(bib) and (bib.min() < 1):
        raise fail("beat_in_bar", "positions start at 1 (the downbeat)")
    tempo = d.get("tempo_bpm")
    if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) or tempo < 0:
        raise fail("tempo_bpm", f"expected a non-negative number, got {tempo!r}")
    curve = d.get("tempo_curve", {"times": [], "bpm": []})
    if not isinstance(curve, dict):
        raise fail("tempo_curve", "expected an object with times and bpm")
    env = d.get("envelopes")
    if not isinstance(env, dict):
        raise fail("envelopes", "expected an object with frame_rate_hz, bass, mid, high")
    rate = env.get("frame_rate_hz")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        raise fail("envelopes.frame_rate_hz", f"expected a positive number, got {rate!r}")
    envelopes = {k: numbers(env.get(k), f"envelopes.{k}").astype(np.float32)
                 for k in ENVELOPE_BANDS}
    meta = d.get("metadata", {})
    if not isinstance(meta, dict):
        raise fail("metadata", "expected an object")
    version = d.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", f"expected a positive integer, got {version!r}")
    phrases = numbers(d.get("phrases", []), "phrases")
    if len(phrases) > 1 and np.any(np.diff(phrases) <= 0):
        raise fail("phrases", "phrase starts must be strictly ascending")
    return BeatMap(
        phrases=phrases, sections=_sections(d.get("sections", []), fail),
        cues=_cues(d.get("cues", []), fail),
        beats=beats, beat_in_bar=bib, beat_strength=strength, tempo_bpm=float(tempo),
        tempo_curve_times=numbers(curve.get("times", []), "tempo_curve.times"),
        tempo_curve_bpm=numbers(curve.get("bpm", []), "tempo_curve.bpm"),
        envelope_rate_hz=float(rate), envelopes=envelopes, metadata=meta, version=version,
        history=list(d.get("history", [])), warnings=list(d.get("warnings", [])),
    )


def _number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and bool(np.isfinite(value)))


def _sections(value: Any, fail: Any) -> list[Section]:
    if not isinstance(value, list):
        raise fail("sections", f"expected a list, got {type(value).__name__}")
    out: list[Section] = []
    for i, s in enumerate(value):
        where = f"sections[{i}]"
        if not isinstance(s, dict):
            raise fail(where, "expected an object with start_s, end_s, role, energy")
        for key in ("start_s", "end_s", "energy"):
            if not _number(s.get(key)):
                raise fail(f"{where}.{key}", f"expected a finite number, got {s.get(key)!r}")
        if s["end_s"] <= s["start_s"]:
            raise fail(where, "end_s must be after start_s")
        if out and s["start_s"] < out[-1].end_s - 1e-6:
            raise fail(where, "sections must be ordered and must not overlap")
        if s.get("role") not in SECTION_ROLES:
            raise fail(f"{where}.role", f"unknown role {s.get('role')!r}; use one of "
                       + ", ".join(SECTION_ROLES))
        out.append(Section(float(s["start_s"]), float(s["end_s"]), s["role"],
                           float(s["energy"]), str(s.get("source", "analysis"))))
    return out


def _cues(value: Any, fail: Any) -> list[Cue]:
    if not isinstance(value, list):
        raise fail("cues", f"expected a list, got {type(value).__name__}")
    out: list[Cue] = []
    for i, c in enumerate(value):
        where = f"cues[{i}]"
        if not isinstance(c, dict) or not _number(c.get("time_s")):
            raise fail(f"{where}.time_s", "expected an object with a finite time_s")
        if c.get("kind", "memory") not in CUE_KINDS:
            raise fail(f"{where}.kind", f"unknown cue kind {c.get('kind')!r}; use one of "
                       + ", ".join(CUE_KINDS))
        end = c.get("end_s")
        if end is not None and not _number(end):
            raise fail(f"{where}.end_s", f"expected a finite number, got {end!r}")
        out.append(Cue(float(c["time_s"]), str(c.get("name", "")), c.get("kind", "memory"),
                       str(c.get("color", "")), None if end is None else float(end)))
    return out


def encode(beatmap: BeatMap, fmt: str) -> bytes:
    data = beatmap.to_dict()
    if fmt == "json":
        return (json.dumps(data, indent=1) + "\n").encode()
    if fmt == "msgpack":
        return msgpack.packb(data, use_bin_type=True)
    raise BeatMapError(f"unknown beat map format {fmt!r} (use json or msgpack)")


def format_for(path: str) -> str:
    return "msgpack" if path.endswith((".msgpack", ".mpk")) else "json"


def save(beatmap: BeatMap, path: str, fmt: str | None = None) -> None:
    """Write atomically: the old file stays intact until the new one is complete."""
    write_atomically(path, encode(beatmap, fmt or format_for(path)))


def load(path: str) -> BeatMap:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise BeatMapError(f"{path}: cannot read beat map ({exc.strerror})") from exc
    try:
        if format_for(path) == "msgpack":
            data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        else:
            data = json.loads(raw)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BeatMapError(f"{path}: not a valid {format_for(path)} beat map ({exc})") from exc
    return BeatMap.from_dict(data, source=path)
