"""The real-time C tracker against aubio's tempo tracker, on the same audio in the same run.

For each system, fed the same raw float32 mono files at 44.1 kHz with 512-sample
hops by a small C driver (native/tools/track_raw.c, bench/native/aubio_track_raw.c):

- instructions per audio second under ``valgrind --tool=callgrind`` (program start-up,
  measured on a near-empty file, is subtracted), and their ratio;
- CPU seconds per audio minute over all clips (start-up subtracted the same way);
- the worst single hop (wall time), and the heap at its peak (valgrind massif);
- beat F-measure and lock time against the annotations, when the clips have them.

Needs: cmake, a C compiler, valgrind, and aubio's headers (Debian: ``apt-get install
valgrind libaubio-dev``). Audio: ../shared/data/beats-rendered and ../shared/data/beats
when present (the development sets), else the demo song.

    python bench/native.py [--clips N] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RATE = 44_100
HOP = 512
# Analysis window per system: gridcast's default at 44.1 kHz (93 ms; it decimates to
# 11 kHz, so this is a 1024-point FFT), aubio's default for its tempo tracker.
WINDOW = {"gridcast": 4096, "aubio": 1024}
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        sys.exit(f"bench/native.py: {tool} is missing; install it with `apt-get install {package}`")


def build(workdir: str) -> tuple[str, str]:
    """gridcast's driver through the project's CMake (Release), aubio's against libaubio."""
    need("cmake", "cmake")
    need("valgrind", "valgrind")
    build_dir = os.path.join(ROOT, "build", "native-release")
    subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DGRIDCAST_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "--target", "gridcast_track_raw"], check=True,
                   stdout=subprocess.DEVNULL)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "aubio"], capture_output=True,
                           text=True)
    if flags.returncode != 0:
        sys.exit("bench/native.py: aubio's headers are missing; install them with "
                 "`apt-get install libaubio-dev`")
    aubio_bin = os.path.join(workdir, "aubio_track_raw")
    subprocess.run(["cc", "-O2", "-o", aubio_bin,
                    os.path.join(ROOT, "bench", "native", "aubio_track_raw.c"),
                    *flags.stdout.split()], check=True)
    return os.path.join(build_dir, "native", "gridcast_track_raw"), aubio_bin


def clips(limit: int | None) -> list[tuple[str, np.ndarray | None]]:
    shared = os.path.join(ROOT, "..", "shared", "data")
    found = []
    for folder in ("beats-rendered", "beats"):
        for path in sorted(glob.glob(os.path.join(shared, folder, "audio", "*"))):
            if os.path.splitext(path)[1].lower() not in AUDIO_EXTENSIONS:
                continue  # e.g. a beat map someone wrote next to the audio
            ann = os.path.join(shared, folder, "annotations",
                               os.path.splitext(os.path.basename(path))[0] + ".beats")
            found.append((path, np.loadtxt(ann, ndmin=2)[:, 0] if os.path.exists(ann) else None))
    if not found:
        from gridcast.host.evaluation import demo_audio

        signal, beats, _ = demo_audio.render(seconds=30.0)
        path = os.path.join(tempfile.mkdtemp(), "demo.wav")
        sf.write(path, signal, demo_audio.SAMPLE_RATE)
        found = [(path, beats)]
    return found[:limit] if limit else found


def to_raw(path: str, workdir: str) -> tuple[str, float]:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = x.mean(axis=1)
    if sr != RATE:
        g = np.gcd(sr, RATE)
        mono = resample_poly(mono, RATE // g, sr // g)
    raw = os.path.join(workdir, os.path.basename(path) + ".f32")
    mono.astype("<f4").tofile(raw)
    return raw, len(mono) / RATE


def args_for(name: str, binary: str, raw: str) -> list[str]:
    return [binary, raw, str(RATE), str(HOP), str(WINDOW[name])]


LAST_STATE_BYTES: dict[str, int] = {}


def run(name: str, binary: str, raw: str) -> tuple[np.ndarray, float]:
    proc = subprocess.run(args_for(name, binary, raw), capture_output=True, text=True, check=True)
    beats = np.array([float(v) for v in proc.stdout.split()])
    worst = float(re.search(r"worst_hop_us ([\d.]+)", proc.stderr).group(1))  # type: ignore[union-attr]
    state = re.search(r"state_bytes (\d+)", proc.stderr)  # gridcast's driver reports it
    if state:
        LAST_STATE_BYTES[name] = int(state.group(1))
    return beats, worst


def callgrind(name: str, binary: str, raw: str) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          *args_for(name, binary, raw)], capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))  # type: ignore[union-attr]


def peak_heap(name: str, binary: str, raw: str, workdir: str) -> int:
    out_file = os.path.join(workdir, "massif.out")
    subprocess.run(["valgrind", "--tool=massif", f"--massif-out-file={out_file}",
                    *args_for(name, binary, raw)], capture_output=True, check=True)
    with open(out_file, encoding="utf-8") as f:
        return max(int(v) for v in re.findall(r"mem_heap_B=(\d+)", f.read()))


def cpu_seconds(name: str, binary: str, raws: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for raw in raws:
        run(name, binary, raw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None, help="use only the first N clips")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from gridcast.host.evaluation import evaluate
    from gridcast.host.live import realtime

    workdir = tempfile.mkdtemp(prefix="gridcast-bench-")
    systems = dict(zip(("gridcast", "aubio"), build(workdir), strict=True))
    material = clips(args.clips)
    raws = [to_raw(path, workdir) for path, _ in material]
    audio_s = sum(d for _, d in raws)
    empty = os.path.join(workdir, "empty.f32")
    np.zeros(HOP * 2, dtype="<f4").tofile(empty)
    probe_raw, probe_s = raws[0]
    report: dict = {"clips": len(raws), "audio_s": round(audio_s, 1), "rate_hz": RATE,
                    "hop": HOP, "systems": {}}
    for name, binary in systems.items():
        startup = callgrind(name, binary, empty)
        instr = (callgrind(name, binary, probe_raw) - startup) / probe_s
        startup_cpu = cpu_seconds(name, binary, [empty] * 20) / 20
        cpu = cpu_seconds(name, binary, [r for r, _ in raws]) - startup_cpu * len(raws)
        scores, locks, worst = [], [], 0.0
        for (raw, duration), (_, ref) in zip(raws, material, strict=True):
            beats, worst_us = run(name, binary, raw)
            worst = max(worst, worst_us)
            if ref is not None:
                scores.append(float(evaluate.score(ref, None, beats, None)["f_measure"] or 0.0))
                locks.append(realtime.lock_time_s(ref, beats, duration))
        report["systems"][name] = {
            "instructions_per_audio_s": round(instr),
            "cpu_s_per_audio_min": round(cpu / audio_s * 60, 4),
            "worst_hop_us": round(worst, 1),
            "peak_heap_bytes": peak_heap(name, binary, probe_raw, workdir),
            "state_bytes": LAST_STATE_BYTES.get(name),
            "f_measure": round(float(np.mean(scores)), 4) if scores else None,
            "lock_s_mean": round(float(np.mean(locks)), 3) if locks else None,
            "lock_s_median": round(float(np.median(locks)), 3) if locks else None,
        }
    g, a = report["systems"]["gridcast"], report["systems"]["aubio"]
    report["instruction_ratio"] = round(g["instructions_per_audio_s"] /
                                        a["instructions_per_audio_s"], 3)
    report["cpu_ratio"] = round(g["cpu_s_per_audio_min"] / max(a["cpu_s_per_audio_min"], 1e-9), 3)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['clips']} clips, {report['audio_s']:.0f} s of audio at {RATE} Hz, "
          f"{HOP}-sample hops")
    print(f"{'':10s} {'instr/audio s':>14s} {'CPU s/audio min':>16s} {'worst hop':>10s} "
          f"{'peak heap':>10s} {'F':>6s} {'lock mean':>10s} {'lock median':>12s}")
    for name, r in report["systems"].items():
        print(f"{name:10s} {r['instructions_per_audio_s']:14,d} {r['cpu_s_per_audio_min']:16.4f} "
              f"{r['worst_hop_us']:8.1f}us {r['peak_heap_bytes']:10,d} "
              f"{r['f_measure'] or 0:6.3f} {r['lock_s_mean'] or 0:9.2f}s "
              f"{r['lock_s_median'] or 0:11.2f}s")
    print(f"gridcast / aubio: instructions {report['instruction_ratio']:.3f}, "
          f"CPU {report['cpu_ratio']:.3f}; gridcast's tracker state "
          f"{report['systems']['gridcast']['state_bytes']:,} bytes")


if __name__ == "__main__":
    main()
