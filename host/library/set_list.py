"""A set list from what the user names: audio files, folders, M3U/M3U8 lists.

``audio_paths`` expands the inputs in order (a folder: its audio files, sorted; a
list: its entries, relative to the list's folder, ``#`` lines ignored). ``show_tracks``
analyzes what has no up-to-date beat map (the batch's cache skips unchanged files),
bundles each map with the site key, and returns the player's ``ShowTrack``s; a file
that cannot be analyzed is reported in one line and left out, the rest goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import soundfile as sf

from gridcast.agent.show.set_list import ShowTrack
from gridcast.host.analysis.params import AnalyzerParams
from gridcast.host.beatmaps import beatmap, bundling, corrections
from gridcast.host.library import batch
from gridcast.protocol import bundle_builder, keys
from gridcast.protocol.errors import GridcastError

LIST_EXTENSIONS = (".m3u", ".m3u8")


def is_set_list_input(path: str) -> bool:
    """Audio, a folder or an M3U list (not a bundle or a track id)."""
    return (os.path.isdir(path) or path.lower().endswith(LIST_EXTENSIONS)
            or batch.is_audio(path))


def read_m3u(path: str) -> list[str]:
    """The entries of an M3U/M3U8 list, as paths (relative ones from the list's folder)."""
    encoding = "utf-8-sig" if path.lower().endswith(".m3u8") else "latin-1"
    try:
        with open(path, encoding=encoding) as f:
            lines = [line.strip() for line in f]
    except OSError as exc:
        raise GridcastError(f"{path}: cannot read the list ({exc.strerror})") from exc
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("file://"):
            line = line[len("file://"):]
        entries.append(line if os.path.isabs(line) else os.path.join(base, line))
    return entries


def audio_paths(inputs: list[str]) -> list[str]:
    """Every audio file the inputs name, in order."""
    out: list[str] = []
    for path in inputs:
        if path.lower().endswith(LIST_EXTENSIONS):
            out.extend(read_m3u(path))
        else:
            out.extend(batch.collect_inputs([path]))
    if not out:
        raise GridcastError(f"no audio files in {', '.join(inputs)} (supported: "
                            f"{', '.join(batch.AUDIO_EXTENSIONS)}, folders, M3U/M3U8)")
    return out


def decoder(path: str) -> Callable[[], tuple[np.ndarray, float]]:
    """Loads the file's samples (frames × channels, float32) and rate when called."""

    def load() -> tuple[np.ndarray, float]:
        try:
            samples, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise GridcastError(f"{path}: cannot decode ({str(exc).strip()})") from exc
        return samples, float(rate)

    return load


def show_tracks(paths: list[str], key: bytes, maps_dir: str, workers: int = 1,
                on_line: Callable[[str], None] = print) -> list[ShowTrack]:
    """Analyze (cached), bundle and wrap each file; failures reported and left out."""
    os.makedirs(maps_dir, exist_ok=True)
    jobs = batch.plan(paths, maps_dir, "json")
    tracks = []

    def done(outcome: batch.Outcome) -> None:
        name = os.path.basename(outcome.audio_path)
        if outcome.status == "failed":
            on_line(f"gridcast: skipped {name}: {outcome.message}")
        else:
            on_line(f"{name}: beat map {outcome.status} ({outcome.n_beats} beats, "
                    f"{outcome.tempo_bpm:.1f} BPM)")

    outcomes = batch.run_jobs(jobs, AnalyzerParams(), corrections.Corrections(), workers,
                              cache_dir=batch.default_cache_dir(), on_done=done)
    key_id = keys.key_id(key)
    for outcome in outcomes:
        if outcome.status == "failed":
            continue
        bm = beatmap.load(outcome.out_path)
        source = bundling.source_from_map(bm)
        bundle = bundle_builder.build(source, key, key_id)
        tracks.append(ShowTrack(os.path.basename(outcome.audio_path), source.track_id, bundle,
                                source.bundle_version, list(map(float, bm.beats)),
                                decoder(outcome.audio_path)))
    return tracks
