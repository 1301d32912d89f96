"""Build a training corpus of composed, rendered clips with exact beats.

    python -m gridcast.host.training.corpus OUT --count 600 --seed 1 [--profile band]

OUT is laid out like the evaluation sets (audio/<id>.flac,
annotations/<id>.beats with ``time<TAB>beat_in_bar``, MANIFEST.tsv), so
``gridcast eval OUT`` scores any analyzer on it. Clip i of seed s is the same
on every machine with the same FluidSynth and soundfonts.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

from gridcast.host import extras
from gridcast.host.cli import output as console
from gridcast.host.training import render, scoregen

FIELDS = ("id", "meter", "bpm", "tempo_curve", "humanized_ms", "soundfont", "tags", "fx")


def build_one(args: tuple[str, int, int, float, list[str], str]) -> dict:
    out, seed, index, seconds, fonts, profile = args
    clip_id = f"gen_{seed}_{index:04d}"
    rng = np.random.default_rng([seed, index])
    clip = render.make_clip(rng, seconds, fonts, profile)
    sf.write(os.path.join(out, "audio", f"{clip_id}.flac"), clip.audio, render.SAMPLE_RATE,
             subtype="PCM_16")
    with open(os.path.join(out, "annotations", f"{clip_id}.beats"), "w") as f:
        for t, b in zip(clip.beats_s, clip.beat_in_bar, strict=True):
            f.write(f"{t:.4f}\t{int(b)}\n")
    return {"id": clip_id, **clip.manifest}


def build(out: str, count: int, seed: int, seconds: float, jobs: int,
          profile: str = "general") -> None:
    fonts = render.available_soundfonts()
    os.makedirs(os.path.join(out, "audio"), exist_ok=True)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    tasks = [(out, seed, i, seconds, fonts, profile) for i in range(count)]
    rows = []
    with ProcessPoolExecutor(jobs) as pool, console.progress(count, "rendering") as bar:
        for row in pool.map(build_one, tasks):
            rows.append(row)
            console.advance(bar)
    with open(os.path.join(out, "MANIFEST.tsv"), "w") as f:
        f.write("\t".join(FIELDS) + "\n")
        for row in rows:
            f.write("\t".join(str(row[k]) for k in FIELDS) + "\n")
    console.info(f"{count} clips in {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", choices=scoregen.PROFILES, default="general",
                        help="general: every meter and texture; band: drums in 4/4 mostly, "
                             "a backbeat or a one-drop, 58-175 BPM (host/training/scoregen.py)")
    args = parser.parse_args(argv)
    extras.require_for_script("mido", "rendering the training corpus")
    build(args.out, args.count, args.seed, args.seconds, args.jobs, args.profile)


if __name__ == "__main__":
    main()
