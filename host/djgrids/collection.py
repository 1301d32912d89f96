"""Importing a whole DJ collection: one beat-map version per readable track, a reason for
every other one, each map saved atomically (a failure never leaves half a map)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from gridcast.host.analysis.audio import DEFAULT_MAX_DURATION_S
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.djgrids import importing, versions
from gridcast.host.djgrids.grid import DjTrack
from gridcast.host.djgrids.library import Library
from gridcast.host.djgrids.matching import AudioFinder
from gridcast.protocol.errors import GridcastError

MAP_SUFFIX = ".beatmap"


@dataclass
class TrackOutcome:
    """What happened to one track: "written", "unchanged" or "failed" (with ``reason``)."""

    track_id: str
    what: str
    status: str
    reason: str = ""
    out_path: str = ""
    version: int = 0
    n_beats: int = 0
    tempo_bpm: float = 0.0
    n_sections: int = 0
    n_cues: int = 0
    grid_only: bool = False


@dataclass(frozen=True)
class Job:
    track: DjTrack
    audio_path: str | None  # None: grid only
    out_path: str


def plan(lib: Library, finder: AudioFinder, out_dir: str | None, grid_only: bool,
         ext: str) -> tuple[list[Job], list[TrackOutcome]]:
    """A job per track whose audio is found (or every track with ``grid_only``); the
    tracks that cannot be imported as outcomes with their reason."""
    jobs: list[Job] = []
    failed = [TrackOutcome(u.track_id, u.what, "failed", u.reason) for u in lib.unreadable]
    taken: set[str] = set()
    default_dir = os.path.join(os.path.dirname(os.path.abspath(lib.path)),
                               os.path.splitext(os.path.basename(lib.path))[0] + ".maps")
    for track in lib.tracks:
        audio_path = finder.find(track)
        if audio_path is None and not grid_only:
            failed.append(TrackOutcome(track.track_id, track.describe(), "failed",
                                       f"audio not found at {track.location or '(no location)'}"
                                       " (give --audio-root DIR, or --grid-only)"))
            continue
        name_from = audio_path or track.location or f"track-{track.track_id}"
        stem = os.path.splitext(os.path.basename(name_from))[0] or f"track-{track.track_id}"
        folder = out_dir or (os.path.dirname(audio_path) if audio_path else default_dir)
        target = os.path.join(folder, stem + MAP_SUFFIX + ext)
        if target in taken:  # two tracks with one file name: the track id tells them apart
            target = os.path.join(folder, f"{stem}.{track.track_id}{MAP_SUFFIX}{ext}")
        taken.add(target)
        jobs.append(Job(track, None if grid_only else audio_path, target))
    return jobs, failed


def run_job(job: Job, params: AnalyzerParams, max_duration_s: float,
            fmt: str | None) -> TrackOutcome:
    """Import one track; never raises for a bad track (the outcome says what went wrong)."""
    track = job.track
    try:
        feats = (importing.AudioFeatures(job.audio_path, params, max_duration_s)
                 if job.audio_path else None)
        bm = importing.to_beatmap(track, feats, params)
        status = versions.save_version(bm, job.out_path, importing.history_entry(bm), fmt,
                                       durable=False)
    except (GridcastError, OSError) as exc:
        reason = str(exc) if isinstance(exc, GridcastError) else f"{exc.strerror or exc}"
        return TrackOutcome(track.track_id, track.describe(), "failed", reason)
    return TrackOutcome(track.track_id, track.describe(), status, out_path=job.out_path,
                        version=bm.version, n_beats=len(bm.beats), tempo_bpm=bm.tempo_bpm,
                        n_sections=len(bm.sections), n_cues=len(bm.cues),
                        grid_only=job.audio_path is None)


def run_jobs(jobs: list[Job], workers: int, params: AnalyzerParams | None = None,
             max_duration_s: float = DEFAULT_MAX_DURATION_S, fmt: str | None = None,
             on_done: Callable[[TrackOutcome], None] | None = None) -> list[TrackOutcome]:
    """Run the jobs (audio analysis in worker processes when there are several); results
    in job order."""
    params = params or AnalyzerParams()
    results: dict[int, TrackOutcome] = {}
    try:
        for index, outcome in _iter(jobs, workers, params, max_duration_s, fmt):
            results[index] = outcome
            if on_done:
                on_done(outcome)
    finally:
        versions.sync_all()  # the maps reach the disk even when the batch is interrupted
    return [results[i] for i in range(len(jobs))]


def _iter(jobs: list[Job], workers: int, params: AnalyzerParams, max_duration_s: float,
          fmt: str | None) -> Iterator[tuple[int, TrackOutcome]]:
    with_audio = sum(j.audio_path is not None for j in jobs)
    if workers <= 1 or with_audio <= 1:  # grid-only imports cost less than a process start
        for i, job in enumerate(jobs):
            yield i, run_job(job, params, max_duration_s, fmt)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {pool.submit(run_job, job, params, max_duration_s, fmt): i
                   for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
