"""``gridcast demo``: generate a song, analyze it, score it against the truth, plot it.

The device half of the demo (broker, simulated devices, deploy, play, drift
table) joins when the agent and firmware exist; this part needs no network.
"""

from __future__ import annotations

import argparse
import os

import soundfile as sf

from gridcast.host import batch, console, corrections, demo_audio, evaluate, plot
from gridcast.host.cli import print_json
from gridcast.host.params import AnalyzerParams


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    wav = os.path.join(args.out, "demo-song.wav")
    signal, beats, bib = demo_audio.render(seconds=args.seconds)
    sf.write(wav, signal, demo_audio.SAMPLE_RATE)
    console.info(f"generated {wav} ({args.seconds:.0f} s, {len(beats)} beats)")
    job = batch.Job(wav, os.path.join(args.out, "demo-song.beatmap.json"))
    outcome = batch.run_job(job, AnalyzerParams(), corrections.Corrections())
    if outcome.status == "failed":
        console.error(outcome.message)
        return 1
    from gridcast.host import beatmap

    bm = beatmap.load(job.out_path)
    scores = evaluate.score(beats, bib, bm.beats, bm.beat_in_bar)
    png = plot.render(bm, os.path.join(args.out, "demo-song.png"), wav)
    result = {"audio": wav, "beatmap": job.out_path, "plot": png,
              "tempo_bpm": round(bm.tempo_bpm, 2), "beats": len(bm.beats), "meter": bm.meter,
              "scores": {k: (round(v, 4) if v is not None else None) for k, v in scores.items()}}
    if args.json:
        print_json(result)
    else:
        console.info(f"beat map {job.out_path}: {len(bm.beats)} beats, {bm.tempo_bpm:.1f} BPM, "
                     f"{bm.meter} beats per bar")
        console.info(f"against the generated truth: beat F {scores['f_measure']:.3f}, "
                     f"downbeat F {scores['downbeat_f']:.3f}")
        console.info(f"plot {png}")
    return 0
