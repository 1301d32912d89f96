"""The keys of ``gridcast live`` on a terminal: the operator's controls (docs/live.md).

    *  the music is twice as fast as followed     (tempo hint: the tempo × 2)
    /  the music is half as fast as followed      (tempo hint: the tempo ÷ 2)
    0  any tempo again                            (no hint)
    space or d, on the one: that beat is the downbeat (pressed between two beats,
               the beats move half a beat: the tracker was on the off-beat)

Keys are read without Enter (the terminal in cbreak mode, restored on exit) and only
when stdin is a terminal; a piped or redirected stdin is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from gridcast.agent.clock import now_us
from gridcast.protocol.errors import GridcastError

HELP = "keys: * tempo x2, / tempo ÷2, 0 any tempo, space on the one"


def apply_key(mode: Any, key: str) -> str | None:
    """Act on one key; what was done, or why not (None: not a key of ours)."""
    try:
        if key in "*/":
            tempo = float(mode.status()["tempo_bpm"])
            if not tempo:
                return "no tempo followed yet"
            hint = round(tempo * (2.0 if key == "*" else 0.5), 1)
            mode.set_tempo_hint(hint)
            return f"tempo hint {hint:g} BPM"
        if key == "0":
            mode.set_tempo_hint(None)
            return "any tempo"
        if key in " d":
            mode.set_downbeat(now_us())
            moved = mode.status().get("half_beat")
            return "downbeat set" + (", beats moved half a beat" if moved else "")
    except GridcastError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def operator_keys(mode: Any, say: Callable[[str], None]) -> Iterator[bool]:
    """Read keys from a terminal stdin while inside; yields whether it does."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_keys() -> None:
        for key in os.read(fd, 32).decode(errors="ignore"):
            done = apply_key(mode, key)
            if done:
                say(done)

    tty.setcbreak(fd)
    loop.add_reader(fd, on_keys)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
