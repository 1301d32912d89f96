"""Analyzing many files: planning outputs, skipping unchanged ones, parallel workers.

A map is "unchanged" when the file at its output path was made from audio with
the same SHA-256, by the same analyzer parameters, with the same corrections.
Base analyses are also cached by audio hash (``GRIDCAST_CACHE_DIR``, default
~/.cache/gridcast/analysis), so changing only a correction or the output
folder costs no new analysis.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from gridcast.host.analysis import analyzer, audio
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.beatmaps import beatmap, corrections
from gridcast.host.beatmaps.beatmap import BeatMap
from gridcast.host.errors import BeatMapError
from gridcast.protocol.errors import GridcastError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
MAP_SUFFIX = ".beatmap"


@dataclass(frozen=True)
class Job:
    audio_path: str
    out_path: str


@dataclass
class Outcome:
    audio_path: str
    out_path: str
    status: str  # "written", "unchanged" or "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    version: int = 0
    n_beats: int = 0
    tempo_bpm: float = 0.0


def default_cache_dir() -> str:
    base = os.environ.get("GRIDCAST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gridcast")
    return os.path.join(base, "analysis")


def is_audio(path: str) -> bool:
    return path.lower().endswith(AUDIO_EXTENSIONS) and not os.path.basename(path).startswith(".")


def collect_inputs(paths: Iterable[str]) -> list[str]:
    """Files as given; folders expanded to the audio files below them (sorted)."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files) if is_audio(f))
        else:
            out.append(p)  # missing or odd files are reported by the job itself
    return out


def plan(inputs: list[str], out: str | None, fmt: str) -> list[Job]:
    ext = ".msgpack" if fmt == "msgpack" else ".json"
    single_file_out = out is not None and len(inputs) == 1 and out.endswith((".json", ".msgpack"))
    jobs = []
    for path in inputs:
        stem = os.path.splitext(os.path.basename(path))[0]
        if single_file_out:
            target = out
        elif out is None:
            target = os.path.join(os.path.dirname(path) or ".", stem + MAP_SUFFIX + ext)
        else:
            target = os.path.join(out, stem + MAP_SUFFIX + ext)
        jobs.append(Job(path, str(target)))
    return jobs


def _read_existing(path: str) -> BeatMap | None:
    if not os.path.exists(path):
        return None
    try:
        return beatmap.load(path)
    except GridcastError:
        return None  # not ours or damaged: it is kept aside as a version below


def _kept_version_path(path: str, version: int) -> str:
    root, ext = os.path.splitext(path)
    candidate = f"{root}.v{version}{ext}"
    n = 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{root}.v{version}-{n}{ext}"
    return candidate


def _cached_analysis(path: str, sha: str, params: AnalyzerParams, max_duration_s: float,
                     cache_dir: str | None) -> BeatMap:
    cache_file = os.path.join(
        cache_dir, f"{sha}-{params.digest()}-{analyzer.ANALYZER_VERSION}.json") \
        if cache_dir else None
    if cache_file and os.path.exists(cache_file):
        try:
            cached = beatmap.load(cache_file)
            cached.metadata["audio_file"] = os.path.basename(path)
            return cached
        except BeatMapError:
            pass  # a damaged cache entry is simply recomputed
    result = analyzer.analyze_file(path, params, max_duration_s, sha256=sha)
    if cache_file:
        # The cache is an optimisation: a read-only home must not fail the analysis.
        with contextlib.suppress(OSError):
            beatmap.save(result, cache_file)
    return result


def run_job(job: Job, params: AnalyzerParams, corr: corrections.Corrections,
            max_duration_s: float = audio.DEFAULT_MAX_DURATION_S,
            cache_dir: str | None = None, fmt: str | None = None) -> Outcome:
    """Analyze one file; never raises for a bad file (the outcome says what went wrong)."""
    try:
        return _run_job(job, params, corr, max_duration_s, cache_dir, fmt)
    except GridcastError as exc:
        return Outcome(job.audio_path, job.out_path, "failed", str(exc))
    except OSError as exc:
        return Outcome(job.audio_path, job.out_path, "failed",
                       f"{job.audio_path}: {exc.strerror or exc}")


def _run_job(job: Job, params: AnalyzerParams, corr: corrections.Corrections,
             max_duration_s: float, cache_dir: str | None, fmt: str | None) -> Outcome:
    audio.probe(job.audio_path, max_duration_s)
    sha = audio.file_sha256(job.audio_path)
    if corr.tempo_bpm:
        params = params.with_hint(corr.tempo_bpm)
    edits = corr.edits()
    existing = _read_existing(job.out_path)
    if existing is not None and _same_inputs(existing, sha, params, edits):
        return Outcome(job.audio_path, job.out_path, "unchanged", version=existing.version,
                       n_beats=len(existing.beats), tempo_bpm=existing.tempo_bpm)
    result = _cached_analysis(job.audio_path, sha, params, max_duration_s, cache_dir)
    result.metadata["audio_file"] = os.path.basename(job.audio_path)
    if not corr.is_empty():
        result = corrections.apply(result, corr)
    result.metadata["corrections"] = edits
    result.metadata["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    entry = {"change": "correction" if edits else "analysis", "edits": edits,
             "params_digest": params.digest(), "created_at": result.metadata["created_at"]}
    if existing is not None:
        result.version = existing.version + 1
        result.history = [*existing.history, {"version": result.version, **entry}]
    else:
        result.version = 1
        result.history = [{"version": 1, **entry}]
    # Complete the new file first, then keep the old one aside, then swap: a failure at
    # any point leaves the previous map readable under one of its two names.
    staged = job.out_path + ".new"
    beatmap.save(result, staged, fmt or beatmap.format_for(job.out_path))
    if os.path.exists(job.out_path):
        old_version = existing.version if existing is not None else 0
        os.replace(job.out_path, _kept_version_path(job.out_path, old_version))
    os.replace(staged, job.out_path)
    return Outcome(job.audio_path, job.out_path, "written", warnings=list(result.warnings),
                   version=result.version, n_beats=len(result.beats), tempo_bpm=result.tempo_bpm)


def _same_inputs(existing: BeatMap, sha: str, params: AnalyzerParams, edits: dict) -> bool:
    meta = existing.metadata
    digest = meta.get("analyzer", {}).get("params_digest") if isinstance(
        meta.get("analyzer"), dict) else None
    same_edits = json.dumps(meta.get("corrections", {}), sort_keys=True) == json.dumps(
        edits, sort_keys=True)
    # A newer analyzer (e.g. one that adds phrases and sections) analyzes again, but never
    # over a map a person edited in the grid editor.
    version = meta.get("analyzer", {}).get("version") if isinstance(
        meta.get("analyzer"), dict) else None
    edited = any(isinstance(e, dict) and e.get("change") in ("edit", "undo")
                 for e in existing.history)
    return (meta.get("audio_sha256") == sha and digest == params.digest() and same_edits
            and (version == analyzer.ANALYZER_VERSION or edited))


def run_jobs(jobs: list[Job], params: AnalyzerParams, corr: corrections.Corrections,
             workers: int, max_duration_s: float = audio.DEFAULT_MAX_DURATION_S,
             cache_dir: str | None = None, fmt: str | None = None,
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run jobs, in worker processes when there are several; results in input order."""
    results: dict[int, Outcome] = {}
    for index, outcome in _iter_outcomes(jobs, params, corr, workers, max_duration_s,
                                         cache_dir, fmt):
        results[index] = outcome
        if on_done:
            on_done(outcome)
    return [results[i] for i in range(len(jobs))]


def _iter_outcomes(jobs: list[Job], params: AnalyzerParams, corr: corrections.Corrections,
                   workers: int, max_duration_s: float, cache_dir: str | None,
                   fmt: str | None) -> Iterator[tuple[int, Outcome]]:
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i, run_job(job, params, corr, max_duration_s, cache_dir, fmt)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {pool.submit(run_job, job, params, corr, max_duration_s, cache_dir, fmt): i
                   for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
