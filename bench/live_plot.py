"""Light against sound in live mode, as a PNG: where each clip locked and how every beat landed.

    .venv/bin/python bench/live_plot.py RAW.json SET_DIR -o live.png
    .venv/bin/python bench/live.py SET_DIR [--replay] --plot live.png   # the same, at the end

RAW.json is what ``bench/live.py --raw`` writes (the clips' starts on the agent's
timeline, every device's LED true times, the tracker's beats). For every annotated
beat the error is LED − annotation (ms), the nearest LED beat of each device; the top
and left panels show the median over the devices (they agree within a millisecond,
docs/live.md), the right one pools the devices as ``bench/live.py``'s figures do.

- Top: one row per clip, one mark per annotated beat, coloured by |error|: within
  10 ms, within 25 ms (the issue's median and p90 bounds), within 70 ms (a hit for
  the F-measure), or missed; a black bar where the LEDs locked (4 beats in a row hit,
  ``realtime.lock_time_s``).
- Bottom left: the signed error against the time since the clip's first beat, so the
  lock-in and a clip's bias show.
- Bottom right: the signed errors after lock, with the median and p90 of |error|.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

MATCH_MS = 70.0
BANDS = ((10.0, "#1e8449", "≤ 10 ms"), (25.0, "#82e0aa", "≤ 25 ms"),
         (MATCH_MS, "#f5b041", "≤ 70 ms"))
MISS_COLOUR = "#c0392b"


def clip_errors(raw: dict, clips: list) -> list[dict]:
    """Per clip: id, annotated beats (s from the clip's start), signed LED error per
    beat (ms; NaN where no LED beat is within 70 ms) and the lock time (s)."""
    from gridcast.host.live.realtime import lock_time_s, nearest_error_s

    by_name = {Path(c.audio_path).name: c for c in clips}  # the run may have used another path
    leds = [np.sort(np.asarray(times, dtype=float)) for times in raw["leds"].values()]
    out = []
    for record in raw["records"]:
        clip = by_name.get(Path(record["path"]).name)
        if clip is None:
            continue
        start, duration = record["start_us"], record["duration_s"]
        ref = np.asarray(clip.beats, dtype=float)
        per_device, locks = [], []
        for times in leds:
            s = (times - start) / 1e6
            s = s[(s >= 0) & (s <= duration)]
            locks.append(lock_time_s(ref, s, duration))
            err_ms = nearest_error_s(ref, s) * 1000  # inf without any LED beat
            per_device.append(np.where(np.abs(err_ms) <= MATCH_MS, err_ms, np.nan))
        stacked = np.vstack(per_device) if per_device else np.full((1, len(ref)), np.nan)
        with warnings.catch_warnings():  # a beat no device hit stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            error = np.nanmedian(stacked, axis=0)
        # after each device's own lock, pooled over the devices: bench/live.py's convention
        after_lock = [e[(ref >= ref[0] + lock) & np.isfinite(e)]
                      for e, lock in zip(per_device, locks, strict=True)] if len(ref) else []
        out.append({"id": Path(record["path"]).stem, "beats_s": ref, "error_ms": error,
                    "after_lock_ms": np.concatenate(after_lock) if after_lock else np.zeros(0),
                    "lock_s": float(np.median(locks)) if locks else float(duration)})
    return out


def render(raw: dict, clips: list, out_png: str, title: str = "live mode") -> dict:
    """Draw the figure; return the figures it shows (after lock: median and p90 of
    |error|, hits, misses; the median lock)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = clip_errors(raw, clips)
    fig = plt.figure(figsize=(13, 4 + 0.22 * max(len(rows), 1) + 3.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[0.22 * max(len(rows), 1) + 1, 3.2],
                            width_ratios=[3, 1])
    ax_r = fig.add_subplot(grid[0, :])
    ax_t = fig.add_subplot(grid[1, 0])
    ax_h = fig.add_subplot(grid[1, 1])
    after_lock: list[float] = []
    for y, row in enumerate(rows):
        t = row["beats_s"] - row["beats_s"][0] if len(row["beats_s"]) else row["beats_s"]
        err = row["error_ms"]
        miss = ~np.isfinite(err)
        ax_r.scatter(t[miss], np.full(miss.sum(), y), s=9, marker="x", color=MISS_COLOUR,
                     lw=0.8)
        lower = 0.0
        for bound, colour, _ in BANDS:
            pick = ~miss & (np.abs(np.nan_to_num(err)) > lower) & (np.abs(np.nan_to_num(err))
                                                                   <= bound)
            ax_r.scatter(t[pick], np.full(pick.sum(), y), s=9, color=colour)
            lower = bound
        ax_r.plot([row["lock_s"]] * 2, [y - 0.45, y + 0.45], color="black", lw=1.6)
        after_lock += row["after_lock_ms"].tolist()
        ax_t.plot(t[~miss], err[~miss], ".", ms=2.5, alpha=0.4, color="#2e86c1")
    ax_r.set_yticks(range(len(rows)), [r["id"] for r in rows], fontsize=7)
    ax_r.set_ylim(len(rows) - 0.5, -0.5)
    ax_r.set_xlabel("seconds since the clip's first annotated beat")
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=lab) for _, c, lab in BANDS]
    handles += [plt.Line2D([], [], ls="", marker="x", color=MISS_COLOUR, label="missed"),
                plt.Line2D([], [], color="black", label="lock")]
    ax_r.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5,
                fontsize=8, frameon=False)
    for bound in (-25, -10, 10, 25):
        ax_t.axhline(bound, color="grey", lw=0.6, ls="--" if abs(bound) == 25 else ":")
    ax_t.set_ylim(-MATCH_MS, MATCH_MS)
    ax_t.set_xlabel("seconds since the clip's first annotated beat")
    ax_t.set_ylabel("LED − annotated beat (ms)")
    ax_t.grid(alpha=0.3)
    figures = {"clips": len(rows), "beats_after_lock": len(after_lock),
               "lock_s_median": round(float(np.median([r["lock_s"] for r in rows])), 2)
               if rows else None}
    if after_lock:
        e = np.asarray(after_lock)
        figures["median_abs_ms"] = round(float(np.median(np.abs(e))), 2)
        figures["p90_abs_ms"] = round(float(np.percentile(np.abs(e), 90)), 2)
        figures["signed_median_ms"] = round(float(np.median(e)), 2)
        ax_h.hist(e, bins=np.arange(-MATCH_MS, MATCH_MS + 1, 2.5), orientation="horizontal",
                  color="#5d6d7e")
        ax_h.set_title(f"after lock: |e| median {figures['median_abs_ms']:.1f}, "
                       f"p90 {figures['p90_abs_ms']:.1f} ms", fontsize=9)
    ax_h.set_ylim(-MATCH_MS, MATCH_MS)
    ax_h.set_xlabel("beats")
    ax_h.grid(alpha=0.3)
    ax_r.set_title(f"{title}: lock median {figures['lock_s_median']} s", pad=22)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", help="the JSON that bench/live.py --raw wrote")
    parser.add_argument("set_dir", help="the set the run played (audio/ and annotations/)")
    parser.add_argument("-o", "--out", required=True, help="PNG to write")
    args = parser.parse_args()
    from gridcast.host.evaluation.evaluate import load_dataset

    with open(args.raw) as f:
        raw = json.load(f)
    figures = render(raw, load_dataset(args.set_dir), args.out,
                     title=f"live mode, {Path(args.set_dir).name}")
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
