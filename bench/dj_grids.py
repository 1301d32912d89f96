"""DJ grid import speed and round-trip accuracy, printed as JSON.

    python bench/dj_grids.py [--tracks 1000] [--cli] [--analyzed DIR [--limit N]]

Generates a rekordbox XML collection (seeded): tracks of 3-8 minutes at 90-175 BPM with
0.01 BPM tempos and 1 ms marker times as rekordbox writes them; a third have a variable
grid (2-12 tempo markers), a tenth a marker on every beat (a played recording), and each
has 3-8 cues. Then:

- import: read the collection and write one beat-map version per track (grid only:
  the audio analysis is excluded, as the target says), wall and CPU time (the machine's
  load average is printed too: the wall time grows with other work on it);
- with ``--cli``: the same through ``gridcast import-grids --grid-only`` in a new process
  (start-up and imports included);
- round trip: every imported map exported to rekordbox XML and imported again; the
  largest beat time difference over all beats of all tracks, and the tempo markers used;
- with ``--analyzed DIR``: the same round trip for the maps the analyzer makes of the audio
  in DIR (beats as played, not a steady grid).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from gridcast.host.djgrids import collection, importing, rekordbox_export, rekordbox_xml
from gridcast.host.djgrids.library import file_url_from_path
from gridcast.host.djgrids.matching import AudioFinder


def _markers(rng: np.random.Generator, duration: float, kind: str) -> list[tuple[float, float]]:
    start = round(float(rng.uniform(0.0, 0.5)), 3)
    bpm = round(float(rng.uniform(90, 175)), 2)
    if kind == "steady":
        return [(start, bpm)]
    out = [(start, bpm)]
    t = start
    per_beat = kind == "played"
    while True:
        beats = 1 if per_beat else int(rng.integers(16, 200))
        t = round(t + beats * 60.0 / bpm, 3)
        if t >= duration - 1:
            return out
        bpm = round(float(np.clip(bpm + rng.normal(0, 1.5 if per_beat else 4), 60, 200)), 2)
        out.append((t, bpm))
        if not per_beat and len(out) >= 12:
            return out


def collection_xml(n_tracks: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS Version="1.0.0">'
             '<PRODUCT Name="rekordbox" Version="6.8.5" Company="AlphaTheta"/>'
             f'<COLLECTION Entries="{n_tracks}">']
    for i in range(1, n_tracks + 1):
        duration = int(rng.uniform(180, 480))
        kind = rng.choice(["steady", "variable", "played"], p=[0.57, 0.33, 0.10])
        loc = file_url_from_path(f"/Users/dj/Music/Artist {i % 97}/Track {i:04d}.mp3")
        tempos = "".join(
            f'<TEMPO Inizio="{t:.3f}" Bpm="{b:.2f}" Metro="4/4" Battito="{1 + k % 4}"/>'
            for k, (t, b) in enumerate(_markers(rng, duration, str(kind))))
        cues = "".join(
            f'<POSITION_MARK Name="Cue {c}" Type="0" Start="{float(rng.uniform(0, duration)):.3f}"'
            f' Num="{c if c < 8 else -1}" Red="40" Green="226" Blue="20"/>'
            for c in range(int(rng.integers(3, 9))))
        parts.append(f'<TRACK TrackID="{i}" Name="Track {i:04d}" Artist="Artist {i % 97}" '
                     f'Kind="MP3 File" TotalTime="{duration}" AverageBpm="120.00" '
                     f'Location="{loc}">{tempos}{cues}</TRACK>')
    parts.append("</COLLECTION><PLAYLISTS/></DJ_PLAYLISTS>\n")
    return "\n".join(parts)


def analyzed_round_trip(folder: str, limit: int) -> dict:
    """Maps the analyzer made of real recordings (beats as played) -> rekordbox XML ->
    imported again: the largest beat error and the beats gained or lost."""
    import glob

    from gridcast.host.analysis import analyzer

    files = sorted(glob.glob(os.path.join(folder, "*")))[:limit]
    worst, gained, n_beats, n_markers = 0.0, 0, 0, 0
    work = tempfile.mkdtemp(prefix="gridcast-djbench-")
    try:
        for f in files:
            bm = analyzer.analyze_file(f)
            out = os.path.join(work, "x.xml")
            rekordbox_export.write([(os.path.join(work, "x.json"), bm)], out)
            track = rekordbox_xml.read(out).tracks[0]
            again = importing.to_beatmap(track, None).beats
            near = np.clip(np.searchsorted(again, bm.beats), 1, len(again) - 1)
            err = np.minimum(np.abs(again[near] - bm.beats), np.abs(again[near - 1] - bm.beats))
            worst = max(worst, float(err.max()))
            gained += len(again) - len(bm.beats)
            n_beats += len(bm.beats)
            n_markers += len(track.markers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"clips": len(files), "beats": n_beats, "tempo_markers": n_markers,
            "max_error_ms": round(worst * 1000, 4), "beats_gained": gained}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--cli", action="store_true", help="also time gridcast import-grids")
    ap.add_argument("--analyzed", metavar="DIR", help="also round-trip the analyzer's maps of "
                    "the audio in DIR (e.g. ../shared/data/beats-real/audio)")
    ap.add_argument("--limit", type=int, default=30, help="audio files of --analyzed")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gridcast-djbench-")
    try:
        lib_path = os.path.join(work, "rekordbox.xml")
        with open(lib_path, "w", encoding="utf-8") as f:
            f.write(collection_xml(args.tracks))
        started, cpu_started = time.perf_counter(), time.process_time()
        lib = rekordbox_xml.read(lib_path)
        read_s = time.perf_counter() - started
        jobs, failed = collection.plan(lib, AudioFinder(None), os.path.join(work, "maps"),
                                       grid_only=True, ext=".json")
        outcomes = collection.run_jobs(jobs, workers=1)
        import_s = time.perf_counter() - started
        import_cpu_s = time.process_time() - cpu_started
        result: dict = {
            "tracks": args.tracks, "xml_mb": round(os.path.getsize(lib_path) / 1e6, 2),
            "read_s": round(read_s, 3), "import_s": round(import_s, 3),
            "import_cpu_s": round(import_cpu_s, 3), "load_avg_1min": os.getloadavg()[0],
            "written": sum(o.status == "written" for o in outcomes),
            "not_imported": len(failed) + sum(o.status == "failed" for o in outcomes),
            "beats": sum(o.n_beats for o in outcomes),
        }
        if args.cli:
            cli_out = os.path.join(work, "cli-maps")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gridcast.host.cli", "import-grids", lib_path,
                            "--grid-only", "-o", cli_out, "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            result["cli_import_s"] = round(time.perf_counter() - t0, 3)
        maps = [(o.out_path, importing.to_beatmap(t, None)) for o, t in
                zip(outcomes, lib.tracks, strict=True)]
        t0 = time.perf_counter()
        export_path = os.path.join(work, "export.xml")
        rekordbox_export.write(maps, export_path)
        result["export_s"] = round(time.perf_counter() - t0, 3)
        again = rekordbox_xml.read(export_path)
        if again.unreadable:
            raise SystemExit(f"the export has unreadable tracks: {again.unreadable[:3]}")
        worst, n_markers_in, n_markers_out = 0.0, 0, 0
        for (_, first), track, src in zip(maps, again.tracks, lib.tracks, strict=True):
            second = importing.to_beatmap(track, None)
            if len(second.beats) != len(first.beats):
                raise SystemExit(f"track {track.track_id}: {len(first.beats)} beats became "
                                 f"{len(second.beats)}")
            worst = max(worst, float(np.abs(second.beats - first.beats).max()))
            n_markers_in += len(src.markers)
            n_markers_out += len(track.markers)
        result.update({"round_trip_max_error_ms": round(worst * 1000, 4),
                       "tempo_markers_in": n_markers_in, "tempo_markers_out": n_markers_out})
        if args.analyzed:
            result["analyzed_round_trip"] = analyzed_round_trip(args.analyzed, args.limit)
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
