"""``gridcast analyze``: audio files and folders -> beat maps."""

from __future__ import annotations

import argparse
import os

from gridcast.host import batch, console, corrections
from gridcast.host.errors import BeatMapError
from gridcast.host.params import AnalyzerParams


def _corrections(args: argparse.Namespace) -> corrections.Corrections:
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
        console.error(outcome.message)
        return
    for w in outcome.warnings:
        console.warn(w)
    what = "unchanged" if outcome.status == "unchanged" else f"v{outcome.version}"
    console.info(f"{outcome.audio_path} -> {outcome.out_path} ({what}, {outcome.n_beats} beats, "
                 f"{outcome.tempo_bpm:.1f} BPM)")


def analyze_paths(paths: list[str], args: argparse.Namespace,
                  corr: corrections.Corrections) -> list[batch.Outcome]:
    inputs = batch.collect_inputs(paths)
    if not inputs:
        console.warn(f"no audio files in {', '.join(paths)}")
        return []
    fmt = args.format
    jobs = batch.plan(inputs, args.out, fmt or "json")
    cache_dir = None if args.no_cache else batch.default_cache_dir()
    with console.progress(len(jobs), "analyzing") as bar:
        def done(outcome: batch.Outcome) -> None:
            _report(outcome)
            console.advance(bar)

        return batch.run_jobs(jobs, AnalyzerParams(), corr, max(1, args.jobs),
                              args.max_duration, cache_dir, fmt, on_done=done)


def run(args: argparse.Namespace) -> int:
    if not args.audio and not args.watch:
        raise BeatMapError("nothing to analyze: give audio files or folders, or --watch DIR")
    corr = _corrections(args)
    outcomes = analyze_paths(args.audio, args, corr) if args.audio else []
    failed = sum(o.status == "failed" for o in outcomes)
    if len(outcomes) > 1:
        written = sum(o.status == "written" for o in outcomes)
        console.info(f"{len(outcomes)} files: {written} written, "
                     f"{len(outcomes) - written - failed} unchanged, {failed} failed")
    if args.watch:
        from gridcast.host import watch

        if not os.path.isdir(args.watch):
            raise BeatMapError(f"{args.watch}: --watch needs an existing folder")
        analyze_paths([args.watch], args, corr)
        console.info(f"watching {args.watch} for new or changed audio (Ctrl-C to stop)")
        def on_change(paths: list[str]) -> None:
            analyze_paths(paths, args, corr)

        watch.watch(args.watch, on_change)
    return 1 if failed else 0
