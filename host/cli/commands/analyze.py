"""``gridcast analyze``: audio files and folders -> beat maps."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from gridcast.host.cli import output
from gridcast.host.errors import BeatMapError

if TYPE_CHECKING:
    from gridcast.host.beatmaps import corrections
    from gridcast.host.library import batch

HELP = "analyze audio files into beat maps"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="*", help="audio files or folders (WAV, FLAC, OGG, MP3)")
    p.add_argument("-o", "--out", help="output file (one input) or folder; default: next to "
                   "each audio file as <name>.beatmap.json")
    p.add_argument("--format", choices=("json", "msgpack"), default=None,
                   help="map format (default: from the output name, else json)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--offset-ms", type=float, default=0.0, help="shift every beat (ms)")
    p.add_argument("--tempo-hint", type=float, default=None, metavar="BPM",
                   help="analyze near this tempo (fixes half/double-tempo picks)")
    p.add_argument("--overrides", metavar="FILE", help="JSON file of corrections "
                   "(see docs/beatmap.md)")
    p.add_argument("--max-duration", type=float, default=3600.0, metavar="S",
                   help="refuse files longer than this (default 3600 s)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                   "analysis cache")
    p.add_argument("--grid-from", metavar="FILE", help="take beats, downbeats, cues and "
                   "phrases from a DJ grid: rekordbox XML, ANLZ .DAT/.EXT, Traktor NML, or "
                   "'serato' for each audio file's own Serato tags (docs/dj_grids.md)")
    p.add_argument("--watch", metavar="DIR", help="after analyzing the inputs, keep "
                   "analyzing new and changed audio under DIR until Ctrl-C")


def _corrections(args: argparse.Namespace) -> corrections.Corrections:
    from gridcast.host.beatmaps import corrections

    corr = corrections.Corrections()
    if args.overrides:
        corr = corrections.load_override_file(args.overrides)
    flags = corrections.Corrections(offset_ms=args.offset_ms or 0.0,
                                    tempo_bpm=args.tempo_hint, source="command line")
    if args.tempo_hint is not None and not 20 <= args.tempo_hint <= 400:
        raise BeatMapError(f"--tempo-hint {args.tempo_hint} is outside 20-400 BPM")
    return corr.merged(flags)


def _report(outcome: batch.Outcome) -> None:
    if outcome.status == "failed":
        output.error(outcome.message)
        return
    for w in outcome.warnings:
        output.warn(w)
    what = "unchanged" if outcome.status == "unchanged" else f"v{outcome.version}"
    output.info(f"{outcome.audio_path} -> {outcome.out_path} ({what}, {outcome.n_beats} beats, "
                f"{outcome.tempo_bpm:.1f} BPM)")
    _structure_line(outcome.out_path)


def _structure_line(map_path: str) -> None:
    """The map's sections under its line (role and bars), when it has any."""
    from gridcast.host.analysis.structure import describe
    from gridcast.host.beatmaps import beatmap

    try:
        text = describe(beatmap.load(map_path))
    except BeatMapError:
        return  # the line above already says where the map is
    if text:
        output.info(f"  structure: {text}")


def analyze_paths(paths: list[str], args: argparse.Namespace,
                  corr: corrections.Corrections) -> list[batch.Outcome]:
    """Analyze the audio files under ``paths`` (files or folders), one line per file."""
    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.library import batch

    inputs = batch.collect_inputs(paths)
    if not inputs:
        output.warn(f"no audio files in {', '.join(paths)}")
        return []
    fmt = args.format
    jobs = batch.plan(inputs, args.out, fmt or "json")
    cache_dir = None if args.no_cache else batch.default_cache_dir()
    with output.progress(len(jobs), "analyzing") as bar:
        def done(outcome: batch.Outcome) -> None:
            _report(outcome)
            output.advance(bar)

        return batch.run_jobs(jobs, AnalyzerParams(), corr, max(1, args.jobs),
                              args.max_duration, cache_dir, fmt, on_done=done)


def run(args: argparse.Namespace) -> int:
    if args.grid_from:
        from gridcast.host.cli.commands.import_grids import analyze_with_grid

        return analyze_with_grid(args)
    if not args.audio and not args.watch:
        raise BeatMapError("nothing to analyze: give audio files or folders, or --watch DIR")
    corr = _corrections(args)
    outcomes = analyze_paths(args.audio, args, corr) if args.audio else []
    failed = sum(o.status == "failed" for o in outcomes)
    if len(outcomes) > 1:
        written = sum(o.status == "written" for o in outcomes)
        output.info(f"{len(outcomes)} files: {written} written, "
                    f"{len(outcomes) - written - failed} unchanged, {failed} failed")
    if args.watch:
        from gridcast.host.library import watch

        if not os.path.isdir(args.watch):
            raise BeatMapError(f"{args.watch}: --watch needs an existing folder")
        analyze_paths([args.watch], args, corr)
        output.info(f"watching {args.watch} for new or changed audio (Ctrl-C to stop)")
        def on_change(paths: list[str]) -> None:
            analyze_paths(paths, args, corr)

        watch.watch(args.watch, on_change)
    return 1 if failed else 0
