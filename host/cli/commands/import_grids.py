"""``gridcast import-grids``: a whole rekordbox or Traktor collection -> beat maps.

Also holds ``gridcast analyze AUDIO --grid-from FILE`` (``analyze_with_grid``): the same
import for audio files named on the command line.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from gridcast.host.cli import output

if TYPE_CHECKING:
    from gridcast.host.djgrids.collection import TrackOutcome

HELP = "import the beat grids, cues and phrases of a rekordbox or Traktor collection"
MAX_ROWS = 40  # a larger collection's table lists the tracks not imported only


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("collection", help="rekordbox XML (File > Export Collection in xml "
                   "format) or Traktor collection.nml")
    p.add_argument("--audio-root", metavar="DIR", help="find the audio under DIR when the "
                   "library's paths are from another machine (matched by path ending)")
    p.add_argument("-o", "--out", metavar="DIR", help="folder for the maps (default: next "
                   "to each audio file)")
    p.add_argument("--grid-only", action="store_true", help="do not read the audio: maps "
                   "with the grid, cues and phrases but no envelopes (fast)")
    p.add_argument("--format", choices=("json", "msgpack"), default="json",
                   help="map format (default json)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes for the audio (default: one per core)")
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.add_argument("--all", action="store_true", help="a table row for every track (default: "
                   f"every track up to {MAX_ROWS}, then only those not imported)")


def _summary_table(outcomes: list[TrackOutcome], library: str, every_row: bool) -> None:
    from rich.table import Table

    shown = outcomes if every_row or len(outcomes) <= MAX_ROWS else \
        [o for o in outcomes if o.status == "failed"]
    if not shown:
        return
    title = f"import-grids {library}" + ("" if shown is outcomes else ": not imported")
    table = Table(title=title, show_lines=False)
    for col in ("track", "status", "beats", "BPM", "sections", "cues"):
        table.add_column(col, no_wrap=col != "track")
    table.add_column("map or reason", overflow="fold", ratio=1)
    for o in shown:
        ok = o.status != "failed"
        status = o.status + (" (grid only)" if o.grid_only and ok else "")
        table.add_row(f"{o.track_id} {o.what}".strip(), status,
                      str(o.n_beats) if ok else "", f"{o.tempo_bpm:.2f}" if ok else "",
                      str(o.n_sections) if ok else "", str(o.n_cues) if ok else "",
                      o.out_path if ok else o.reason.removeprefix(f"{library}: "),
                      style=None if ok else "red")
    output.out.print(table)


def run(args: argparse.Namespace) -> int:
    from gridcast.host.djgrids import collection, sources
    from gridcast.host.djgrids.matching import AudioFinder

    lib = sources.read_library(args.collection)
    for w in lib.warnings:
        output.warn(w)
    ext = ".msgpack" if args.format == "msgpack" else ".json"
    jobs, failed = collection.plan(lib, AudioFinder(args.audio_root), args.out,
                                   args.grid_only, ext)
    with output.progress(len(jobs), "importing") as bar:
        outcomes = collection.run_jobs(jobs, max(1, args.jobs), fmt=args.format,
                                       on_done=lambda _o: output.advance(bar))
    everything = outcomes + failed
    if args.json:
        from dataclasses import asdict

        output.print_json({"collection": args.collection, "version": lib.version,
                           "warnings": lib.warnings,
                           "tracks": [asdict(o) for o in everything]})
    else:
        _summary_table(everything, args.collection, args.all)
    n_failed = sum(o.status == "failed" for o in everything)
    written = sum(o.status == "written" for o in everything)
    output.info(f"{args.collection}: {len(everything)} entries: {written} written, "
                f"{len(everything) - written - n_failed} unchanged, {n_failed} not imported")
    return 1 if n_failed else 0


def analyze_with_grid(args: argparse.Namespace) -> int:
    """``gridcast analyze AUDIO... --grid-from FILE``: each audio file's map from its DJ
    grid, with gridcast's envelopes and beat strengths."""
    from gridcast.host.analysis import audio
    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.beatmaps import corrections
    from gridcast.host.djgrids import importing, sources, versions
    from gridcast.host.errors import BeatMapError
    from gridcast.host.library import batch

    if args.tempo_hint is not None:
        raise BeatMapError("--tempo-hint does not apply with --grid-from: the DJ grid sets "
                           "the tempo")
    if args.watch:
        raise BeatMapError("--watch does not apply with --grid-from: run gridcast "
                           "import-grids again when the library changes")
    inputs = batch.collect_inputs(args.audio)
    if not inputs:
        raise BeatMapError("--grid-from needs the audio files it describes: gridcast analyze "
                           "AUDIO --grid-from FILE")
    if len(inputs) > 1 and sources.describes_one_track(args.grid_from):
        raise BeatMapError(f"{args.grid_from} holds the grid of one track but {len(inputs)} "
                           "audio files were given: give one, or a library (.xml, .nml), or "
                           "--grid-from serato for each file's own Serato tags")
    if args.grid_from != sources.OWN_TAGS and os.path.isfile(args.grid_from) and \
            sources.kind_of(args.grid_from) == "library":
        for w in sources.cached_library(args.grid_from).warnings:
            output.warn(w)
    corr = corrections.Corrections(offset_ms=args.offset_ms or 0.0, source="command line")
    if args.overrides:
        corr = corrections.load_override_file(args.overrides).merged(corr)
    params = AnalyzerParams()
    for job in batch.plan(inputs, args.out, args.format or "json"):
        info = audio.probe(job.audio_path, args.max_duration)
        track = sources.grid_for_audio(args.grid_from, job.audio_path, info.duration_s)
        named = os.path.basename(track.location.replace("\\", "/"))
        if named and named.casefold() != os.path.basename(job.audio_path).casefold():
            output.warn(f"{args.grid_from} is the grid of {named}, given for "
                        f"{job.audio_path}: check that it is the same track")
        feats = importing.AudioFeatures(job.audio_path, params, args.max_duration)
        bm = importing.to_beatmap(track, feats, params)
        entry = importing.history_entry(bm)
        if not corr.is_empty():
            bm = corrections.apply(bm, corr)
            entry["edits"] = corr.edits()
            bm.metadata["grid_source"]["digest"] += "+" + str(sorted(corr.edits().items()))
        status = versions.save_version(bm, job.out_path, entry, args.format)
        for w in bm.warnings:
            output.warn(w)
        what = "unchanged" if status == "unchanged" else f"v{bm.version}"
        output.info(f"{job.audio_path} -> {job.out_path} ({what}, grid from "
                    f"{track.source_format} {track.track_id or os.path.basename(track.source_file)}"
                    f", {len(bm.beats)} beats, {bm.tempo_bpm:.2f} BPM, {len(bm.sections)} "
                    f"sections, {len(bm.cues)} cues)")
    return 0
