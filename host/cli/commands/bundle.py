"""``gridcast bundle build|verify|inspect``: signed device bundles from beat maps."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from gridcast.host.atomic_file import write_atomically
from gridcast.host.cli import output
from gridcast.host.errors import BeatMapError
from gridcast.protocol import bundle_format, bundle_reader, keys, reasons
from gridcast.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from gridcast.host.beatmaps import beatmap

HELP = "build, verify or inspect device bundles"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="beat map or audio -> signed bundle")
    b.add_argument("source", help="beat map (.json/.msgpack) or audio file (analyzed first)")
    b.add_argument("--key-file", required=True)
    b.add_argument("-o", "--out", required=True, help="bundle file to write")
    b.add_argument("--track-id", help="track name on devices (default: the audio file name)")
    b.add_argument("--min-firmware", default="0.1.0", help="oldest firmware that may play it")
    v = sub.add_parser("verify", help="exit 0 when authentic and intact, else 1 and the reason")
    v.add_argument("file")
    v.add_argument("--key-file", required=True)
    v.add_argument("--firmware", default="0.1.0", help="firmware version to check against")
    i = sub.add_parser("inspect", help="header, sizes and integrity (no key needed)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    actions = {"build": build, "verify": verify, "inspect": inspect}
    return actions[args.bundle_command](args)


def _load_map(path: str) -> beatmap.BeatMap:
    from gridcast.host.analysis.params import AnalyzerParams
    from gridcast.host.beatmaps import beatmap, corrections
    from gridcast.host.library import batch

    if path.endswith((".json", ".msgpack")):
        return beatmap.load(path)
    # Audio: analyze it (through the cache) into a map beside the bundle.
    job = batch.Job(path, os.path.splitext(path)[0] + batch.MAP_SUFFIX + ".json")
    outcome = batch.run_job(job, AnalyzerParams(), corrections.Corrections(),
                            cache_dir=batch.default_cache_dir())
    if outcome.status == "failed":
        raise BeatMapError(outcome.message)
    return beatmap.load(job.out_path)


def build(args: argparse.Namespace) -> int:
    from gridcast.host.beatmaps import bundling
    from gridcast.protocol import bundle_builder

    key = keys.load(args.key_file)
    bm = _load_map(args.source)
    src = bundling.source_from_map(bm, args.track_id, args.min_firmware)
    data = bundle_builder.build(src, key, keys.key_id(key))
    write_atomically(args.out, data)
    output.info(f"wrote {args.out}: {len(data)} bytes, {len(src.beats_s)} beats, track "
                f"{src.track_id!r} v{src.bundle_version}, key {keys.key_id(key)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    key = keys.load(args.key_file)
    size = os.path.getsize(args.file)
    try:
        with open(args.file, "rb") as f:
            info = bundle_reader.verify(f, size, {keys.key_id(key): key},
                                        bundle_format.version_to_int(args.firmware))
    except ProtocolError as exc:
        output.error(f"{args.file}: rejected ({reasons.name(exc.code)}): {exc}")
        return 1
    output.info(f"{args.file}: authentic and intact (track {info.track_id!r} "
                f"v{info.bundle_version}, {info.beat_count} beats, key {info.key_id})")
    return 0


def inspect(args: argparse.Namespace) -> int:
    size = os.path.getsize(args.file)
    try:
        with open(args.file, "rb") as f:
            info = bundle_reader.inspect(f, size)
    except ProtocolError as exc:
        output.error(f"{args.file}: not a valid bundle ({reasons.name(exc.code)}): {exc}")
        return 1
    h = info.header
    result = {
        "size_bytes": size,
        "duration_s": h["duration_us"] / 1e6,
        "beats": info.beat_count,
        "schema_version": h["schema_version"],
        "bundle_version": h["bundle_version"],
        "track_id": h["track_id"],
        "key_id": h["key_id"],
        "tempo_bpm": h["tempo_mbpm"] / 1000,
        "meter": h["meter"],
        "min_firmware": bundle_format.int_to_version(h["min_firmware"]),
        "created_s": h["created_s"],
        "audio_sha256": h["audio_sha256"].hex(),
        "envelope_rate_hz": info.env_rate_mhz / 1000,
        "envelope_frames": info.env_frames,
        "sections": info.section_count,
        "phrases": info.phrase_count,
        "sha256": info.sha256.hex(),
        "bytes_per_audio_minute": round(size / max(h["duration_us"] / 6e7, 1e-9)),
    }
    if args.json:
        output.print_json(result)
    else:
        output.out.print(json.dumps(result, indent=1), markup=False)
    return 0
