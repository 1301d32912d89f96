"""bench/live_plot.py: the live bench's picture scores beats as the bench does."""

from __future__ import annotations

import numpy as np

from bench.live_plot import clip_errors, render
from gridcast.host.evaluation.evaluate import Clip

START_US = 5_000_000.0
BEATS = np.arange(0.5, 10.0, 0.5)  # s from the clip's start


def _raw() -> tuple[dict, list[Clip]]:
    # Two devices: the first two beats 200 ms off (missed), then 8 ms late; the second
    # device 0.4 ms later than the first. A second clip no device lit at all.
    led = np.r_[BEATS[:2] + 0.2, BEATS[2:] + 0.008]
    raw = {"records": [
        {"path": "/elsewhere/audio/one.flac", "start_us": START_US, "duration_s": 10.0},
        {"path": "/elsewhere/audio/two.flac", "start_us": START_US + 20e6, "duration_s": 10.0}],
        "leds": {"a": (START_US + led * 1e6).tolist(),
                 "b": (START_US + led * 1e6 + 400).tolist()},
        "tracker": [], "net_ms": 0.3}
    clips = [Clip("one", "../set/audio/one.flac", BEATS, None),
             Clip("two", "../set/audio/two.flac", BEATS, None)]
    return raw, clips


def test_each_beat_gets_its_error_and_each_clip_its_lock():
    raw, clips = _raw()
    one, two = clip_errors(raw, clips)
    assert one["id"] == "one"
    assert np.isnan(one["error_ms"][:2]).all()  # 200 ms off: missed
    assert np.allclose(one["error_ms"][2:], 8.2, atol=0.01)  # the median of 8.0 and 8.4
    assert one["lock_s"] == 1.0  # from the third beat on, counted from the first
    assert len(one["after_lock_ms"]) == 2 * (len(BEATS) - 2)  # both devices pooled
    assert np.isnan(two["error_ms"]).all()
    assert two["lock_s"] > 9  # never locked: the rest of the clip


def test_the_picture_shows_the_figures_the_bench_reports(tmp_path):
    raw, clips = _raw()
    out = tmp_path / "live.png"
    figures = render(raw, clips, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures["clips"] == 2
    assert figures["beats_after_lock"] == 2 * (len(BEATS) - 2)
    assert figures["median_abs_ms"] == 8.2
    assert figures["signed_median_ms"] == 8.2
