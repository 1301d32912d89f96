"""``gridcast plot``: a beat map as a PNG."""

from __future__ import annotations

import argparse
import os

from gridcast.host.cli import output

HELP = "draw a beat map as a PNG"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", help="beat map (.json or .msgpack)")
    p.add_argument("-o", "--out", required=True, help="PNG file to write")
    p.add_argument("--audio", help="audio file for the waveform (default: the map's "
                   "audio file if it sits next to the map)")
    p.add_argument("--start", type=float, default=0.0, help="first second to show")
    p.add_argument("--end", type=float, default=None, help="last second to show")


def run(args: argparse.Namespace) -> int:
    from gridcast.host.beatmaps import beatmap, plot

    bm = beatmap.load(args.map)
    audio_path = args.audio
    if audio_path is None and bm.metadata.get("audio_file"):
        candidate = os.path.join(os.path.dirname(os.path.abspath(args.map)),
                                 str(bm.metadata["audio_file"]))
        audio_path = candidate if os.path.exists(candidate) else None
    plot.render(bm, args.out, audio_path, args.start, args.end)
    output.info(f"wrote {args.out}")
    return 0
