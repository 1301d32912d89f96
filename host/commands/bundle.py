"""``gridcast keygen`` and ``gridcast bundle build|verify|inspect``."""

from __future__ import annotations

import argparse
import json
import os

from gridcast.host import batch, beatmap, bundling, console, corrections
from gridcast.host.cli import print_json
from gridcast.host.errors import BeatMapError
from gridcast.host.params import AnalyzerParams
from gridcast.protocol import bundle_builder, bundle_format, bundle_reader, keys, reasons
from gridcast.protocol.errors import ProtocolError


def keygen(args: argparse.Namespace) -> int:
    key = keys.generate(args.key_file, overwrite=args.force)
    console.info(f"wrote {args.key_file} ({len(key)} random bytes, key id {keys.key_id(key)}, "
                 "mode 0600)")
    return 0


def _load_map(path: str) -> beatmap.BeatMap:
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
    key = keys.load(args.key_file)
    bm = _load_map(args.source)
    src = bundling.source_from_map(bm, args.track_id, args.min_firmware)
    data = bundle_builder.build(src, key, keys.key_id(key))
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    console.info(f"wrote {args.out}: {len(data)} bytes, {len(src.beats_s)} beats, track "
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
        console.error(f"{args.file}: rejected ({reasons.name(exc.code)}): {exc}")
        return 1
    console.info(f"{args.file}: authentic and intact (track {info.track_id!r} "
                 f"v{info.bundle_version}, {info.beat_count} beats, key {info.key_id})")
    return 0


def inspect(args: argparse.Namespace) -> int:
    size = os.path.getsize(args.file)
    try:
        with open(args.file, "rb") as f:
            info = bundle_reader.inspect(f, size)
    except ProtocolError as exc:
        console.error(f"{args.file}: not a valid bundle ({reasons.name(exc.code)}): {exc}")
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
        "sha256": info.sha256.hex(),
        "bytes_per_audio_minute": round(size / max(h["duration_us"] / 6e7, 1e-9)),
    }
    if args.json:
        print_json(result)
    else:
        console.out.print(json.dumps(result, indent=1), markup=False)
    return 0
