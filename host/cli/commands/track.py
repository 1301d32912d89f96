"""``gridcast track``: the real-time C tracker on a file (hop by hop, as if live) or an input."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gridcast.host.cli import output
from gridcast.host.errors import AudioError

if TYPE_CHECKING:
    import numpy as np

    from gridcast.native import BeatEvent

HELP = "follow beats in real time with the C tracker (a file as if live, or --live)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="?", help="audio file to feed hop by hop as if live")
    p.add_argument("--live", action="store_true",
                   help="follow an audio input device instead of a file (Ctrl-C stops)")
    p.add_argument("--device", default=None, help="input device name or index (--live)")
    p.add_argument("--rate", type=int, default=None, help="input sample rate (--live; "
                   "default: the device's)")
    p.add_argument("--hop", type=int, default=None, metavar="SAMPLES",
                   help="samples per hop (default: about 11.6 ms)")
    p.add_argument("--reference", metavar="FILE", help="annotation file (time<TAB>beat_in_bar): "
                   "also report lock time and F-measure")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--quiet", action="store_true", help="do not print each beat")


def _print_beat(event: BeatEvent) -> None:
    bar = f"beat {event.beat_in_bar}" if event.beat_in_bar else ""
    output.out.print(f"{event.time_s:9.3f} s  {event.bpm:6.1f} BPM  conf {event.confidence:.2f}"
                      f"  {bar}", markup=False)


def steady_from_s(times_s: np.ndarray, tolerance: float = 0.05) -> float | None:
    """Without annotations: when the output settled, i.e. the first of four beats whose
    three intervals agree within 5 % with each other."""
    import numpy as np

    ibi = np.diff(times_s)
    for i in range(len(ibi) - 2):
        window = ibi[i:i + 3]
        if window.max() <= window.min() * (1 + tolerance):
            return float(times_s[i])
    return None


def run(args: argparse.Namespace) -> int:
    if args.live:
        return _run_live(args)
    import numpy as np

    from gridcast.host.evaluation import evaluate
    from gridcast.host.live import realtime

    if not args.audio:
        raise AudioError("track", "give an audio file, or --live for an input device")
    on_beat = None if (args.quiet or args.json) else _print_beat
    result = realtime.track_file(args.audio, hop_size=args.hop, on_beat=on_beat)
    times = result.times_s
    summary: dict = {
        "audio": args.audio,
        "duration_s": round(result.duration_s, 3),
        "beats": len(times),
        "first_beat_s": round(float(times[0]), 3) if len(times) else None,
        "steady_from_s": steady_from_s(times),
        "tempo_bpm": round(float(60 / np.median(np.diff(times))), 2) if len(times) > 2 else None,
        "cpu_s_per_audio_min": round(result.cpu_s / max(result.duration_s, 1e-9) * 60, 4),
        "latency_ms": round(result.latency_s * 1000, 1),
        "state_bytes": result.state_bytes,
    }
    if args.reference:
        ref, ref_bib = evaluate.read_annotation(args.reference)
        bib = result.beat_in_bar
        summary["lock_s"] = round(realtime.lock_time_s(ref, times, result.duration_s), 3)
        summary["scores"] = evaluate.score(ref, ref_bib, times,
                                           bib if (bib > 0).any() else None)
    if args.json:
        output.print_json(summary | {"beat_times_s": [round(float(t), 4) for t in times]})
        return 0
    steady = summary["steady_from_s"]
    output.info(f"{summary['beats']} beats in {summary['duration_s']:.1f} s, "
                f"tempo {summary['tempo_bpm'] or 0:.1f} BPM, first beat at "
                f"{summary['first_beat_s'] or 0:.2f} s, steady from "
                f"{'never' if steady is None else f'{steady:.2f} s'}; "
                f"{summary['cpu_s_per_audio_min']:.3f} CPU s per audio minute")
    if "lock_s" in summary:
        output.info(f"against {args.reference}: locked after {summary['lock_s']:.2f} s, "
                    f"F-measure {summary['scores']['f_measure']:.3f}")
    return 0


def _run_live(args: argparse.Namespace) -> int:
    import datetime

    from gridcast.host.live import realtime

    def print_heard(event: BeatEvent, heard_us: float) -> None:
        # when the beat was heard (the input's ADC time on the agent's clock), not when
        # its block was processed
        heard = datetime.datetime.fromtimestamp(heard_us / 1e6).strftime("%H:%M:%S.%f")[:-3]
        bar = f"beat {event.beat_in_bar}" if event.beat_in_bar else ""
        output.out.print(f"{heard}  {event.time_s:9.3f} s  {event.bpm:6.1f} BPM  conf "
                          f"{event.confidence:.2f}  {bar}", markup=False)

    output.info("following the input; Ctrl-C stops")
    try:
        stats = realtime.follow_input(on_heard_beat=print_heard, device=args.device,
                                      rate=args.rate, hop_size=args.hop)
    except KeyboardInterrupt:
        return 0
    output.info(f"{stats.beats} beats in {stats.seconds:.1f} s"
                + (f"; the input overflowed {stats.overflows} times (audio lost)"
                    if stats.overflows else ""))
    return 0
