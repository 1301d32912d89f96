"""``gridcast plot``: a beat map as a PNG."""

from __future__ import annotations

import argparse
import os

from gridcast.host import beatmap, console, plot


def run(args: argparse.Namespace) -> int:
    bm = beatmap.load(args.map)
    audio_path = args.audio
    if audio_path is None and bm.metadata.get("audio_file"):
        candidate = os.path.join(os.path.dirname(os.path.abspath(args.map)),
                                 str(bm.metadata["audio_file"]))
        audio_path = candidate if os.path.exists(candidate) else None
    plot.render(bm, args.out, audio_path, args.start, args.end)
    console.info(f"wrote {args.out}")
    return 0
