"""A DJ track's grid -> a BeatMap: the DJ's beats and downbeats, gridcast's envelopes and
beat strengths from the audio (the analyzer's own feature, envelope and strength code),
cues, and rekordbox's phrases as sections (gridcast's phrase analysis on the DJ's beats when
the tool has none)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time

import numpy as np

from gridcast.host.analysis import audio, envelopes, features, onset
from gridcast.host.analysis import structure as phrase_structure
from gridcast.host.analysis.analyzer import ANALYZER_VERSION, beat_strengths, global_tempo
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.beatmaps.beatmap import ENVELOPE_BANDS, BeatMap, Section
from gridcast.host.djgrids.errors import DjGridError
from gridcast.host.djgrids.grid import DjTrack, track_beats

IMPORTER_VERSION = "1"
# Section energy when no audio was read: what each role usually is in dance music.
ROLE_ENERGY = {"intro": 0.3, "verse": 0.5, "buildup": 0.6, "drop": 1.0, "chorus": 0.9,
               "break": 0.3, "bridge": 0.5, "outro": 0.3, "other": 0.5}


class AudioFeatures:
    """What the importer takes from the audio: envelopes, onset strength, identity."""

    def __init__(self, path: str, params: AnalyzerParams, max_duration_s: float) -> None:
        from threadpoolctl import threadpool_limits

        info = audio.probe(path, max_duration_s)
        started = time.process_time()
        with threadpool_limits(limits=1):
            feats = features.extract(audio.iter_mono_blocks(info), info.sample_rate,
                                     info.frames)
            self.envelopes = envelopes.band_envelopes(feats, params.envelope_rate_hz)
            self.onset_strength = onset.onset_strength(feats, params)
        self.features = feats  # for the phrase analysis on the DJ's beats
        self.frame_rate_hz = feats.frame_rate_hz
        self.duration_s = info.duration_s
        self.metadata = {"audio_file": os.path.basename(path),
                         "audio_sha256": audio.file_sha256(path),
                         "duration_s": round(info.duration_s, 4),
                         "sample_rate": info.sample_rate, "channels": info.channels,
                         "cpu_s": round(time.process_time() - started, 4)}


def grid_tempo_curve(beats: np.ndarray) -> np.ndarray:
    """BPM at each beat from its neighbours (a DJ grid has no jitter to smooth away)."""
    n = len(beats)
    if n < 2:
        return np.zeros(n)
    gaps = np.diff(beats)
    around = np.empty(n)
    around[0], around[-1] = gaps[0], gaps[-1]
    around[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    return 60.0 / around


def grid_digest(track: DjTrack, beats: np.ndarray, bib: np.ndarray) -> str:
    """A short hash of what was imported: the same grid, cues and phrases give the same."""
    # The analyzer's version too: its strengths and sections are part of the map.
    digest = hashlib.sha256(f"{IMPORTER_VERSION} {ANALYZER_VERSION}".encode())
    digest.update(np.round(np.asarray(beats, dtype=np.float64), 5).tobytes())
    digest.update(np.asarray(bib, dtype=np.int64).tobytes())
    digest.update(json.dumps([[c.to_dict() for c in track.cues],
                              [(round(p.start_s, 4), p.label) for p in track.phrases]]
                             ).encode())
    return digest.hexdigest()[:16]


def _sections(track: DjTrack, env: dict[str, np.ndarray] | None, rate_hz: float,
              end_s: float) -> list[Section]:
    spans = [(p.start_s, min(p.end_s, end_s), p.role) for p in track.phrases
             if p.start_s < end_s]
    spans = [s for s in spans if s[1] > s[0]]
    if not spans:
        return []
    if env is not None and len(env["bass"]):
        level = np.mean([env[b] for b in ENVELOPE_BANDS], axis=0)
        means = np.array([float(level[int(a * rate_hz):max(int(b * rate_hz),
                                                            int(a * rate_hz) + 1)].mean())
                          if int(a * rate_hz) < len(level) else 0.0 for a, b, _ in spans])
        energy = means / means.max() if means.max() > 0 else means
    else:
        energy = np.array([ROLE_ENERGY.get(role, 0.5) for _, _, role in spans])
    source = track.phrase_source or track.source_format.split("-")[0]
    return [Section(a, b, role, float(np.clip(e, 0.0, 1.0)), source)
            for (a, b, role), e in zip(spans, energy, strict=True)]


def to_beatmap(track: DjTrack, audio_feats: AudioFeatures | None,
               params: AnalyzerParams | None = None) -> BeatMap:
    """The beat map of ``track``; without ``audio_feats`` (grid only) the envelopes are
    empty and every beat has strength 1, and the map says so in its warnings."""
    params = params or AnalyzerParams()
    end_s = audio_feats.duration_s if audio_feats else track.duration_s
    if end_s <= 0:
        last = max((m.time_s for m in track.markers), default=0.0)
        end_s = last if track.beats_s is None else float(np.max(track.beats_s, initial=0))
    beats, bib = track_beats(track, end_s)
    if len(beats) < 2:
        raise DjGridError(f"{track.source_file}: {track.describe()}: the grid gives "
                          f"{len(beats)} beat(s) inside the track's {end_s:.1f} s")
    warnings = [f"{track.source_file}: {note}" for note in track.notes]
    if audio_feats is not None:
        env = audio_feats.envelopes
        strength = beat_strengths(audio_feats.onset_strength, beats,
                                  audio_feats.frame_rate_hz)
        metadata: dict = dict(audio_feats.metadata)
    else:
        env = {b: np.zeros(0, dtype=np.float32) for b in ENVELOPE_BANDS}
        strength = np.ones(len(beats))
        metadata = {"audio_file": os.path.basename(track.location),
                    "duration_s": round(end_s, 4)}
        warnings.append(f"{track.describe()}: grid only (no audio read): envelopes are "
                        "empty and beat strengths flat; import with the audio for them")
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    metadata.update({
        "created_at": created,
        "grid_source": {"format": track.source_format,
                        "file": os.path.abspath(track.source_file),
                        "track_id": track.track_id, "location": track.location,
                        "title": track.title, "artist": track.artist,
                        **({"phrase_mood": track.phrase_mood} if track.phrase_mood else {}),
                        "digest": grid_digest(track, beats, bib)},
        "envelope_source": "gridcast" if audio_feats is not None else "none",
    })
    rate = params.envelope_rate_hz
    sections = _sections(track, env if audio_feats else None, rate, end_s)
    phrases = np.array([s.start_s for s in sections])
    if not track.phrases and audio_feats is not None:
        # No phrases from the DJ tool: gridcast's own phrase analysis, on the DJ's beats.
        parts = phrase_structure.analyze(audio_feats.features, beats, bib)
        phrases, sections = parts.phrases_s, parts.sections
    return BeatMap(
        beats=beats, beat_in_bar=bib, beat_strength=strength,
        tempo_bpm=global_tempo(beats), tempo_curve_times=beats,
        tempo_curve_bpm=grid_tempo_curve(beats), envelope_rate_hz=rate, envelopes=env,
        metadata=metadata, warnings=warnings, phrases=phrases, sections=sections,
        cues=[c for c in track.cues if 0 <= c.time_s <= end_s + 1e-6],
    )


def history_entry(bm: BeatMap) -> dict:
    """What the map's history records of an import: where the grid came from."""
    src = bm.metadata["grid_source"]
    return {"change": "import", "source": {"format": src["format"], "file": src["file"],
                                           "track_id": src["track_id"]},
            "grid_digest": src["digest"], "created_at": bm.metadata["created_at"]}
