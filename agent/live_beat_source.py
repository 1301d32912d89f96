"""What live mode asks of a beat source: the coming beats on the agent's timeline.

Two sources offer this face: an Ableton Link session (gridcast.agent.link_follow)
and the real-time tracker listening to the room. Whatever sends the beats to the
devices asks ``upcoming(now_us, horizon_us)`` again and again and forwards what
changed; it never needs to know where the beats come from.

States: ``locked`` (the source follows the music), ``coasting`` (it lost the music
and goes on at the last tempo for a bounded time, each beat with a falling
confidence), ``idle`` (nothing to follow: no beats; devices show their idle effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class SourceState(StrEnum):
    LOCKED = "locked"
    COASTING = "coasting"
    IDLE = "idle"


@dataclass(frozen=True)
class LiveBeat:
    """One coming beat.

    ``at_us``: when it falls, agent timeline (CLOCK_REALTIME µs). ``beat_in_bar``:
    1..beats per bar, 1 is the downbeat (as in bundles). ``strength``: accent,
    0..1. ``confidence``: 0..1, how sure the source is of this beat (falls while
    coasting).
    """

    at_us: int
    beat_in_bar: int
    strength: float
    confidence: float


class LiveBeatSource(Protocol):
    @property
    def state(self) -> SourceState:
        """Where the source is now (as of the last ``upcoming`` or ``poll``)."""
        ...

    @property
    def tempo_bpm(self) -> float:
        """The current tempo, beats per minute (0.0 when idle and never locked)."""
        ...

    @property
    def beats_per_bar(self) -> int:
        ...

    def upcoming(self, now_us: int, horizon_us: int) -> list[LiveBeat]:
        """The beats in ``[now_us, now_us + horizon_us)``, in time order."""
        ...
