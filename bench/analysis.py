"""Offline analysis cost: gridcast against librosa on the same clips, in one run.

Prints CPU seconds per audio minute (decode included), the numba compile time
(cold, then from cache), and peak RSS, each system measured in its own fresh
process so that neither inflates the other's memory. A 10-minute 44.1 kHz
stereo track (the demo song tiled) measures peak memory on a long file.

    python bench/analysis.py                      # the shared rendered set
    python bench/analysis.py path/to/clips/ --json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CLIPS = os.path.join(HERE, "..", "..", "shared", "data", "beats-rendered", "audio")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(system: str, files: list[str]) -> dict:
    """Runs inside a fresh process: warm up on the first file, then time every file."""
    import soundfile as sf

    stage_s = {"downbeats": 0.0}
    if system == "gridcast":
        from gridcast.host.analysis import analyzer, downbeats

        bars = downbeats.beat_in_bar_from_activation

        def timed_bars(*args, **kwargs):  # the bar stage's own share of the CPU
            t = time.process_time()
            try:
                return bars(*args, **kwargs)
            finally:
                stage_s["downbeats"] += time.process_time() - t

        downbeats.beat_in_bar_from_activation = timed_bars  # type: ignore[assignment]

        def run(path: str) -> int:
            return len(analyzer.analyze_file(path).beats)
    elif system == "librosa":
        import librosa

        def run(path: str) -> int:
            y, sr = librosa.load(path, sr=22050, mono=True)
            return len(librosa.beat.beat_track(y=y, sr=sr, units="time")[1])
    else:
        raise SystemExit(f"unknown system {system}")
    t0 = time.process_time()
    run(files[0])  # JIT compile (numba) or load caches
    warmup_s = time.process_time() - t0
    audio_s = 0.0
    stage_s["downbeats"] = 0.0
    t0 = time.process_time()
    for path in files:
        run(path)
        audio_s += sf.info(path).duration
    cpu_s = time.process_time() - t0
    return {"system": system, "files": len(files), "audio_s": round(audio_s, 2),
            "cpu_s": round(cpu_s, 3), "cpu_s_per_audio_min": round(cpu_s / (audio_s / 60), 4),
            "first_call_s": round(warmup_s, 3), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "downbeat_cpu_s_per_audio_min": (round(stage_s["downbeats"] / (audio_s / 60), 4)
                                             if system == "gridcast" else None)}


def spawn(system: str, files: list[str], env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", system, *files]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def long_track(folder: str, minutes: float = 10.0) -> str:
    import numpy as np
    import soundfile as sf

    from gridcast.host.evaluation import demo_audio

    signal, _, _ = demo_audio.render(seconds=30.0)
    path = os.path.join(folder, "ten-minutes.flac")
    reps = int(minutes * 60 / 30)
    with sf.SoundFile(path, "w", 44100, 2, format="FLAC") as f:
        up = np.interp(np.arange(30 * 44100) / 44100,
                       np.arange(len(signal)) / demo_audio.SAMPLE_RATE, signal).astype(np.float32)
        stereo = np.stack([up, up * 0.9], axis=1)
        for _ in range(reps):
            f.write(stereo)
    return path


def main() -> None:
    from gridcast.host.library import batch  # only audio files (a folder may hold maps too)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="*", help="audio files or folders")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-long", action="store_true", help="skip the 10-minute track")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.inputs)))
        return
    files: list[str] = []
    for p in args.inputs or [DEFAULT_CLIPS]:
        files += sorted(f for f in glob.glob(os.path.join(p, "*.*"))
                        if batch.is_audio(f)) if os.path.isdir(p) else [p]
    if not files:
        raise SystemExit("no audio files: give clips or folders")
    report: dict = {"clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # Cold numba compile: an empty cache directory; then the same from the cache.
        cold = spawn("gridcast", files[:1], {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba")})
        warm = spawn("gridcast", files[:1], {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba")})
        report["numba"] = {"first_call_cold_s": cold["first_call_s"],
                           "first_call_cached_s": warm["first_call_s"]}
        for system in ("gridcast", "librosa"):
            report["clips"][system] = spawn(system, files)
        if not args.skip_long:
            path = long_track(tmp)
            report["ten_minutes"] = {s: spawn(s, [path]) for s in ("gridcast", "librosa")}
    g, lr = report["clips"]["gridcast"], report["clips"]["librosa"]
    report["cpu_ratio_gridcast_to_librosa"] = round(
        g["cpu_s_per_audio_min"] / lr["cpu_s_per_audio_min"], 3)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{len(files)} clips, {g['audio_s'] / 60:.1f} audio minutes")
    print(f"{'system':10s} {'CPU s/audio min':>16s} {'first call s':>13s} {'peak RSS MB':>12s}")
    for s in ("gridcast", "librosa"):
        r = report["clips"][s]
        print(f"{s:10s} {r['cpu_s_per_audio_min']:16.4f} {r['first_call_s']:13.3f} "
              f"{r['peak_rss_mb']:12.1f}")
    print(f"gridcast / librosa CPU: {report['cpu_ratio_gridcast_to_librosa']:.2f}x "
          f"(of which the bar stage {g['downbeat_cpu_s_per_audio_min']:.4f} s/audio min)")
    print(f"numba first call: cold {report['numba']['first_call_cold_s']:.2f} s, "
          f"cached {report['numba']['first_call_cached_s']:.2f} s")
    if "ten_minutes" in report:
        for s, r in report["ten_minutes"].items():
            print(f"10-minute 44.1 kHz stereo track, {s}: peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"CPU {r['cpu_s']:.2f} s (after warm-up)")


if __name__ == "__main__":
    main()
