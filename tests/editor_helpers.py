"""What the grid editor's test and bench share: a synthetic beat map of any length (with
sections, phrases and cues), and real input sent to a page over the DevTools protocol
(the browser and the Cdp client are tests/test_agent_api.py's)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import numpy as np

from gridcast.host.beatmaps.beatmap import BeatMap, Cue, Section


def synthetic_map(duration_s: float, bpm: float = 128.0, first_beat_s: float = 0.25,
                  rate_hz: float = 50.0, seed: int = 1) -> BeatMap:
    """A constant-tempo 4/4 map of ``duration_s`` seconds: bands that pulse on the beats,
    a phrase every 8 bars, sections every 32 bars (intro, buildup, drop, break, ...), two
    cues. Version 1 with an ``analysis`` history entry, as the analyzer would write it."""
    rng = np.random.default_rng(seed)
    period = 60.0 / bpm
    beats = np.arange(first_beat_s, duration_s - 0.1, period)
    bib = (np.arange(len(beats)) % 4 + 1).astype(np.int64)
    frames = np.arange(int(duration_s * rate_hz)) / rate_hz
    since = np.mod(frames - first_beat_s, period)
    pulse = np.exp(-since / 0.08)
    envelopes = {"bass": np.clip(0.2 + 0.7 * pulse + 0.05 * rng.random(len(frames)), 0, 1),
                 "mid": np.clip(0.3 + 0.3 * rng.random(len(frames)), 0, 1),
                 "high": np.clip(0.1 + 0.4 * (since < 0.03) + 0.2 * rng.random(len(frames)),
                                 0, 1)}
    bar_s = 4 * period
    phrases = np.arange(first_beat_s, duration_s - bar_s, 8 * bar_s)
    roles = ["intro", "buildup", "drop", "break", "buildup", "drop", "outro"]
    starts = [*np.arange(first_beat_s, duration_s - 4 * bar_s, 32 * bar_s)]
    edges = [0.0, *starts[1:], duration_s]
    sections = [Section(float(a), float(b), roles[min(i, len(roles) - 1)], 0.5)
                for i, (a, b) in enumerate(itertools.pairwise(edges))]
    return BeatMap(
        beats=beats, beat_in_bar=bib, beat_strength=np.where(bib == 1, 1.0, 0.6),
        tempo_bpm=bpm, tempo_curve_times=beats, tempo_curve_bpm=np.full(len(beats), bpm),
        envelope_rate_hz=rate_hz, envelopes={k: v.astype(np.float32)
                                             for k, v in envelopes.items()},
        metadata={"audio_file": "synthetic.wav", "audio_sha256": "ab" * 32,
                  "duration_s": duration_s, "created_at": "2026-12-01T12:00:00+00:00"},
        history=[{"version": 1, "change": "analysis", "edits": {},
                  "created_at": "2026-12-01T12:00:00+00:00"}],
        phrases=phrases, sections=sections,
        cues=[Cue(float(beats[16]), "drop in", "hot", "#e74c3c"),
              Cue(float(beats[32]), "loop", "loop", "", float(beats[40]))])


async def mouse_drag(cdp: Any, x0: float, y: float, x1: float, steps: int = 8,
                     modifiers: int = 0) -> None:
    """Press at (x0, y), move in ``steps`` to (x1, y), release: Input.dispatchMouseEvent,
    the same events a real mouse makes (CSS pixels from the viewport's corner)."""
    await cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y,
                   modifiers=modifiers)
    await cdp.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y, button="left",
                   buttons=1, clickCount=1, modifiers=modifiers)
    for k in range(1, steps + 1):
        await cdp.call("Input.dispatchMouseEvent", type="mouseMoved",
                       x=x0 + (x1 - x0) * k / steps, y=y, button="left", buttons=1,
                       modifiers=modifiers)
    await cdp.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y,
                   button="left", buttons=0, clickCount=1, modifiers=modifiers)


async def click(cdp: Any, x: float, y: float) -> None:
    await mouse_drag(cdp, x, y, x, steps=0)


async def key(cdp: Any, name: str, code: str | None = None, modifiers: int = 0) -> None:
    """One key press and release (``name`` as KeyboardEvent.key: "t", "Enter", "z")."""
    text = name if len(name) == 1 else ("\r" if name == "Enter" else "")
    code = code or (f"Key{name.upper()}" if len(name) == 1 else name)
    vk = ord(name.upper()) if len(name) == 1 else {"Enter": 13}.get(name, 0)
    await cdp.call("Input.dispatchKeyEvent", type="keyDown", key=name, code=code, text=text,
                   windowsVirtualKeyCode=vk, modifiers=modifiers)
    await cdp.call("Input.dispatchKeyEvent", type="keyUp", key=name, code=code,
                   windowsVirtualKeyCode=vk, modifiers=modifiers)


async def taps(cdp: Any, n: int, interval_s: float) -> None:
    """``n`` presses of T, ``interval_s`` apart on this process's clock (each sent at its
    own instant, so the time a press takes to send does not add up)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i * interval_s - loop.time()))
        await key(cdp, "t")


async def grid_point(cdp: Any, time_s: float) -> tuple[float, float]:
    """Viewport (x, y) of ``time_s`` in the editor's grid, halfway down the waveform."""
    return tuple(await cdp.evaluate(
        f"(() => {{ const r = document.getElementById('grid').getBoundingClientRect();"
        f" return [r.left + editor.xOf({time_s}), r.top + r.height / 2]; }})()"))  # type: ignore[return-value]


async def editor_timing(cdp: Any) -> dict[str, float | None]:
    """The page's own times, ms from navigation start: ``ready_ms`` (the map is drawn and
    the handlers are in place), ``input_ms`` (the first input event's time stamp) and
    ``shown_ms`` (the frame after the one that drew the first input's effect)."""
    return await cdp.evaluate(
        "(() => { const m = performance.getEntriesByName('editor-ready')[0];"
        " return {ready_ms: m ? m.startTime : null, input_ms: editor.firstInput,"
        " shown_ms: editor.firstInputShown ?? null}; })()")
