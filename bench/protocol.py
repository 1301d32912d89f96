"""Bundle size and device-side verification cost, measured in one run.

    python bench/protocol.py [--json]

Sizes: a 5-minute track at 128 BPM with three 50 Hz envelopes, as a bundle and
as the naive JSON of the same data, per audio minute. Device cost: the real
MicroPython unix port (with a 256 KB heap, as a small board has) verifies the
5-minute bundle; best time of 20 runs and heap growth measured with
gc.mem_alloc (no collection in between, so it counts every allocation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from gridcast.protocol import bundle_builder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)
from tests.device.tree import micropython, protocol_tree  # noqa: E402

MINUTES = 5
BPM = 128
KEY = bytes(range(32))


def five_minute_source() -> bundle_builder.BundleSource:
    rng = np.random.default_rng(0)
    beats = np.arange(0.3, MINUTES * 60 - 0.2, 60 / BPM) + rng.normal(0, 0.003, 1)[0]
    n = len(beats)
    env = tuple(rng.random(MINUTES * 60 * 50) for _ in range(3))
    return bundle_builder.BundleSource(
        "bench", bytes(32), 1, 1_795_000_000, MINUTES * 60.0, BPM, beats,
        [i % 4 + 1 for i in range(n)], rng.random(n), 50.0, env)


def naive_json(src: bundle_builder.BundleSource) -> tuple[int, int]:
    beats = {"beats": [round(float(t), 4) for t in src.beats_s],
             "beat_in_bar": list(src.beat_in_bar),
             "beat_strength": [round(float(s), 3) for s in src.strength]}
    whole = {**beats, "envelopes": {k: [round(float(v), 3) for v in e]
                                    for k, e in zip(("bass", "mid", "high"), src.envelopes,
                                                    strict=True)}}
    return len(json.dumps(beats)), len(json.dumps(whole))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    src = five_minute_source()
    data = bundle_builder.build(src, KEY, "bench")
    n = len(src.beats_s)
    beat_bytes = 6 * n
    json_beats, json_whole = naive_json(src)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "five.gcb")
        with open(path, "wb") as f:
            f.write(data)
        tree = protocol_tree(os.path.join(tmp, "tree"))
        run = subprocess.run([micropython(), "-X", "heapsize=256K",
                              os.path.join(HERE, "device", "verify_bundle.py"), path, KEY.hex(),
                              "bench", "20"], capture_output=True, text=True, check=True,
                             env={**os.environ, "MICROPYPATH": tree})
        device = json.loads(run.stdout.strip().splitlines()[-1])
    report = {
        "audio_minutes": MINUTES, "bpm": BPM, "beats": n,
        "beats_section_bytes_per_min": round(beat_bytes / MINUTES),
        "bundle_bytes_per_min": round(len(data) / MINUTES),
        "naive_json_beats_bytes_per_min": round(json_beats / MINUTES),
        "naive_json_bytes_per_min": round(json_whole / MINUTES),
        "micropython_verify_ms": round(device["verify_us_best"] / 1000, 2),
        "micropython_heap_growth_bytes": device["heap_growth_bytes"],
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{MINUTES}-minute track, {BPM} BPM, {n} beats, three 50 Hz envelopes")
    print(f"beats + downbeats + strengths: {report['beats_section_bytes_per_min']:>6} B/min "
          f"(naive JSON {report['naive_json_beats_bytes_per_min']} B/min)")
    print(f"whole bundle:                  {report['bundle_bytes_per_min']:>6} B/min "
          f"(naive JSON {report['naive_json_bytes_per_min']} B/min)")
    print(f"MicroPython unix port, 256 KB heap: verify {report['micropython_verify_ms']} ms "
          f"(best of 20), heap growth {report['micropython_heap_growth_bytes']} bytes")


if __name__ == "__main__":
    main()
