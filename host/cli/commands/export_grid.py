"""``gridcast export-grid``: beat maps -> a rekordbox XML collection to check them there."""

from __future__ import annotations

import argparse

from gridcast.host.cli import output

HELP = "export beat maps as a rekordbox XML collection (tempo markers and cues)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("maps", nargs="+", metavar="MAP", help="beat map files (.json, .msgpack)")
    p.add_argument("--rekordbox", required=True, metavar="OUT.xml",
                   help="the rekordbox XML to write (File > Import Collection in rekordbox)")
    p.add_argument("--sections-as-cues", action="store_true", help="also a memory cue at "
                   "each section's start, named by its role (intro, drop, ...)")


def run(args: argparse.Namespace) -> int:
    from gridcast.host.beatmaps import beatmap
    from gridcast.host.djgrids import rekordbox_export

    maps = [(path, beatmap.load(path)) for path in args.maps]
    rekordbox_export.write(maps, args.rekordbox, args.sections_as_cues)
    n_markers = sum(len(rekordbox_export.tempo_markers(bm.beats, bm.beat_in_bar))
                    for _, bm in maps)
    output.info(f"{args.rekordbox}: {len(maps)} track(s), {n_markers} tempo markers, "
                f"{sum(len(bm.cues) for _, bm in maps)} cues")
    return 0
